r"""Replay a small GPU computation from a CUDA graph: one launch instead of dozens.

Orthogonalizing a small matrix is bounded by the host, not the GPU: about 25 kernel
launches, each costing the CPU some 20–30 µs on the H100 host measured in issue 11
(``benchmarks/GPU_NOTES.md``), for a few µs of GPU work each. A CUDA graph records
the launches once and replays all of them with one call. :class:`GraphCache` does that per
*key* (the shapes, dtypes and settings that fix the launches):

* the first call with a key runs ``fn`` eagerly (which also warms up cuBLAS and the
  allocator for those shapes), so a one-off call costs nothing extra;
* the second call captures ``fn`` into a graph (one warm-up run on a side stream, then the
  capture there, as torch's documentation prescribes) and replays it;
* every later call copies the input into the graph's static input, replays, and returns a
  copy of the static output (the next replay overwrites it).

Contract for ``fn``: one CUDA tensor in, one tensor out; only work a graph can hold (no host
synchronization such as ``.item()``, no CPU → GPU copies, no data-dependent shapes); the
result depends on the input's values and the key alone (the key must name every setting that
changes the launched kernels, e.g. TF32). Nothing here synchronizes with the GPU: capturing
does not wait for it either. A capture that fails raises a RuntimeError that says so: torch
cannot promise a consistent state after one (its CUDA random-number generator and the graph's
memory pool can be left mid-capture), so it is not papered over with an eager fallback. While
another graph is being captured (``torch.compile``'s CUDA graphs, a user's
``torch.cuda.graph``) ``fn`` always runs eagerly, and so becomes part of that graph. Calls for
one key are expected on one stream (calls from several threads are serialized). Beyond
``maxsize`` keys the least recently used graph is dropped, and its memory goes back to torch's
allocator.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Captured", "GraphCache", "capture"]


@dataclass
class Captured:
    """A captured graph with its static input and output."""

    graph: torch.cuda.CUDAGraph
    static_in: Tensor
    static_out: Tensor


def capture(fn: Callable[[Tensor], Tensor], x: Tensor) -> Captured:
    """Capture ``fn`` on a static copy of ``x`` (after one warm-up run), on a side stream.

    The graph has not run yet when this returns; its static input holds ``x``'s values.
    """
    device = x.device
    static_in = torch.empty_like(x, memory_format=torch.contiguous_format)
    static_in.copy_(x)
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)
    side.wait_stream(current)  # the copy above first (an event, not a host wait)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(side):
        fn(static_in)  # warm-up: lazy initialization happens outside the capture
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            static_out = fn(static_in)
        finally:
            graph.capture_end()
    current.wait_stream(side)
    return Captured(graph, static_in, static_out)


class GraphCache:
    """``fn(x)`` eagerly at a key's first call, from a CUDA graph from its second on.

    ``capture`` is the capturing function (:func:`capture`; tests pass a stand-in). Counters
    ``eager``, ``captures`` and ``replays`` say what happened.
    """

    def __init__(
        self,
        maxsize: int = 32,
        capture: Callable[[Callable[[Tensor], Tensor], Tensor], Captured] = capture,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"GraphCache: maxsize must be ≥ 1, got {maxsize}")
        self.maxsize = maxsize
        self._capture = capture
        self._graphs: OrderedDict[Hashable, Captured] = OrderedDict()
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()
        self.eager = self.captures = self.replays = 0

    def __len__(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        """Drop every graph and forget every key."""
        with self._lock:
            self._graphs.clear()
            self._seen.clear()

    def __call__(self, key: Hashable, fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        if _capturing(x):  # inside someone else's capture: become part of their graph
            self.eager += 1
            return fn(x)
        with self._lock:
            entry = self._graphs.get(key)
            if entry is None:
                if key not in self._seen:
                    self._seen.add(key)
                    self.eager += 1
                    return fn(x)
                try:
                    entry = self._capture(fn, x)
                except RuntimeError as e:
                    raise RuntimeError(
                        f"capturing a CUDA graph failed ({type(e).__name__}: {e}); after a failed "
                        "capture torch's CUDA state may be inconsistent, so restart with the "
                        "graphs off (OPTIMAL_SCALING_CUDA_GRAPHS=0)"
                    ) from e
                self.captures += 1
                self._graphs[key] = entry
                if len(self._graphs) > self.maxsize:
                    self._graphs.popitem(last=False)
            else:
                self._graphs.move_to_end(key)
                entry.static_in.copy_(x)
            entry.graph.replay()
            self.replays += 1
            return entry.static_out.clone()


def _capturing(x: Tensor) -> bool:
    return x.is_cuda and torch.cuda.is_current_stream_capturing()
