"""Where a sweep's runs execute: here (a process pool, or torchrun per run) or on SLURM.

``local``: the runs not yet done are handed to a pool of ``workers`` processes (spawned once,
cores ÷ workers BLAS threads each by default (``local.threads``), each run's data built once
per worker); a run that asks for several processes is launched with ``torchrun --standalone``
by the worker that holds its lock. A progress bar counts runs with an ETA. Ctrl-C stops the
workers; every horizon already read stays on disk and the next invocation resumes from it.

``slurm``: through submitit, one job array over the runs not yet done, at most
``slurm.array_parallelism`` at a time; each array task runs one run with ``resources.nodes``
nodes × ``resources.processes`` tasks (one GPU each), started by srun, which become the ranks
of a DDP run. A preempted or timed-out task is requeued by submitit (a timed-out one up to
``slurm.max_requeues`` times; ``sweep run`` again resubmits what is left) and resumes from the
run's last checkpoint (at a horizon, or ``run.checkpoint_minutes`` of training after the
previous one). ``slurm.cluster = "local"`` runs the same jobs with submitit's local executor,
on this machine's GPUs when ``slurm.gpus``. Each task's output is in ``DIR/slurm/<job id>/``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd

from optimal_scaling.sweep.spec import ConfigError, Run, Sweep
from optimal_scaling.sweep.store import (
    Lock,
    drop_stale_lock,
    lock_holder,
    read_config,
    read_record,
    remove_partial,
    run_dir,
    run_status,
    write_json,
)

__all__ = ["prepare", "run_local", "run_slurm", "torchrun_command"]


def prepare(sweep: Sweep, out: Path, runs: list[Run]) -> list[Run]:
    """Write ``sweep.json`` and every run's ``config.json``; return the runs still to train.

    A run already in the directory keeps its record; its horizons become the union of the old
    and the new ones (a constant-schedule run is extended, never shortened).
    """
    out.mkdir(parents=True, exist_ok=True)
    for path in (out / "runs", *(run_dir(out, run.id) for run in runs)):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} is a file, not a folder: a sweep directory keeps its runs "
                              "in runs/<id>/ folders; move the file away")  # fmt: skip
    remove_partial(out)  # an interrupted sweep.json write
    write_json(out / "sweep.json", sweep.to_dict())
    todo = []
    for run in runs:
        folder = run_dir(out, run.id)
        if lock_holder(folder) is None:  # nobody writes there now: drop a killed writer's files
            remove_partial(folder)
            # and its stale lock, which a run killed after its last horizon leaves behind (a
            # finished run is never claimed again, so no Lock.acquire would take it over)
            drop_stale_lock(folder)
        old = read_config(folder)
        record = read_record(folder)
        reached = {r["horizon"] for r in record.get("rows", [])}
        behind = sorted(h for h in run.horizons
                        if reached and h < max(reached) and h not in reached)  # fmt: skip
        if behind:  # the run is read on the way: it cannot go back to an earlier horizon
            raise ConfigError(f"run {run.id} already trained to {max(reached)} tokens; the new "
                              f"horizons {behind} lie below that and were not recorded: use a "
                              "new sweep directory (or delete this run's folder to retrain "
                              "it)")  # fmt: skip
        horizons = sorted(set(run.horizons) | set(old["horizons"] if old else []))
        spec = {"id": run.id, "run": run.config, "point": run.point, "horizons": horizons}
        if old != spec:
            write_json(folder / "config.json", spec)
        if run_status(folder) in ("pending", "failed"):
            todo.append(run)
    return todo


def torchrun_command(out: Path, rid: str, processes: int) -> list[str]:
    """The command that trains one run with ``processes`` ranks on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", "-m", "optimal_scaling.sweep.runner",
            str(out), rid]  # fmt: skip


# --------------------------------------------------------------------------- local
_WORKER: dict = {}


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds train_run (lock released, horizons kept), quietly


def _init_worker(threads: int, counter, gpus: int) -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle ...
    signal.signal(signal.SIGTERM, _stop)  # ... which stops the pool with SIGTERM
    torch.set_num_threads(threads)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _WORKER["device"] = f"cuda:{index % gpus}" if gpus else None


def _stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM to ``proc``'s process group (torchrun and its ranks), SIGKILL after ``grace``
    seconds; returns when ``proc`` has exited."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def _run_one(args: tuple[str, str, int]) -> tuple[str, str]:
    out, rid, processes = args
    from optimal_scaling.sweep.runner import train_run

    if processes == 1:
        return rid, train_run(out, rid, device=_WORKER.get("device"))
    folder = run_dir(Path(out), rid)
    lock = Lock(folder)
    try:
        if not lock.acquire():
            return rid, "running"
        log = folder / "torchrun.log"
        with open(log, "ab") as f:  # its own process group: a stop reaches every rank
            proc = subprocess.Popen(torchrun_command(Path(out), rid, processes), stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            try:
                proc.wait()
            except BaseException:  # stopped (Ctrl-C, SIGTERM): stop the ranks, then unlock
                _stop_group(proc)
                raise
    finally:
        lock.release()
    return rid, run_status(folder)


def run_local(sweep: Sweep, out: Path, todo: list[Run], workers: int | None = None,
              threads: int | None = None, progress: bool = True) -> dict[str, int]:  # fmt: skip
    """Train ``todo`` with a pool of ``workers`` processes; counts of each final status."""
    import torch
    from tqdm.auto import tqdm

    workers = workers or sweep.local["workers"]
    threads = threads or sweep.local["threads"] or max(1, (os.cpu_count() or 1) // workers)
    processes = sweep.resources["processes"] * sweep.resources["nodes"]
    if sweep.resources["nodes"] > 1:
        raise ValueError("resources.nodes > 1 needs the slurm executor")
    counts: dict[str, int] = {}
    jobs = [(str(out), run.id, processes) for run in todo]
    bar = tqdm(total=len(jobs), unit="run", disable=not progress, desc=sweep.name)

    def done(status: str) -> None:
        counts[status] = counts.get(status, 0) + 1
        bar.update()
        bar.set_postfix(counts)

    def terminate(signum: int, frame: object) -> None:  # SIGTERM stops as Ctrl-C does
        raise KeyboardInterrupt(f"signal {signum}")

    main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, terminate) if main else None
    try:
        if workers == 1 or len(jobs) <= 1:  # no pool: no process start, no second import
            _WORKER["device"] = None
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                for job in jobs:
                    done(_run_one(job)[1])
            finally:
                torch.set_num_threads(before)
        else:
            ctx = mp.get_context("spawn")
            gpus = torch.cuda.device_count() if sweep.base["device"] in ("auto", "cuda") else 0
            pool = ctx.Pool(min(workers, len(jobs)), _init_worker, (threads, ctx.Value("i", 0),
                            gpus))  # fmt: skip
            try:
                for _, status in pool.imap_unordered(_run_one, jobs):
                    done(status)
                pool.close()
            except BaseException:
                pool.terminate()  # the runs in flight keep every horizon they reached
                raise
            finally:
                pool.join()
    finally:
        bar.close()
        if main and old_term is not None:  # None: a handler from outside Python
            signal.signal(signal.SIGTERM, old_term)
    return counts


# --------------------------------------------------------------------------- slurm
class SweepJob:
    """The callable submitit runs in every array task (and requeues on preemption)."""

    def __init__(self, out: str) -> None:
        self.out = out

    def __call__(self, rid: str) -> str:
        import submitit

        from optimal_scaling.sweep.runner import train_run

        if submitit.JobEnvironment().num_tasks > 1:
            # RANK, WORLD_SIZE, MASTER_ADDR... for torch.distributed (overwriting any the
            # submitting shell passed on); CUDA_VISIBLE_DEVICES stays as SLURM set it, and
            # each rank takes GPU LOCAL_RANK of that list
            submitit.helpers.TorchDistributedEnvironment().export(
                set_cuda_visible_devices=False, overwrite=True
            )
        return train_run(self.out, rid)

    def checkpoint(self, rid: str):  # submitit: preempted or timed out → requeue, resume
        import submitit

        return submitit.helpers.DelayedSubmission(SweepJob(self.out), rid)


def slurm_parameters(sweep: Sweep) -> dict:
    """The sbatch options of one array task, in submitit's ``SlurmExecutor`` vocabulary."""
    s, r = sweep.slurm, sweep.resources
    params: dict = {
        "job_name": f"sweep-{sweep.name}",
        "time": s["time_min"],
        "nodes": r["nodes"],
        "ntasks_per_node": r["processes"],
        "cpus_per_task": s["cpus_per_task"],
        "array_parallelism": s["array_parallelism"],
    }
    if s["gpus"]:
        params["gpus_per_node"] = r["processes"]
    if s["mem_gb"]:
        params["mem"] = f"{s['mem_gb']}GB"
    for key in ("partition", "account", "qos"):
        if s[key]:
            params[key] = s[key]
    if s["setup"]:
        params["setup"] = list(s["setup"])
    if s["additional"]:
        params["additional_parameters"] = dict(s["additional"])
    return params


def require_submitit() -> None:
    """A named error instead of an ImportError when submitit is missing."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError("the slurm executor needs submitit: pip install submitit (or "
                          "make install)") from None


def slurm_executor(sweep: Sweep, out: Path):
    """A submitit executor with the sweep's resources (``slurm.cluster``: slurm, local, debug)."""
    import submitit

    folder = out / "slurm" / "%j"
    s, processes = sweep.slurm, sweep.resources["processes"]
    if s["cluster"] == "slurm":
        if shutil.which("srun") is None or shutil.which("sbatch") is None:
            raise ConfigError("the slurm executor submits with sbatch and srun, which this "
                              "machine does not have: run it on the cluster's login node, or "
                              "try it here with --set slurm.cluster=local")  # fmt: skip
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=s["max_requeues"])
        ex.update_parameters(**slurm_parameters(sweep))
        return ex
    if s["cluster"] == "debug":  # in this process, one run after the other
        ex = submitit.AutoExecutor(folder=folder, cluster="debug")
        ex.update_parameters(timeout_min=s["time_min"], tasks_per_node=processes)
        return ex
    ex = submitit.LocalExecutor(folder=folder, max_num_timeout=s["max_requeues"])
    ex.update_parameters(timeout_min=s["time_min"], tasks_per_node=processes)
    if s["gpus"] and local_gpu_blocks(processes):  # else submitit hides every GPU
        ex.update_parameters(gpus_per_node=processes)
    return ex


def local_gpu_blocks(processes: int) -> list[tuple[int, ...]]:
    """This machine's GPUs (``CUDA_VISIBLE_DEVICES`` when it lists indices) in blocks of
    ``processes``: submitit's local executor starts every task at once, so the runs take the
    blocks in turn, as the local executor's workers do. Empty without GPUs."""
    import torch

    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        ids = ([int(v) for v in listed.split(",") if v.strip()] if listed is not None
               else list(range(torch.cuda.device_count())))  # fmt: skip
    except ValueError:  # GPU UUIDs: submitit takes indices only
        ids = list(range(torch.cuda.device_count()))
    return [tuple(ids[i : i + processes])
            for i in range(0, len(ids) - processes + 1, processes)]  # fmt: skip


def sbatch_script(sweep: Sweep, out: Path, n: int) -> str:
    """The job-array script submitit would submit for ``n`` runs (for ``--dry-run``)."""
    from submitit.slurm.slurm import _make_sbatch_string  # submitit's own script builder

    folder = out / "slurm" / "%j"
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit",
                        shlex.quote(str(folder))])  # fmt: skip
    return _make_sbatch_string(command=command, folder=folder, map_count=n,
                               **slurm_parameters(sweep))  # fmt: skip


def run_slurm(sweep: Sweep, out: Path, todo: list[Run], wait: bool = False,
              progress: bool = True) -> dict[str, int]:  # fmt: skip
    """Submit ``todo`` as one job array; wait for it when ``wait`` or the cluster is local."""
    if not todo:
        return {}
    from submitit.core.utils import FailedJobError

    ex = slurm_executor(sweep, out)
    job, where = SweepJob(str(out)), sweep.slurm["cluster"]
    blocks = (local_gpu_blocks(sweep.resources["processes"])
              if where == "local" and sweep.slurm["gpus"] else [])  # fmt: skip
    try:
        if blocks:  # one job per run, each on its block of GPUs, in turn
            jobs = []
            for k, run in enumerate(todo):
                ex.update_parameters(visible_gpus=blocks[k % len(blocks)])
                jobs.append(ex.submit(job, run.id))
        else:
            jobs = ex.map_array(job, [run.id for run in todo])
    except FailedJobError as exc:  # sbatch refused: bad partition, account, time, array size
        raise ConfigError(f"sbatch refused the job array: {exc}") from None
    first = jobs[0].job_id.split("_")[0]
    logs = (f"{out / 'slurm'}/{first}_<task>/" if where == "slurm"
            else f"{out / 'slurm'}/<job id>/")  # fmt: skip
    print(f"submitted {len(jobs)} runs as job array {first} ({where}); each task's output is "
          f"in {logs}; follow with: optimal-scaling sweep status {shlex.quote(str(out))}",
          flush=True)  # fmt: skip
    if not (wait or sweep.slurm["cluster"] != "slurm"):
        return {"submitted": len(jobs)}
    counts: dict[str, int] = {}
    for j in jobs:
        try:
            status = j.results()[0]  # rank 0's; result() refuses a job with several tasks
        except Exception as exc:  # noqa: BLE001 - a job that failed outside train_run
            print(f"job {j.job_id} failed: {exc}", file=sys.stderr)
            status = "failed"
        counts[status] = counts.get(status, 0) + 1
    return counts


# --------------------------------------------------------------------------- dry run
def describe(sweep: Sweep, out: Path, runs: list[Run], executor: str) -> str:
    """What ``--dry-run`` prints: the runs, their ids and status, and the launch commands."""
    rows = []
    for run in runs:
        folder = run_dir(out, run.id)
        state = run_status(folder) if (folder / "config.json").is_file() else "new"
        rows.append({"id": run.id, "status": state, "steps": run.steps,
                     "horizons": len(run.horizons), **run.point})  # fmt: skip
    table = pd.DataFrame(rows).to_string(index=False)
    todo = [r for r, row in zip(runs, rows, strict=True)
            if row["status"] in ("new", "pending", "failed")]  # fmt: skip
    procs = sweep.resources["processes"] * sweep.resources["nodes"]
    lines = [
        f"sweep {sweep.name!r} from {sweep.source}: {len(runs)} runs, "
        f"{len(todo)} to train, horizons {sweep.horizons} tokens, into {out}",
        table,
    ]
    if executor == "local":
        workers = sweep.local["workers"]
        lines.append(f"\nexecutor local: {workers} worker(s); each run "
                     + ("in a worker process" if procs == 1 else "with:"))  # fmt: skip
        if procs > 1 and todo:
            lines.append("  " + shlex.join(torchrun_command(out, todo[0].id, procs)))
    else:
        lines.append(f"\nexecutor slurm ({sweep.slurm['cluster']}): one job array of "
                     f"{len(todo)} tasks; each task = one run on {sweep.resources['nodes']} "
                     f"node(s) × {sweep.resources['processes']} process(es)")  # fmt: skip
        if todo:
            lines.append(sbatch_script(sweep, out, len(todo)))
    return "\n".join(lines)

