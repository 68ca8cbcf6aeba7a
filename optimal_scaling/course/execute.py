"""Run a notebook headless and keep its outputs: ``optimal-scaling execute NOTEBOOK``.

Executing the course's notebooks, a cell now and then took exactly the per-cell timeout and
then finished without error, always a cell that creates ipywidgets (many comm messages at
once); seen with jupyter_client 8.10, pyzmq 27.3 and ipykernel 6.31 and 7.4. The client waits
for a cell's reply with ``await socket.poll(timeout)`` on an asyncio ZeroMQ socket, woken by
an edge-triggered file descriptor; when that edge is missed, the poll sleeps to its timeout
and then finds the reply waiting. :func:`patch_client_stall` polls in slices of at most
0.25 s until the same deadline, so a missed edge costs at most 0.25 s (``Empty`` at the
deadline, as before). The root ``conftest.py`` applies it to the test suite's notebook runs,
:func:`execute` to every headless run. Remove it once jupyter_client no longer misses the
wake-up.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from queue import Empty

__all__ = ["execute", "patch_client_stall"]

_SLICE = 0.25  # seconds


def patch_client_stall() -> None:
    """Make jupyter_client's asyncio ``get_msg`` poll in 0.25 s slices (module docstring)."""
    try:
        from jupyter_client.channels import AsyncZMQSocketChannel
    except ImportError:  # no notebook tooling installed: nothing to patch
        return

    async def get_msg(self, timeout: float | None = None) -> dict:
        """Like jupyter_client's get_msg, but never sleeps more than 0.25 s per poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            left = max(0.0, left)
            if await self.socket.poll(int(left * 1000)):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty

    AsyncZMQSocketChannel.get_msg = get_msg


class NotebookFailed(RuntimeError):
    """A cell of an executed notebook failed (the message names it and the file written)."""


def execute(
    notebook: str | Path,
    out: str | Path | None = None,
    timeout: int = 180,
    fast: bool | None = None,
) -> Path:
    """Execute ``notebook`` (.ipynb, or its Jupytext .py) top to bottom; write it with outputs.

    ``out`` defaults to ``<name>.run.ipynb`` beside it; cells run in the notebook's folder,
    each within ``timeout`` seconds; ``fast`` sets ``OPTIMAL_SCALING_FAST`` for the kernel
    (None: leave the environment as it is). The file is written atomically; when a cell
    fails (an error, a timeout, a dead kernel) the notebook up to and with that cell's error
    is written and a :class:`NotebookFailed` names the cell.
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    from optimal_scaling.results import atomic_write, writable

    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    if timeout < 1:
        raise ValueError(f"timeout must be ≥ 1 second, got {timeout}")
    try:
        nb = jupytext.read(path) if path.suffix == ".py" else nbformat.read(path, as_version=4)
    except OSError:
        raise
    except Exception as exc:  # not JSON, no cells, another schema: nbformat's many errors
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(f"{path} is not a notebook nbformat can read ({type(exc).__name__}: "
                         f"{first})") from None  # fmt: skip
    out = writable(Path(out) if out is not None else path.with_suffix(".run.ipynb"))
    patch_client_stall()
    saved = os.environ.get("OPTIMAL_SCALING_FAST")
    if fast is not None:
        os.environ["OPTIMAL_SCALING_FAST"] = "1" if fast else "0"
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent.resolve())}})
        try:
            client.execute()
        # CellExecutionError, CellTimeoutError, DeadKernelError, or Ctrl-C in any disguise
        except (KeyboardInterrupt, Exception) as exc:
            atomic_write(out, lambda f: f.write(nbformat.writes(nb).encode()))
            # Ctrl-C: nbclient's own SIGINT handler shuts the kernel down (and leaves this
            # future behind), so the cell in flight fails with whatever the shutdown caused
            stopped = getattr(client, "_async_cleanup_kernel_future", None) is not None
            if stopped or isinstance(exc, KeyboardInterrupt) or \
                    getattr(exc, "ename", "") == "KeyboardInterrupt":  # fmt: skip
                raise KeyboardInterrupt(f"the notebook so far is in {out}") from None
            failed = [i for i, c in enumerate(nb.cells, start=1) if c.cell_type == "code"
                      and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
            # cells counted from 1, markdown included, as `check` counts them; no cell holds
            # an error: the kernel died or never started, or a cell timed out
            where = f"cell {failed[-1]}" if failed else "execution"
            if hasattr(exc, "ename"):
                what = f"{exc.ename}: {exc.evalue}"
            else:
                lines = str(exc).strip().splitlines()
                what = f"{type(exc).__name__}: {lines[-1] if lines else ''}"
            raise NotebookFailed(f"{path}: {where} failed ({what}); the notebook up to it, "
                                 f"with the error, is in {out}") from None
    finally:
        if fast is not None:
            os.environ.pop("OPTIMAL_SCALING_FAST", None)
            if saved is not None:
                os.environ["OPTIMAL_SCALING_FAST"] = saved
    return atomic_write(out, lambda f: f.write(nbformat.writes(nb).encode()))
