r"""Orthogonalization split across data-parallel ranks (DDP, FSDP2).

With DDP every rank holds the same averaged gradients, so Muon would orthogonalize every
matrix on every rank. Instead :func:`assign` gives each matrix an owner rank (greedy longest
processing time on Newton–Schulz FLOPs; computed from the shapes alone, identical on every
rank), each rank orthogonalizes its own matrices, and one padded ``all_gather`` per (dtype,
device) shares the results (:func:`orthogonalize_sharded`; DTensor parameters are gathered, computed
and re-sharded, :func:`orthogonalize_dtensor`).

Contract: every rank of the group calls with the same list (shapes, dtypes, order, values)
and a deterministic ``fn`` that keeps its input's shape; the result then equals
``[fn(t) for t in tensors]`` bitwise. A rank that skips the call hangs the others. Works on
gloo (CPU) and NCCL (GPU). Lecture 05 explains the communication cost; the torchrun demo is
:mod:`optimal_scaling.ddp_demo`.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from optimal_scaling._validate import check_int
from optimal_scaling.newton_schulz import step_flops

__all__ = [
    "assign",
    "is_distributed",
    "matrix_cost",
    "orthogonalize_dtensor",
    "orthogonalize_sharded",
    "rank",
    "world_size",
]

Fn = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- process info
def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a process group is initialized."""
    return dist.is_available() and dist.is_initialized()


def rank(group: dist.ProcessGroup | None = None) -> int:
    """This process's rank in ``group`` (the default group if None); 0 when not distributed."""
    return dist.get_rank(group) if is_distributed() else 0


def world_size(group: dist.ProcessGroup | None = None) -> int:
    """The number of processes in ``group`` (the default group if None); 1 when not distributed."""
    return dist.get_world_size(group) if is_distributed() else 1


# --------------------------------------------------------------------------- load balancing
def matrix_cost(shape: Sequence[int]) -> int:
    """FLOPs of one Newton–Schulz step on a tensor of ``shape``, seen as Muon sees it.

    A matrix (m, n) costs ``step_flops(m, n)``; a tensor of more dimensions counts as its
    shape[0] × (the rest) flattening (a conv weight: out × in·kh·kw); a vector or an empty
    tensor costs 0. The number of steps multiplies every cost alike, so it does not matter here.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or math.prod(shape) == 0:
        return 0
    return step_flops(shape[0], math.prod(shape[1:]))


def assign(shapes_or_costs: Sequence[Sequence[int] | float], world_size: int) -> list[int]:
    """The owner rank of every matrix, balancing the Newton–Schulz cost over ``world_size`` ranks.

    Each item is a shape (costed by :func:`matrix_cost`) or a cost (a number ≥ 0). Greedy
    longest processing time (LPT): take the items from the most to the least expensive (ties:
    the lower index first) and give each to the currently least-loaded rank (ties: the lower
    rank). Graham (1969): the largest load is at most (4/3 − 1/(3·world_size)) times the best
    possible one. The result depends only on the arguments, so every rank computes the same
    assignment without communicating.

    >>> assign([8, 4, 4, 2, 2, 2, 1, 1], 2)
    [0, 1, 1, 0, 1, 0, 1, 1]
    """
    world_size = check_int("assign", "world_size", world_size, low=1)
    costs = []
    for item in shapes_or_costs:
        if isinstance(item, numbers.Real) and not isinstance(item, bool):
            cost = float(item)
        else:
            try:
                cost = float(matrix_cost(item))
            except (TypeError, ValueError):
                raise TypeError(
                    f"assign: expected shapes or costs (numbers), got {item!r}"
                ) from None
        if not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"assign: costs must be finite and ≥ 0, got {item!r}")
        costs.append(cost)
    loads = [0.0] * world_size
    owners = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = min(range(world_size), key=lambda r: (loads[r], r))
        owners[i] = r
        loads[r] += costs[i]
    return owners


# --------------------------------------------------------------------------- sharded work
def _checked(out: Tensor, t: Tensor) -> Tensor:
    """fn's output, checked to have the input's shape and cast to its dtype."""
    if not isinstance(out, Tensor) or out.shape != t.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"orthogonalize_sharded: fn must return a tensor of its input's shape "
            f"{tuple(t.shape)}, got {got}"
        )
    return out.to(t.dtype)


def _fns(fn: Fn | Sequence[Fn], n: int) -> list[Fn]:
    if callable(fn):
        return [fn] * n
    fns = list(fn)
    if len(fns) != n or not all(callable(f) for f in fns):
        raise ValueError(
            f"orthogonalize_sharded: fn must be a callable or one callable per tensor "
            f"({n}), got {len(fns)} items"
        )
    return fns


def _is_dtensor(t: object) -> bool:
    # No DTensor can exist before its module is imported (importing it takes seconds).
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def _exchange(
    tensors: list[Tensor],
    outs: list[Tensor | None],
    idx: list[int],
    owners: list[int],
    me: int,
    world: int,
    group: dist.ProcessGroup | None,
) -> None:
    """All-gather the results of ``idx`` (one dtype and device) into ``outs``, in place.

    Rank r's buffer is the concatenation of its results (in index order), zero-padded to the
    largest rank's size, so one ``all_gather`` of equal-sized buffers moves everything.
    """
    sizes = [sum(tensors[i].numel() for i in idx if owners[i] == r) for r in range(world)]
    width = max(sizes)
    first = tensors[idx[0]]
    mine = [outs[i].reshape(-1) for i in idx if owners[i] == me]
    send = torch.cat([*mine, first.new_zeros(width - sizes[me])])
    recv = [torch.empty_like(send) for _ in range(world)]
    if width > 0:
        dist.all_gather(recv, send, group=group)
    offsets = [0] * world
    for i in idx:
        r, n = owners[i], tensors[i].numel()
        if r != me:
            outs[i] = recv[r][offsets[r] : offsets[r] + n].view(tensors[i].shape)
        offsets[r] += n


def orthogonalize_sharded(
    tensors: Sequence[Tensor],
    fn: Fn | Sequence[Fn],
    group: dist.ProcessGroup | None = None,
    *,
    costs: Sequence[float] | None = None,
) -> list[Tensor]:
    """``[fn(t) for t in tensors]``, with the work split over the ranks of ``group``.

    Every rank passes the same list (module docstring: the contract). Rank r applies ``fn``
    to the tensors :func:`assign` gives it (by ``costs``, default :func:`matrix_cost` of the
    shapes), then one ``all_gather`` per (dtype, device) shares the results: every rank returns
    all of them. ``fn`` is one callable, or one per tensor (Scion: a group's maps may differ),
    and must return its input's shape. DTensors (FSDP2) are gathered to full matrices first and the
    results re-sharded like them. Without an initialized process group, or with one process,
    this is the plain loop.
    """
    tensors = list(tensors)
    fns = _fns(fn, len(tensors))
    if costs is not None and len(costs) != len(tensors):
        raise ValueError(
            f"orthogonalize_sharded: got {len(costs)} costs for {len(tensors)} tensors"
        )
    if any(_is_dtensor(t) for t in tensors):
        full = [t.full_tensor() if _is_dtensor(t) else t for t in tensors]
        outs = orthogonalize_sharded(full, fns, group, costs=costs)
        return [_reshard(o, t) if _is_dtensor(t) else o for o, t in zip(outs, tensors, strict=True)]
    world = world_size(group)
    if world == 1:
        return [_checked(f(t), t) for f, t in zip(fns, tensors, strict=True)]
    me = rank(group)
    owners = assign(costs if costs is not None else [t.shape for t in tensors], world)
    outs: list[Tensor | None] = [None] * len(tensors)
    for i, (f, t) in enumerate(zip(fns, tensors, strict=True)):
        if owners[i] == me:
            outs[i] = _checked(f(t), t)
    # One exchange per (dtype, device), in order of first appearance (the same on every rank).
    kinds = dict.fromkeys((t.dtype, t.device) for t in tensors)
    for kind in kinds:
        idx = [i for i, t in enumerate(tensors) if (t.dtype, t.device) == kind]
        _exchange(tensors, outs, idx, owners, me, world, group)
    return outs  # type: ignore[return-value]


# --------------------------------------------------------------------------- DTensor (FSDP2)
def _reshard(full: Tensor, like: Tensor) -> Tensor:
    """``full`` (the same on every rank) as a DTensor placed like ``like``, without communication.

    Each rank keeps its own slice (``src_data_rank=None``). A ``Partial`` placement (a pending
    sum) has no meaning for a finished result, so it becomes ``Replicate``.
    """
    from torch.distributed.tensor import Replicate, distribute_tensor

    placements = [Replicate() if p.is_partial() else p for p in like.placements]
    return distribute_tensor(full, like.device_mesh, placements, src_data_rank=None)


def orthogonalize_dtensor(dt: Tensor, fn: Fn) -> Tensor:
    """fn of the full matrix behind a DTensor, returned sharded like ``dt``.

    Gather (``dt.full_tensor()``: an all-gather over ``dt.device_mesh``), apply ``fn`` (every
    rank does the whole work), keep this rank's slice. A plain tensor is just ``fn(dt)``. To
    split the work of many matrices as well, use :func:`orthogonalize_sharded`.
    """
    if not _is_dtensor(dt):
        return _checked(fn(dt), dt)
    full = dt.full_tensor()
    return _reshard(_checked(fn(full), full), dt)
