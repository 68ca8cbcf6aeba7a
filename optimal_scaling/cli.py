"""The ``optimal-scaling`` command.

optimal-scaling env                         what this machine offers the course
optimal-scaling sync [DIR ...]              rewrite each .ipynb from its .py
optimal-scaling check [DIR ...]             fail on drifted pairs or committed outputs
optimal-scaling exercises [--check]         generate exercises/ from solutions/
optimal-scaling execute NB [--out F]        run a notebook headless, keep its outputs
optimal-scaling lr-transfer --out F         GPT learning-rate transfer grid (lecture 01)
optimal-scaling bench ns [--fast] [--out F] Newton–Schulz benchmark (lecture 04)
optimal-scaling bench optim [--fast]        optimizer share of a GPT step (lecture 05)
optimal-scaling bench sweep [--fast]        sweep overhead and the small GPT's tokens/s
optimal-scaling bench tune [--out F]        time the Triton kernels' tile configurations (CUDA)
optimal-scaling shards SRC OUT [--pattern P] byte-level token shards from local text files
optimal-scaling sweep run CONFIG [--out DIR] [--executor local|slurm] [--workers N]
                          [--set key=value ...] [--dry-run] [--wait]
optimal-scaling sweep status DIR            done / running / failed / pending / diverged, time left
optimal-scaling sweep collect DIR --out F   one row per run × horizon, with provenance
                      [--log]                 the training logs: one row per run × log entry
"""

from __future__ import annotations

import argparse
import math
import sys

NOTEBOOK_DIRS = ["lectures", "solutions", "exercises"]


def main(argv: list[str] | None = None) -> int:
    """Run one command; Ctrl-C ends it with one line and exit status 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        command = next((a for a in (sys.argv[1:] if argv is None else argv)
                        if not a.startswith("-")), "optimal-scaling")  # fmt: skip
        print(f"{command}: interrupted" + (f"; {exc}" if str(exc) else ""), file=sys.stderr)
        return 130


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="optimal-scaling",
        description=__doc__.replace("``", ""),  # the module docstring, without its RST quotes
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env", help="print the environment report")
    for name in ("sync", "check"):
        p = sub.add_parser(name, help=f"notebook pairs: {name}")
        p.add_argument("dirs", nargs="*", default=NOTEBOOK_DIRS)
    p = sub.add_parser("exercises", help="generate exercises/ from solutions/")
    p.add_argument("--solutions", default="solutions")
    p.add_argument("--exercises", default="exercises")
    p.add_argument("--check", action="store_true")
    p = sub.add_parser("execute", help="run a notebook headless and keep its outputs")
    p.add_argument("notebook", help="a .ipynb or its Jupytext .py")
    p.add_argument("--out", help="where to write it (default: <name>.run.ipynb beside it)")
    p.add_argument("--timeout", type=int, default=180, help="seconds per cell (default 180)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true", help="OPTIMAL_SCALING_FAST=1")
    mode.add_argument("--full", action="store_true", help="OPTIMAL_SCALING_FAST=0 (classroom)")
    p = sub.add_parser("lr-transfer", help="GPT learning-rate transfer grid (lecture 01)")
    p.add_argument("--out", required=True, help="CSV file to write (with a provenance header)")
    p.add_argument("--fast", action="store_true", help="the seconds-long version")
    p.add_argument("--widths", type=int, nargs="+")
    p.add_argument("--log2-lrs", type=float, nargs="+")
    p.add_argument("--parametrizations", nargs="+", choices=["sp", "mup", "ntk", "spectral"])
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--data", choices=["bytes", "markov"])
    p = sub.add_parser("bench", help="benchmarks (ratios against a reference, same run)")
    p.add_argument("benchmark", choices=["ns", "optim", "sweep", "tune"],
                   help="ns: Newton–Schulz orthogonalization; optim: optimizer share of a step; "
                   "sweep: the sweep engine's overhead and the small GPT's tokens/s; tune: time "
                   "every tile configuration of the Triton kernels (CUDA) and write the table "
                   "the kernels read (point OPTIMAL_SCALING_KERNEL_CONFIGS at it)")
    p.add_argument("--out", help="JSON file to write (default: benchmarks/results/<name>.json)")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--fast", action="store_true", help="small shapes, few repeats")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--repeats", type=int)
    p.add_argument("--steps", type=int, help="Newton–Schulz steps (bench ns; default 5)")
    p = sub.add_parser("shards", help="byte-level token shards (train.bin, val.bin, meta.json)")
    p.add_argument("source", help="a text file or a folder searched recursively")
    p.add_argument("folder", metavar="OUT", help="the shard folder to write")
    p.add_argument("--pattern", default="*.txt", help="file names to take (default *.txt)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--max-bytes", type=int, help="cap the corpus (default: every byte)")
    _add_sweep(sub)
    args = parser.parse_args(argv)
    empty = _empty_path(args)
    if empty:  # Path("") is the current folder: it would read or write there
        print(f"{args.command}: {empty} is empty; give a path", file=sys.stderr)
        return 2

    if args.command == "env":
        from optimal_scaling.config import environment

        try:
            report = environment()
        except (ValueError, RuntimeError) as exc:  # e.g. OPTIMAL_SCALING_DEVICE=tpu
            print(f"env: {exc}", file=sys.stderr)
            return 2
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
        return 0
    if args.command == "lr-transfer":
        return _lr_transfer(args, argv)
    if args.command == "shards":
        return _shards(args)
    if args.command == "execute":
        from optimal_scaling.course.execute import NotebookFailed, execute

        fast = True if args.fast else False if args.full else None
        try:
            path = execute(args.notebook, args.out, timeout=args.timeout, fast=fast)
        except (OSError, ValueError) as exc:
            print(f"execute: {exc}", file=sys.stderr)
            return 2
        except NotebookFailed as exc:
            print(f"execute: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {path}")
        return 0
    if args.command == "bench":
        return _bench(args, argv)
    if args.command == "sweep":
        return _sweep(args, argv)
    if args.command in ("sync", "check"):
        from optimal_scaling.course import notebooks

        return notebooks.main([args.command, *args.dirs])
    from optimal_scaling.course import exercises

    return exercises.main([args.solutions, args.exercises] + (["--check"] if args.check else []))


# the arguments that name a file or folder, as the usage line names them
PATH_ARGUMENTS = {"out": "--out", "notebook": "NOTEBOOK", "source": "SOURCE", "folder": "OUT",
                  "config": "CONFIG", "dir": "DIR", "dirs": "DIR", "solutions": "--solutions",
                  "exercises": "--exercises"}  # fmt: skip


def _empty_path(args: argparse.Namespace) -> str | None:
    """The name of the first path argument given as an empty string, or None."""
    for key, name in PATH_ARGUMENTS.items():
        value = getattr(args, key, None)
        if value == "" or (isinstance(value, list) and "" in value):
            return name
    return None


def _shards(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from optimal_scaling.data import byte_corpus, write_token_shards

    try:
        if Path(args.folder).exists() and not Path(args.folder).is_dir():
            raise FileExistsError(f"{args.folder} is a file; the shards go into a folder")
        with tempfile.TemporaryDirectory() as cache:
            corpus = byte_corpus(args.source, pattern=args.pattern, max_bytes=args.max_bytes,
                                 val_fraction=args.val_fraction, cache_dir=cache)  # fmt: skip
            folder = write_token_shards(args.folder, corpus.train, corpus.val, corpus.vocab_size)
    except (OSError, ValueError) as exc:
        print(f"shards: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {folder}: {len(corpus.train):,} train and {len(corpus.val):,} val byte tokens "
          f"(uint16, vocabulary 256); use it with [run.data] source = \"shards\", "
          f"folder = \"{folder}\"")
    return 0


def _lr_transfer(args: argparse.Namespace, argv: list[str] | None) -> int:
    import dataclasses
    import shlex
    from pathlib import Path

    from optimal_scaling.experiments import (
        LRTransferConfig,
        check_done,
        describe,
        gpt_lr_transfer,
    )
    from optimal_scaling.results import read_table, writable, write_table

    cfg = LRTransferConfig.fast() if args.fast else LRTransferConfig()
    overrides = {
        "widths": tuple(args.widths) if args.widths else None,
        "log2_lrs": tuple(args.log2_lrs) if args.log2_lrs else None,
        "parametrizations": tuple(args.parametrizations) if args.parametrizations else None,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "data": args.data,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    try:
        cfg.check()
        out = writable(Path(args.out))  # an unwritable --out fails now, not after the grid
    except (ValueError, OSError) as exc:
        print(f"lr-transfer: {exc}", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else argv
    command = "optimal-scaling " + shlex.join(argv)
    # the runs finished so far go beside --out (never over a finished table there); an
    # interrupted run of this config resumes from them
    partial = out.with_name(f"{out.stem}.partial{out.suffix}")
    done = None
    if partial.exists() and not partial.is_file():
        print(f"lr-transfer: {partial} is a folder (or another non-file); the finished runs are "
              "kept in a file of that name: move it away", file=sys.stderr)  # fmt: skip
        return 2
    if partial.is_file():
        # a damaged resume file is refused, not overwritten: it may hold hours of finished runs
        try:
            old, meta = read_table(partial)
            if meta.get("config") == describe(cfg):
                done = check_done(old, cfg)
        except (ValueError, OSError) as exc:
            print(f"lr-transfer: cannot resume from {partial}: {exc}; repair it, or delete it "
                  "to start over", file=sys.stderr)  # fmt: skip
            return 2
        if done is not None:
            print(f"lr-transfer: resuming: {len(done)} runs already in {partial}")
    try:
        grid = gpt_lr_transfer(cfg, done=done, after_run=lambda part: write_table(
            part, partial, command, config=describe(cfg), partial="true"))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"the finished runs are in {partial}; the same command "
                                "resumes from them" if partial.is_file() else
                                "no run had finished; nothing was kept") from None  # fmt: skip
    path = write_table(grid, out, command, config=describe(cfg))
    partial.unlink(missing_ok=True)
    print(f"wrote {len(grid)} runs to {path}")
    return 0


def _tune(args: argparse.Namespace, command: str, out) -> int:
    """``bench tune``: every kernel configuration at the benchmark's shapes → a JSON table."""
    import torch

    from optimal_scaling import kernels
    from optimal_scaling.bench import FAST_SHAPES, cuda_shapes, versions

    if not (torch.cuda.is_available() and kernels.available()):
        print("bench tune: needs a CUDA device and Triton (the timings are GPU timings)",
              file=sys.stderr)  # fmt: skip
        return 2
    dtype = getattr(torch, args.dtype or "bfloat16")
    chosen = FAST_SHAPES if args.fast else cuda_shapes()  # issue 11's shapes first
    shapes = [(*s[:-2], min(s[-2:]), max(s[-2:])) for s in chosen]
    name = torch.cuda.get_device_name(0)

    def write(rows: list[dict], partial: bool) -> object:
        return kernels.write_tuned(out, kernels.best_entries(rows), device=name,
                                   command=command, versions=versions(), tries=rows,
                                   **({"partial": True} if partial else {}))  # fmt: skip

    rows = kernels.tune(shapes, dtype=dtype, device="cuda",
                        after_shape=None if out is None else lambda r: write(r, True))
    entries = kernels.best_entries(rows)
    for e in entries:
        print(f"{e['kernel']:>16} batch={e['batch']:>3} M={e['M']:>5} K={e['K']:>5}: best "
              f"{e['ms']:.4f} ms "
              f"(default {e['default_ms']:.4f} ms) {e['config']}")
    failed = [r for r in rows if r["error"]]
    if failed:
        print(f"{len(failed)} configurations failed, e.g. {failed[0]['error']}")
    if out is not None:
        print(f"wrote {write(rows, False)}")
    return 0


def _bench(args: argparse.Namespace, argv: list[str] | None) -> int:
    import shlex
    from pathlib import Path

    import torch

    from optimal_scaling.bench import run_newton_schulz, run_optimizers
    from optimal_scaling.course import repo_root
    from optimal_scaling.results import writable

    if args.device is not None:
        try:
            kind = torch.device(args.device).type
        except RuntimeError:
            kind = None
        mps = kind == "mps" and torch.backends.mps.is_available()
        if kind == "mps" and not mps:
            print("bench: --device mps but no MPS device is available", file=sys.stderr)
            return 2
        if kind not in ("cpu", "cuda") and not mps:
            print(f"bench: unknown device {args.device!r}; use cpu, cuda or cuda:N",
                  file=sys.stderr)  # fmt: skip
            return 2
    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    if any(v is not None and v < 1 for v in (args.repeats, args.steps)):
        print("bench: --repeats and --steps must be ≥ 1", file=sys.stderr)
        return 2
    ignored = {"ns": [], "optim": ["dtype", "steps"], "sweep": ["dtype", "steps", "repeats",
               "device"], "tune": ["steps", "repeats", "device"]}[args.benchmark]  # fmt: skip
    given = [f"--{k}" for k in ignored if getattr(args, k) is not None]
    if given:
        print(f"bench {args.benchmark}: {', '.join(given)} does not apply to this benchmark",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.no_write and args.out is not None:
        print("bench: --no-write and --out contradict each other; give one", file=sys.stderr)
        return 2
    argv = sys.argv[1:] if argv is None else argv
    command = "optimal-scaling " + shlex.join(argv)
    results = (repo_root() or Path.cwd()) / "benchmarks" / "results"
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    kind = "fast" if args.fast else "full"
    dtype = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    default = {"sweep": f"sweep_cpu_{kind}.json", "optim": f"optimizers_{device}_{kind}.json",
               "ns": f"newton_schulz_{device}_{dtype}_{kind}.json",
               "tune": f"kernel_configs_{args.dtype or 'bfloat16'}.json"}[args.benchmark]
    try:  # an unwritable --out fails now, not after minutes of timing
        out = results / default if args.out is None else Path(args.out)
        out = None if args.no_write else writable(out)
        if args.benchmark == "sweep":
            from optimal_scaling.sweep.benchmark import run_sweep_benchmark

            run_sweep_benchmark(out, fast=args.fast, command=command)
        elif args.benchmark == "tune":
            return _tune(args, command, out)
        elif args.benchmark == "optim":
            run_optimizers(out, fast=args.fast, device=args.device, command=command,
                           repeats=args.repeats)  # fmt: skip
        else:
            run_newton_schulz(out, fast=args.fast, dtype=args.dtype, device=args.device,
                              repeats=args.repeats, steps=args.steps or 5, command=command)
    except OSError as exc:
        print(f"bench {args.benchmark}: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="grids of training runs: run, status, collect")
    verbs = p.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("run", help="train every run of a sweep not yet done")
    r.add_argument("config", help="a sweep TOML file (see configs/)")
    r.add_argument("--out", help="the sweep directory (default: runs/<name>)")
    r.add_argument("--executor", choices=["local", "slurm"], default="local")
    r.add_argument("--workers", type=int, help="local executor: parallel runs")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key: optimizer.lr=0.01, grid.batch_size=[4,8], "
                   "horizons=[4096], local.workers=2, slurm.partition=gpu, resources.processes=2")
    r.add_argument("--dry-run", action="store_true",
                   help="print the runs, their ids and the job script; run nothing")
    r.add_argument("--wait", action="store_true", help="slurm: wait for the job array")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    s = verbs.add_parser("status", help="how many runs are done, running, failed, pending")
    s.add_argument("dir")
    s.add_argument("--runs", action="store_true", help="one line per run")
    c = verbs.add_parser("collect", help="one tidy table: a row per run × horizon")
    c.add_argument("dir")
    c.add_argument("--out", required=True, help="CSV file (with a provenance header)")
    c.add_argument("--log", action="store_true",
                   help="the training logs instead (runs with log_every): a row per run × entry, "
                   "config keys that vary only, the others in the header")  # fmt: skip
    c.add_argument("--current", action="store_true",
                   help="only the runs of the sweep last run in DIR (its sweep.json); by "
                   "default every run folder is collected and others are warned about")
    c.add_argument("--spacing", type=float, default=None,
                   help="with --log: keep entries at least a factor 1 + SPACING apart in step "
                   "(a geometric grid; 0 keeps every entry)")  # fmt: skip


def _sweep(args: argparse.Namespace, argv: list[str] | None) -> int:
    import shlex

    from optimal_scaling import sweep

    argv = sys.argv[1:] if argv is None else argv
    try:
        if args.verb == "run":
            spec = sweep.load(args.config, args.overrides)
            counts = sweep.run(spec, args.out, executor=args.executor, workers=args.workers,
                               dry_run=args.dry_run, wait=args.wait, progress=not args.quiet)
            if not args.dry_run:
                out = sweep.default_dir(spec) if args.out is None else args.out
                print(f"sweep {spec.name}: " + (", ".join(f"{v} {k}" for k, v in counts.items())
                      or "nothing to train") + f"; now {sweep.status(out)} in {out}")
                if counts.get("failed"):  # finished runs are kept; the exit status tells CI
                    table = sweep.status_table(out)
                    failed = table[table["status"] == "failed"]
                    for _, row in failed.head(3).iterrows():
                        print(f"  failed {row['id']}: {row['reason']}", file=sys.stderr)
                    print(f"  (all of them: optimal-scaling sweep status {out} --runs)",
                          file=sys.stderr)  # fmt: skip
                    return 1
            return 0
        if args.verb == "status":
            counts = sweep.status(args.dir)
            if args.runs:
                print(sweep.status_table(args.dir).to_string(index=False))
            print(", ".join(f"{v} {k}" for k, v in counts.items()))
            eta = sweep.time_left(args.dir)
            if eta["runs_left"] and math.isfinite(eta["left"]):  # NaN: no run done yet
                print(f"training time: {eta['done'] / 60:.0f} min so far, "
                      f"{eta['per_run'] / 60:.1f} min per done run; left: about "
                      f"{eta['left'] / 60:.0f} min for {eta['runs_left']} runs (divide by the "
                      "runs that train at once)")
            return 0
        if args.spacing is not None and not args.log:
            raise ValueError("--spacing thins the training logs: it applies only with --log")
        path = sweep.write_collected(args.dir, args.out, "optimal-scaling " + shlex.join(argv),
                                     log=args.log, spacing=args.spacing or 0.0,
                                     current=args.current)  # fmt: skip
        print(f"wrote {path}")
        return 0
    except (sweep.ConfigError, OSError, ValueError) as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep: interrupted; finished horizons are kept, run it again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
