"""Root pytest configuration: a workaround for a notebook-client stall (applies to nbmake runs).

Executing the notebooks, a cell now and then took exactly the per-cell timeout (60 s, or 300 s
when the timeout was 300) and then finished without error; always a cell that creates
ipywidgets (many comm messages at once). Measured on this project's notebooks with
jupyter_client 8.10, pyzmq 27.3 and ipykernel 7.4 (and again with ipykernel 6.31, so not the
kernel). The client waits for the cell's reply with ``await socket.poll(timeout)`` on an
asyncio ZeroMQ socket, whose wake-up comes from an edge-triggered file descriptor; when that
edge is missed, the poll sleeps until its timeout and then finds the reply already waiting.

The fix: poll in slices of at most 0.25 s until the same deadline. Each new poll checks the
socket's state before sleeping, so a missed edge costs at most 0.25 s. Behaviour is otherwise
unchanged (``Empty`` at the deadline, as before). Remove once jupyter_client or pyzmq no longer
misses the wake-up.
"""

from __future__ import annotations

import time
from queue import Empty

_SLICE = 0.25  # seconds


def _patch_jupyter_client() -> None:
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


_patch_jupyter_client()
