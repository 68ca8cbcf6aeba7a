"""Result tables that say where they came from.

Long full-mode runs are committed as small CSV files so lectures can plot them without
re-running. Each file starts with ``# key: value`` lines recording the command that
regenerates it, the package version, the machine and the date; the table follows. Files are
written through a temporary file, so an interrupted run never leaves a half-written table.
"""

from __future__ import annotations

import datetime as dt
import io
import platform
from pathlib import Path

import pandas as pd
import torch


def machine() -> str:
    """A one-line description of this machine's compute."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    import os

    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def write_table(df: pd.DataFrame, path: str | Path, command: str, **meta: object) -> Path:
    """Write ``df`` as CSV with a provenance header; return the path."""
    from optimal_scaling import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "command": command,
        "optimal_scaling": __version__,
        "torch": torch.__version__,
        "machine": machine(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **meta,
    }
    for key, value in header.items():
        if "\n" in str(value):
            raise ValueError(f"metadata {key!r} must fit on one line")
    text = "".join(f"# {k}: {v}\n" for k, v in header.items()) + df.to_csv(index=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def read_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a table written by :func:`write_table`: ``(DataFrame, metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result table at {path}")
    lines = path.read_text().splitlines(keepends=True)
    meta, body = {}, []
    for line in lines:
        if line.startswith("# ") and not body:
            key, _, value = line[2:].rstrip("\n").partition(": ")
            meta[key] = value
        else:
            body.append(line)
    if not body:
        raise ValueError(f"{path} holds metadata but no table")
    return pd.read_csv(io.StringIO("".join(body))), meta
