"""Result tables that say where they came from.

Long full-mode runs are committed as small CSV files so lectures can plot them without
re-running. Each file starts with ``# key: value`` lines recording the command that
regenerates it, the package version, the machine and the date; the table follows. Files are
written through a temporary file, so an interrupted run never leaves a half-written table.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pandas as pd


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then move it into place.

    ``os.replace`` is atomic: a reader (or a job killed mid-write) sees the old file or the
    new one, never a part of it. Parent folders are created. The temporary file is named
    ``.<name>~<host>~<pid>~<random>.tmp``, so a cleaner can tell a killed writer's leftover
    from a live process's write in flight (``sweep.store.remove_partial``). A ``path`` that
    exists but is no regular file (``/dev/null``, a pipe, a folder) is refused: replacing it
    would destroy it.
    """
    path = Path(path)
    _regular_or_absent(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}~{socket.gethostname()}~{os.getpid()}~"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is an ordinary file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _regular_or_absent(path: Path, what: str = "") -> None:
    if path.is_dir():
        raise IsADirectoryError(f"{what}{path} is a folder; give the file's path")
    if path.exists() and not path.is_file():
        raise OSError(f"{what}{path} is not a regular file (a device or a pipe); results are "
                      "written by replacing the file, which would destroy it")  # fmt: skip


def writable(out: str | Path) -> Path:
    """``out`` after checking a file can be written there (before any work is done): absent or
    a regular file (not a folder, not ``/dev/null``), its parent created and writable; else an
    OSError that names the problem."""
    out = Path(out)
    _regular_or_absent(out, "--out ")
    blocker = next((p for p in reversed(out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise NotADirectoryError(f"--out {out}: {blocker} is a file, not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise PermissionError(f"cannot write to {out.parent}")
    return out


def machine(device: str | None = None) -> str:
    """A one-line description of the compute ``device`` runs on (default: CUDA's first GPU
    when there is one, else the CPU), e.g. ``CPU AMD EPYC (AVX2), 2 cores, torch threads 1``.

    The CPU's vector instructions are named because they decide which kernels BLAS runs, and
    with them the rounding: the same run trained on two machines reads the same to about
    10⁻⁶ after a few steps, but a run near the edge of stability can drift apart from there
    (the README's "Committed results" has measurements)."""
    import torch

    from optimal_scaling.config import cpu_name

    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda})"
    if dev.type != "cpu":
        return f"{dev.type} device"
    simd = torch.backends.cpu.get_cpu_capability()
    return (f"CPU {cpu_name()} ({simd}), {os.cpu_count()} cores, "
            f"torch threads {torch.get_num_threads()}")


def write_table(df: pd.DataFrame, path: str | Path, command: str, **meta: object) -> Path:
    """Write ``df`` as CSV with a provenance header; return the path.

    The header's ``machine`` and ``date`` say where and when the table was written (for a
    sweep: where ``sweep collect`` ran), not where its runs trained; a collected sweep names
    those in ``trained_on``, and its runs carry their timings in their columns. A named index
    (a ``groupby`` result's keys) is written as columns in front; an unnamed one is left out,
    as it holds nothing but row positions."""
    import torch

    from optimal_scaling import __version__

    path = Path(path)
    header = {
        "command": command,
        "optimal_scaling": __version__,
        "torch": torch.__version__,
        "machine": machine(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **meta,
    }
    for key, value in header.items():
        if len(f"x{key}x{value}x".splitlines()) > 1 or ": " in str(key):  # \r, \u2028 too
            raise ValueError(f"metadata {key!r} must fit on one line (and a key holds no ': ')")
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"write_table: df must be a pandas DataFrame, got {type(df).__name__}")
    named = [n for n in df.index.names if n is not None]
    if named:
        clash = sorted({str(n) for n in named} & set(map(str, df.columns)))
        if clash:
            raise ValueError(f"write_table: the index level(s) {clash} are also columns; "
                             "drop or rename one of them")  # fmt: skip
        df = df.reset_index(level=named)
    if df.columns.empty:
        raise ValueError("write_table: the table has no columns")
    if str(df.columns[0]).startswith("#"):  # the header line would read as metadata
        raise ValueError(f"write_table: the first column's name {df.columns[0]!r} starts "
                         "with '#'; rename or reorder it")  # fmt: skip
    text = "".join(f"# {k}: {v}\n" for k, v in header.items()) + df.to_csv(index=False)
    return atomic_write(path, lambda f: f.write(text.encode()))


def read_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a table written by :func:`write_table`: ``(DataFrame, metadata)``.

    Missing values round-trip as NaN, and so do a cell ``"nan"`` and an empty string (CSV
    cannot tell them from a missing value); other strings such as ``"None"`` or ``"NA"``
    are kept. A column whose cells all read as numbers becomes numeric (``"007"`` → 7), as
    pandas reads any CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result table at {path}")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    meta, body = {}, []
    for line in lines:
        if line.startswith("# ") and not body:
            key, _, value = line[2:].rstrip("\n").partition(": ")
            meta[key] = value
        else:
            body.append(line)
    if not body:
        raise ValueError(f"{path} holds metadata but no table")
    # Only an empty cell (how ``to_csv`` writes a missing value) or "nan" reads as missing:
    # pandas' default list would also turn strings such as "None", "NA" or "null" into NaN.
    table = pd.read_csv(io.StringIO("".join(body)), keep_default_na=False,
                        na_values=["", "nan", "NaN"])  # fmt: skip
    return table, meta
