r"""Sweeps: grids of training runs over (η, B, D, width, seed, ...), from a laptop to SLURM.

A sweep is a base run, grid axes over its keys and token horizons
(:mod:`~optimal_scaling.sweep.spec`); every grid point is a run with a stable id, trained by
:mod:`~optimal_scaling.sweep.runner` and read at every horizon it passes; a sweep directory
keeps one record and one checkpoint per run, never half-written
(:mod:`~optimal_scaling.sweep.store`); the runs execute here or on a cluster
(:mod:`~optimal_scaling.sweep.executors`). The same file runs everywhere::

    optimal-scaling sweep run configs/ci.toml --workers 2          # this machine
    optimal-scaling sweep run configs/ci.toml --executor slurm     # a SLURM job array
    optimal-scaling sweep status runs/ci
    optimal-scaling sweep collect runs/ci --out results/ci.csv

From Python (with ``workers > 1`` the worker processes start by re-importing the main module,
so a script needs the ``if __name__ == "__main__":`` guard; a notebook does not)::

    if __name__ == "__main__":
        sweep = osc.sweep.load("configs/ci.toml", ["optimizer.lr=0.02"])
        osc.sweep.run(sweep, "runs/ci", workers=2)
        table = osc.sweep.collect("runs/ci")       # one row per run × horizon
        log = osc.sweep.collect_log("runs/ci")     # runs with log_every: one row per entry
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from optimal_scaling.results import writable
from optimal_scaling.sweep.spec import (
    ConfigError,
    Run,
    Sweep,
    expand,
    from_dict,
    geometric,
    load,
    run_id,
)
from optimal_scaling.sweep.store import (
    STATUSES,
    collect,
    collect_log,
    machines,
    status,
    status_table,
    time_left,
)

__all__ = [
    "STATUSES",
    "ConfigError",
    "Run",
    "Sweep",
    "collect",
    "collect_log",
    "default_dir",
    "expand",
    "from_dict",
    "geometric",
    "load",
    "run",
    "run_id",
    "status",
    "status_table",
    "thin_log",
    "time_left",
    "write_collected",
]


def default_dir(sweep: Sweep) -> Path:
    """``runs/<name>`` (git-ignored) under the current directory."""
    return Path("runs") / sweep.name


def run(
    sweep: Sweep,
    out: str | Path | None = None,
    *,
    executor: str = "local",
    workers: int | None = None,
    dry_run: bool = False,
    wait: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Train every run of ``sweep`` not yet done into ``out``; counts of final statuses.

    ``executor``: ``"local"`` or ``"slurm"``. ``dry_run`` prints the resolved runs, their ids
    and the launch commands or job script, and writes nothing.
    """
    from optimal_scaling.sweep import executors

    if executor not in ("local", "slurm"):
        raise ConfigError(f"unknown executor {executor!r}; choose local or slurm")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be ≥ 1, got {workers}")
    if wait and executor != "slurm":
        raise ConfigError("wait applies to the slurm executor (the local one always waits)")
    if executor == "local" and sweep.resources["nodes"] > 1:
        raise ConfigError(f"resources.nodes = {sweep.resources['nodes']} needs the slurm "
                          "executor (the local one runs on this machine)")  # fmt: skip
    if executor == "slurm":
        executors.require_submitit()
    if isinstance(out, str) and not out.strip():  # Path("") would be the current folder
        raise ConfigError("out is empty; give the sweep directory (or None for runs/<name>)")
    out = (Path(out) if out is not None else default_dir(sweep)).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; the sweep directory must be a folder")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"{out}: {blocker} is a file, not a folder")
    runs = sweep.runs()
    if dry_run:
        if workers:
            sweep.local["workers"] = workers
        print(executors.describe(sweep, out, runs, executor))
        return {}
    if not dry_run and executor == "local":  # a cluster's paths may exist only there
        preflight(sweep, runs)
    writable(out / "sweep.json")  # the folder can be made and written to, before any work
    todo = executors.prepare(sweep, out, runs)
    if executor == "slurm":
        return executors.run_slurm(sweep, out, todo, wait=wait, progress=progress)
    return executors.run_local(sweep, out, todo, workers=workers, progress=progress)


def preflight(sweep: Sweep, runs: list[Run] | None = None) -> None:
    """Check what only this machine can tell before anything is written: the data folders and
    files the runs read exist and are of their kind (a shards folder a folder, a bytes path a
    file or a folder), and ``OPTIMAL_SCALING_DEVICE`` (which ``device = "auto"`` follows)
    names a device this machine has (a dry run skips this: it may describe a cluster)."""
    from optimal_scaling.config import device

    runs = sweep.runs() if runs is None else runs
    if any(r.config["device"] == "auto" for r in runs):
        try:
            device()
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"{sweep.source}: run.device = 'auto': {exc}") from None
    for data in {json.dumps(r.config["data"], sort_keys=True): r.config["data"]
                 for r in runs}.values():  # fmt: skip
        key = {"shards": "folder", "bytes": "paths"}.get(data["source"])
        if key is None or not data[key]:  # markov, or the standard library's sources
            continue
        path, where = Path(data[key]).expanduser(), f"{sweep.source}: run.data.{key}"
        if not path.exists():
            raise ConfigError(f"{where}: {path} does not exist on this machine")
        if key == "folder" and not path.is_dir():
            raise ConfigError(f"{where}: {path} is {'a file' if path.is_file() else 'no folder'}"
                              ", not a folder (the shards' folder holds train.bin and val.bin)")
        if not (path.is_dir() or path.is_file()):
            raise ConfigError(f"{where}: {path} is not a regular file or a folder (a device or "
                              "a pipe)")  # fmt: skip


def thin_log(log: pd.DataFrame, spacing: float) -> pd.DataFrame:
    """Keep, per run, the log entries at least a factor (1 + ``spacing``) apart in step (and
    every run's first and last): a geometric grid in time, fine early, coarse late."""
    if not spacing > 0 or not math.isfinite(spacing):  # NaN too
        raise ValueError(f"thin_log: spacing must be a finite number > 0, got {spacing}")
    keep = []
    for _, g in log.groupby("run_id", sort=False):
        steps, last = g["step"].to_numpy(), -1.0
        for i, s in enumerate(steps):
            if last < 0 or s >= last * (1 + spacing) or i == len(steps) - 1:
                keep.append(g.index[i])
                last = s
    return log.loc[keep]


def sweep_run_ids(sweep_dir: str | Path) -> set[str] | None:
    """The ids of the runs of the sweep last given to ``sweep run`` in ``sweep_dir`` (its
    ``sweep.json``), or None when there is none. A folder can hold other runs too: an earlier
    grid, or the same grid made by older code whose configs had fewer keys (other ids)."""
    from optimal_scaling.sweep.store import read_json

    raw = read_json(Path(sweep_dir) / "sweep.json")
    if raw is None:
        return None
    return {r.id for r in expand(from_dict(raw, source=str(Path(sweep_dir) / "sweep.json")))}


def write_collected(sweep_dir: str | Path, path: str | Path, command: str,
                    log: bool = False, spacing: float = 0.0,
                    current: bool = False) -> Path:  # fmt: skip
    """``collect`` (or, with ``log``, ``collect_log``) written as CSV with the provenance
    header of :mod:`optimal_scaling.results`.

    The log keeps only the config columns that vary between runs (the constant ones go into
    the header as ``constant: {json}``) and its measurements to 6 significant digits: a log
    has thousands of rows; ``spacing`` > 0 thins it to a geometric grid in steps
    (:func:`thin_log`). ``current`` keeps only the runs of the folder's ``sweep.json``
    (:func:`sweep_run_ids`); otherwise every run is kept, and how many lie outside that sweep
    is warned about on stderr and written into the header (``outside_sweep``). When the
    sweep's name is a preset under ``./configs``, the header also says how to train the runs
    (``runs_from``: ``optimal-scaling sweep run configs/NAME.toml --out DIR``), since the
    run folders are not committed with the table, and where they trained (``trained_on``:
    each torch version and :func:`~optimal_scaling.results.machine` their records name, with
    how many runs trained there), since the header's ``machine`` is where collect ran.
    """
    from optimal_scaling.results import write_table
    from optimal_scaling.sweep.store import read_json

    if not (spacing >= 0 and math.isfinite(spacing)):
        raise ValueError(f"spacing must be a finite number ≥ 0 (0 keeps every entry), got "
                         f"{spacing}")  # fmt: skip
    if isinstance(path, str) and not path.strip():  # Path("") would be the current folder
        raise ValueError("write_collected: the path is empty; give the CSV file's path")
    writable(path)  # a file can be written there (not a folder, no file in the way)
    table = collect_log(sweep_dir) if log else collect(sweep_dir)
    runs = status_table(sweep_dir)  # every run folder, with or without rows
    try:
        ids = sweep_run_ids(sweep_dir)
    except (ConfigError, ValueError) as exc:  # another version's keys, or a damaged file
        if current:
            raise ConfigError(f"--current needs the folder's sweep.json, which this version "
                              f"cannot read: {exc}") from None
        print(f"sweep collect: cannot tell which runs belong to {sweep_dir}'s sweep.json "
              f"({exc}); collecting every run folder", file=sys.stderr)  # fmt: skip
        ids = None
    if ids is None and current:
        raise ConfigError(f"--current needs {sweep_dir}/sweep.json, and there is none")
    outside = sorted(set(runs["id"]) - ids) if ids is not None and len(runs) else []
    if current:
        table = table[~table["run_id"].isin(outside)]
        runs = runs[~runs["id"].isin(outside)]
    elif outside:
        print(f"sweep collect: {len(outside)} of {len(runs)} runs in {sweep_dir} are not runs "
              "of its sweep.json (an earlier grid, or older code with other config keys); "
              "they are included: --current leaves them out", file=sys.stderr)  # fmt: skip
    if table.empty:
        what = "no run keeps a training log (set run.log_every)" if log else (
            "no run has reached a horizon yet")
        raise ValueError(f"{sweep_dir}: {what}; nothing to collect")
    try:
        meta = read_json(Path(sweep_dir) / "sweep.json") or {}
    except ValueError:  # damaged: warned about above
        meta = {}
    counts = {k: int((runs["status"] == k).sum()) for k in STATUSES} if len(runs) else {}
    extra = {} if current or not outside else {"outside_sweep": f"{len(outside)} runs"}
    used = machines(sweep_dir)
    where = Counter(m for rid in table["run_id"].unique()
                    for m in used.get(rid) or ["a machine not recorded"])  # fmt: skip
    extra["trained_on"] = "; ".join(f"{m} ({n} run{'s' * (n != 1)})"
                                    for m, n in where.most_common())  # fmt: skip
    preset = Path("configs") / f"{meta.get('name', '')}.toml"
    if meta.get("name") and preset.is_file():  # runs/ is not committed: say how to train them
        extra["runs_from"] = shlex.join(["optimal-scaling", "sweep", "run", preset.as_posix(),
                                         "--out", Path(sweep_dir).as_posix()])  # fmt: skip
    if log:
        measured = {"run_id", "status", "step", "tokens", "train_loss", "gns_g2", "gns_trace"}
        config = [c for c in table.columns if c not in measured]
        fixed = [c for c in config if table[c].nunique(dropna=False) == 1]
        first = {c: table[c].iloc[0] for c in fixed}
        extra["constant"] = json.dumps({c: v.item() if hasattr(v, "item") else v
                                        for c, v in first.items()}, default=str)  # fmt: skip
        table = table.drop(columns=fixed)
        if spacing:
            table = thin_log(table, spacing)
            extra["thinned"] = f"entries at least a factor {1 + spacing:g} apart in step"
        for c in ("train_loss", "gns_g2", "gns_trace"):  # measurements: 6 digits are plenty
            if c in table:
                table[c] = table[c].map(lambda v: float(f"{v:.6g}"))
    return write_table(
        table, path, command, sweep=meta.get("name", ""),
        runs=", ".join(f"{k} {v}" for k, v in counts.items() if v), **extra,
    )  # fmt: skip
