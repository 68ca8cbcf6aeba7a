"""A sweep directory: one folder per run, files that are never half-written, and ``collect``.

    DIR/sweep.json               the sweep ``sweep run`` was given (Sweep.to_dict)
    DIR/runs/<id>/config.json    the run's resolved config, its grid point and its horizons
    DIR/runs/<id>/record.json    status, one row per horizon reached, trainings started
    DIR/runs/<id>/checkpoint.pt  model, optimizer, data position and RNG states at the last
                                 horizon reached (and the rows so far)
    DIR/runs/<id>/checkpoint_mid.pt  the same, later, between two horizons (checkpoint_minutes)
    DIR/runs/<id>/lock           present while a process trains the run (host, pid, job)
    DIR/runs/<id>/lock.takeover  present for the instant a process removes a stale lock

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, which is atomic: a reader sees the old file or the new one, never a part.
The checkpoint is written before the record, and holds the rows itself, so a kill between
the two loses nothing: the next start resumes from the checkpoint and rewrites the record.

A run's status: ``done`` (every horizon read), ``diverged`` (recorded with its reason; final),
``failed`` (an error, recorded; tried again next time), ``running`` (locked by a live
process), ``pending`` (not started, or stopped part-way: it resumes from its checkpoint).

A run file that is not what the package writes (a hand edit: invalid JSON, a missing table, a
value of the wrong type) is an error naming the file. ``status`` counts that run as failed, with
the error as its reason, and ``collect`` leaves it out with a warning, so the other runs still
read; ``sweep run`` refuses it until the file is repaired or the run's folder deleted.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from pathlib import Path

import pandas as pd

from optimal_scaling.results import atomic_write
from optimal_scaling.sweep.spec import flatten

__all__ = [
    "STATUSES",
    "Lock",
    "LockLost",
    "collect",
    "drop_stale_lock",
    "read_json",
    "run_dir",
    "status",
    "status_table",
    "write_json",
]

STATUSES = ("done", "diverged", "failed", "running", "pending")


def write_json(path: Path, obj: object) -> Path:
    """Atomically write ``obj`` as JSON (non-finite floats as Infinity/NaN, as Python does)."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=str)
    return atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or None when there is none (a damaged file is an error
    naming it: the package writes these atomically, so only a hand edit breaks one)."""
    fix = ("repair it or delete it: the next `sweep run` writes it again"
           if path.name == "sweep.json" else
           "repair it or delete the run's folder to retrain that run")  # fmt: skip
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not an object; {fix}")
    return data


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true reads as an int


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _damaged(path: Path, what: str) -> ValueError:
    """The error for a run file that is valid JSON but not what the package writes there."""
    return ValueError(f"{path}: {what}; repair it or delete the run's folder to retrain that run")


def read_config(folder: Path) -> dict | None:
    """A run's ``config.json`` (None when missing), checked to hold what the readers use: its
    ``run`` table, its ``horizons`` (token counts) and its grid ``point`` (a table)."""
    path = folder / "config.json"
    config = read_json(path)
    if config is None:
        return None
    horizons = config.get("horizons")
    if not isinstance(config.get("run"), dict):
        raise _damaged(path, "lacks its 'run' table")
    if not isinstance(horizons, list) or not all(_int(h) and h > 0 for h in horizons):
        raise _damaged(path, "'horizons' must be a list of token counts (integers > 0), got "
                       f"{_shown(horizons)}")  # fmt: skip
    if not isinstance(config.get("point", {}), dict):
        raise _damaged(path, f"'point' must be a table of grid values, got "
                       f"{_shown(config['point'])}")  # fmt: skip
    return config


def read_record(folder: Path) -> dict:
    """A run's ``record.json`` ({} when missing), checked to hold what the readers use: rows of
    numbers with an integer horizon each, a log of number columns, parameter counts as
    integers."""
    path = folder / "record.json"
    record = read_json(path) or {}
    rows, log, sizes = (record.get(k, e) for k, e in (("rows", []), ("log", {}), ("sizes", {})))
    if not isinstance(rows, list) or not all(isinstance(r, dict) and _int(r.get("horizon"))
                                             and all(map(_number, r.values())) for r in rows):
        raise _damaged(path, "'rows' must be a list of rows of numbers, each with an integer "
                       "'horizon'")  # fmt: skip
    if not isinstance(log, dict) or not all(isinstance(c, list) and all(map(_number, c))
                                            for c in log.values()):  # fmt: skip
        raise _damaged(path, "'log' must map each column name to a list of numbers")
    if not isinstance(sizes, dict) or not all(map(_int, sizes.values())):
        raise _damaged(path, f"'sizes' must map names to parameter counts (integers), got "
                       f"{_shown(sizes)}")  # fmt: skip
    return record


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _readable_runs(sweep_dir: str | Path, verb: str):
    """``(folder, config, record)`` of each run folder of a sweep directory; a run whose files
    are damaged is left out with a warning naming the file (``sweep run`` refuses it)."""
    root = Path(sweep_dir) / "runs"
    if not root.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a sweep directory (no runs/ folder)")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            yield folder, read_config(folder), read_record(folder)
        except ValueError as exc:
            print(f"sweep {verb}: left out run {folder.name}: {exc}", file=sys.stderr)


def remove_partial(folder: Path, min_age: float = 600.0) -> None:
    """Delete temporary files killed writers left in ``folder``, never a live write.

    :func:`~optimal_scaling.results.atomic_write` names its temporary file after its host and
    process: one from this host goes when that process is dead (or after a day: its pid may
    belong to a later process by then); one from another host (or
    of an unknown name) when it is older than ``min_age`` seconds. A live writer's file stays:
    two ``sweep run`` on one folder both write ``sweep.json`` and the configs, and deleting
    the other's file would make its ``os.replace`` fail."""
    now, host = time.time(), socket.gethostname()
    for tmp in Path(folder).glob(".*.tmp"):
        parts = tmp.name[: -len(".tmp")].rsplit("~", 3)
        try:
            if len(parts) == 4 and parts[1] == host and parts[2].isdigit() \
                    and 0 < int(parts[2]) < 2**22:  # fmt: skip
                # (a live pid may be a later process given the same pid: a day is enough)
                dead = not _alive(int(parts[2])) or now - tmp.stat().st_mtime > 86400
            else:
                dead = now - tmp.stat().st_mtime >= min_age
            if dead:
                tmp.unlink(missing_ok=True)
        except FileNotFoundError:  # its writer finished or removed it meanwhile
            continue


def run_dir(sweep_dir: Path, rid: str) -> Path:
    return Path(sweep_dir) / "runs" / rid


# --------------------------------------------------------------------------- locks
def _job() -> str:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID") or ""
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else job


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: state "Z" is a zombie (a killed worker whose parent died too)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _started(pid: int) -> str | None:
    """When process ``pid`` started: the kernel's boot id and the process's start tick (Linux
    /proc; None elsewhere). Tells a lock's holder from a later process given the same pid."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{boot}:{ticks}"


def lock_holder(folder: Path, stale_after: float = 900.0) -> dict | None:
    """Who holds the run's lock, or None when it is free or stale.

    A holder on this host holds it exactly while its process lives (the same process: same pid
    and start time), however long it has been since the lock was touched. A holder on
    another host counts as gone when the lock was not touched for ``stale_after`` seconds, or
    when it belongs to this very SLURM job at an earlier restart (a requeued task picks up
    its own run; processes of one allocation share the job id but not the restart count). A
    lock file that exists but cannot be read yet (its creator is writing it) is held, unless
    it is older than a minute.
    """
    path = folder / "lock"
    try:
        age = time.time() - path.stat().st_mtime
        info = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        info = None
    pid = info.get("pid") if isinstance(info, dict) else None
    if not (isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**22):
        # being written, or damaged (no pid, or not one a process can have): held for a
        # minute, then free
        return None if age > 60 else {"host": "?", "pid": -1, "job": "", "since": time.time()}
    if info.get("host") == socket.gethostname():
        if not _alive(pid):
            return None
        # the same pid in a later process (a restarted container's pid 1) is not the holder
        started, now = info.get("started"), _started(pid)
        return None if started and now and started != now else info
    requeued = (info.get("job") and info.get("job") == _job()
                and info.get("restart") != _restart())  # fmt: skip
    if age > stale_after or requeued:
        return None
    return info


def _restart() -> str:
    return os.environ.get("SLURM_RESTART_COUNT", "0")


def drop_stale_lock(folder: Path) -> bool:
    """Remove the run's lock if it is stale; True when there is no lock left.

    Only a process holding ``lock.takeover`` (an ``O_EXCL`` file) removes a stale lock, and it
    judges the lock again after taking it: two processes that both found the same lock stale
    cannot both remove it and then each create their own (the second finds the first's live
    lock). A ``lock.takeover`` older than five minutes belongs to a process that died taking
    over; it is removed, and the takeover is left to the next attempt. The holder removes the
    mutex only if it is still its own file (same inode), not one a later taker made.
    """
    if not (folder / "lock").exists():
        return True
    mutex = folder / "lock.takeover"
    try:
        fd = os.open(mutex, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            if time.time() - mutex.stat().st_mtime > 300:
                mutex.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        return False
    mine = os.fstat(fd).st_ino
    os.close(fd)
    try:
        if lock_holder(folder) is not None:
            return False
        (folder / "lock").unlink(missing_ok=True)
        return True
    finally:
        try:
            if mutex.stat().st_ino == mine:
                mutex.unlink()
        except FileNotFoundError:
            pass


class LockLost(RuntimeError):
    """The run's lock file is no longer this process's: another process judged it stale (no
    touch for ``stale_after`` seconds, e.g. a suspended job) and took the run over."""


class Lock:
    """Exclusive claim on a run folder (``O_EXCL`` create; stale locks are taken over through
    :func:`drop_stale_lock`). The holder touches it at least every few minutes (the runner:
    once a minute) so that other hosts see it alive; :meth:`touch` and :meth:`release` act only
    on a lock that is still this process's own file."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "lock"
        self.held = False
        self.info: dict = {}
        self.inode = -1

    def acquire(self) -> bool:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "job": _job(),
                "restart": _restart(), "since": time.time(),
                "started": _started(os.getpid())}  # fmt: skip
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if lock_holder(self.path.parent) is not None:
                    return False
                if not drop_stale_lock(self.path.parent):  # another process is taking over
                    return False
                continue
            self.held = True  # before writing: an interruption now still releases the file
            self.info, self.inode = info, os.fstat(fd).st_ino
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            return True
        return False

    def _mine(self) -> bool:
        """Whether the lock file is still the one this process wrote (same inode, and its
        content, when readable, names this process)."""
        try:
            if self.path.stat().st_ino != self.inode:
                return False
            found = json.loads(self.path.read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError):  # our own write was cut short: the inode decides
            return True
        return isinstance(found, dict) and all(found.get(k) == self.info[k]
                                               for k in ("host", "pid", "since"))  # fmt: skip

    def touch(self) -> None:
        """Mark the lock alive; :class:`LockLost` when another process has taken it over."""
        if self.held:
            if not self._mine():
                self.held = False
                raise LockLost(f"{self.path}: this run's lock was taken over by another process")
            os.utime(self.path)

    def release(self) -> None:
        if self.held:
            if self._mine():  # never another process's lock that replaced a stale one of ours
                self.path.unlink(missing_ok=True)
            self.held = False


# --------------------------------------------------------------------------- status
def run_status(folder: Path) -> str:
    """One of :data:`STATUSES` for the run in ``folder``."""
    record = read_record(folder)
    config = read_config(folder) or {}
    state = record.get("status")
    if state == "diverged":
        return "diverged"
    wanted = config.get("horizons", [])
    reached = {row["horizon"] for row in record.get("rows", [])}
    if wanted and set(wanted) <= reached:
        return "done"
    if lock_holder(folder) is not None:
        return "running"
    return "failed" if state == "failed" else "pending"


def status_table(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per run: id, status, horizons reached / wanted, trainings, seconds (training
    time up to its last reached horizon), the grid point, reason or error (a run whose files
    are damaged is ``failed``, with the error naming the file as reason)."""
    rows = []
    root = Path(sweep_dir) / "runs"
    if not root.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a sweep directory (no runs/ folder)")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            record, config = read_record(folder), read_config(folder) or {}
            state = run_status(folder)
        except ValueError as exc:  # a damaged file: the run is failed, the reason names it
            rows.append({"id": folder.name, "status": "failed", "reached": 0, "horizons": 0,
                         "trainings": 0, "seconds": 0.0, "reason": str(exc)})  # fmt: skip
            continue
        rows.append({
            "id": folder.name,
            "status": state,
            "reached": len(record.get("rows", [])),
            "horizons": len(config.get("horizons", [])),
            "trainings": record.get("trainings", 0),
            "seconds": float((record.get("rows") or [{}])[-1].get("seconds", 0.0)),
            **{k: v for k, v in config.get("point", {}).items()},
            "reason": record.get("reason") or record.get("error", ""),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    return table[[c for c in table if c != "reason"] + ["reason"]] if len(table) else table


def machines(sweep_dir: str | Path) -> dict[str, list[str]]:
    """``{run id: ["torch VERSION on MACHINE", ...]}``: where each run trained, from its
    record's starts (a resumed run can name several); ``[]`` for a run whose record predates
    them. Damaged run folders are left out (``collect`` warns about them)."""
    out = {}
    for folder in sorted(p for p in (Path(sweep_dir) / "runs").glob("*") if p.is_dir()):
        try:
            starts = read_record(folder).get("starts", [])
        except ValueError:
            continue
        named = [f"torch {s['torch']} on {s['machine']}" for s in starts
                 if isinstance(s, dict) and s.get("machine") and s.get("torch")]  # fmt: skip
        out[folder.name] = list(dict.fromkeys(named))
    return out


def time_left(sweep_dir: str | Path) -> dict[str, float]:
    """Training time so far and a rough estimate of what is left, in seconds.

    ``done``: the training time of the finished runs (done or diverged), ``per_run`` its mean
    over the done ones; ``left``: ``per_run`` for each pending run plus, for each running run,
    ``per_run`` less its time so far (≥ 0). Runs at other grid points cost more or less (small
    batches take more steps), so it is only representative when the done runs cover the grid
    (the local executor trains learning rate by learning rate, each over every other axis).
    It is training time: workers that run in parallel divide it. NaN before any run is done.
    """
    table = status_table(sweep_dir)
    if not len(table):
        return {"done": 0.0, "per_run": math.nan, "left": math.nan, "runs_left": 0}
    finished = table[table["status"].isin(["done", "diverged"])]
    done = table[table["status"] == "done"]
    per_run = float(done["seconds"].mean()) if len(done) else math.nan
    running = table[table["status"] == "running"]
    pending = int((table["status"] == "pending").sum())
    left = pending * per_run + float((per_run - running["seconds"]).clip(lower=0).sum())
    return {"done": float(finished["seconds"].sum()), "per_run": per_run, "left": left,
            "runs_left": pending + len(running)}  # fmt: skip


def status(sweep_dir: str | Path) -> dict[str, int]:
    """How many runs are in each status."""
    table = status_table(sweep_dir)
    counts = table["status"].value_counts() if len(table) else {}
    return {s: int(counts.get(s, 0)) for s in STATUSES}


# --------------------------------------------------------------------------- collect
def collect(sweep_dir: str | Path) -> pd.DataFrame:
    """The tidy table of a sweep: one row per run × horizon.

    Columns: ``run_id``, ``status``, ``horizon`` (tokens D), ``step``, ``val_loss``,
    ``train_loss`` (mean over the steps since the previous horizon), ``tokens_per_s`` (same
    window), ``seconds`` (training time so far), ``lr`` (the first group's, at that step),
    ``norm[role]`` (each layer group's largest weight norm in its natural norm), with
    ``noise_scale`` on ``gns_g2``, ``gns_trace`` and ``b_simple`` (same window), ``diverged``,
    ``reason``, then every config key flattened (``optimizer.lr``, ``model.width``, ...).
    A diverged run contributes its reached horizons and one row per horizon it did not reach,
    with ``val_loss = inf``; an unfinished run only the horizons it reached. A run whose files
    are damaged is left out, with a warning on stderr naming the file.
    """
    rows = []
    for folder, config, record in _readable_runs(sweep_dir, "collect"):
        if config is None:
            continue
        state = run_status(folder)
        flat = {k: json.dumps(v) if isinstance(v, list) else v
                for k, v in flatten(config["run"]).items()}  # fmt: skip
        reached = {}
        for row in record.get("rows", []):
            reached[row["horizon"]] = row
        if state == "diverged":
            for h in config["horizons"]:
                reached.setdefault(h, {"horizon": h, "val_loss": float("inf"),
                                       "train_loss": float("inf")})  # fmt: skip
        for h in sorted(reached):
            rows.append({
                "run_id": folder.name,
                "status": state,
                **reached[h],
                "diverged": state == "diverged",
                "reason": record.get("reason", ""),
                **flat,
            })  # fmt: skip
    return pd.DataFrame(rows)


def _sizes(record: dict) -> dict:
    """The run's parameter counts: its record's ``sizes``, or (records written before the log
    kept them) those of its first collected row."""
    if record.get("sizes"):
        return dict(record["sizes"])
    first = (record.get("rows") or [{}])[0]
    return {k: first[k] for k in ("params", "params_non_embedding") if k in first}


def collect_log(sweep_dir: str | Path) -> pd.DataFrame:
    """The training logs of a sweep (runs with ``log_every`` > 0): one row per run × entry.

    Columns: ``run_id``, ``status``, ``step``, ``tokens``, ``train_loss`` (the mean over the
    entry's steps), ``gns_g2`` and ``gns_trace`` where the run measured the noise scale,
    ``params`` and ``params_non_embedding`` where the model counts them (so the table feeds
    :func:`~optimal_scaling.compute_optimal.envelope_fit` as it is), then every config key
    flattened as in :func:`collect`. Empty if no run keeps a log.
    """
    frames = []
    for folder, config, record in _readable_runs(sweep_dir, "collect --log"):
        log = record.get("log")
        if config is None or not log or not log.get("step"):
            continue
        lengths = {k: len(v) for k, v in log.items()}
        if len(set(lengths.values())) > 1:  # a record written before resumes padded with NaN
            raise ValueError(f"collect --log: the log of run {folder.name} has columns of "
                             f"different lengths {lengths}; rerun it to rewrite its log")
        frame = pd.DataFrame(log)
        for key, value in _sizes(record).items():
            frame[key] = value
        flat = {k: json.dumps(v) if isinstance(v, list) else v
                for k, v in flatten(config["run"]).items()}  # fmt: skip
        frame.insert(0, "status", run_status(folder))
        frame.insert(0, "run_id", folder.name)
        frames.append(frame.assign(**flat))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

