r"""Distributed Muon and Scion: every rank orthogonalizes only its share of the matrices.

**The idea.** In data-parallel training (DDP) every rank ends the backward pass with the same
averaged gradients, hence the same momentum buffers. Run naively, Muon then makes every rank
orthogonalize every matrix: the same Newton–Schulz work done ``world`` times over. Instead:

1. :func:`assign` gives each matrix an *owner* rank, balancing the Newton–Schulz FLOPs
   (:func:`optimal_scaling.newton_schulz.step_flops`) with the greedy longest-processing-time
   rule. Every rank computes the same assignment from the shapes alone: no communication;
2. each rank orthogonalizes the matrices it owns: about 1/world of the FLOPs;
3. the results are all-gathered, so every rank holds every update and applies the same step
   (the parameters stay identical across ranks, as DDP expects).

:func:`orthogonalize_sharded` does steps 1–3 for any per-matrix function ``fn``; ``Muon(...,
distributed=True)`` and ``Scion(..., distributed=True)`` (for its Spectral groups) use it.

**Communication.** Step 3 moves the results, i.e. as many numbers as the matrices hold: each
rank receives the (world − 1)/world of the updates it did not compute. That is half of what the
ring all-reduce of the same gradients costs DDP (2·(world − 1)/world), so the saving in compute
costs one extra all-gather. Each rank packs its results into one flat buffer, padded to the
largest rank's size, and a single ``all_gather`` per dtype (one in practice) exchanges them.
That beats one ``broadcast`` per matrix (a collective per matrix: latency-bound for many small
matrices) and works unchanged on gloo (CPU) and NCCL (GPU). The price is the padding: loads
are balanced in FLOPs, not in entries, so the buffers can be somewhat larger than the results.

**Contract.** Every rank of ``group`` must call with the same list (same shapes, dtypes, order)
holding the same values, and ``fn`` must be deterministic and return a tensor of its input's
shape (cast to the input's dtype). Then the sharded result equals ``[fn(t) for t in tensors]``
bitwise: each entry is computed by exactly one rank and only copied afterwards. A rank that
skips the call (say, a parameter without a gradient on one rank only) hangs the others.

**Launching real runs.** One process per GPU, started by ``torchrun``, which sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``::

    # one node, 8 GPUs
    torchrun --standalone --nproc_per_node=8 train.py
    # two nodes, 8 GPUs each: run on every node (same endpoint = a host of the first node)
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_id=job42 --rdzv_backend=c10d \
        --rdzv_endpoint=node0.example.com:29500 train.py

and in ``train.py``::

    dist.init_process_group("nccl")          # "gloo" on CPUs
    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    model = DDP(model.cuda(), device_ids=[local])
    opt = muon_with_adamw(model.module, distributed=True)   # each rank: its share of Muon
    ... # each rank trains on its own slice of every global batch

**FSDP2 / DTensor.** With ``fully_shard`` every rank holds only a shard of each matrix (a
:class:`~torch.distributed.tensor.DTensor`), but orthogonalization needs the whole matrix.
:func:`orthogonalize_dtensor` gathers it (``full_tensor()``), applies ``fn``, and keeps this
rank's part of the result (``distribute_tensor(..., src_data_rank=None)`` slices locally,
without a second communication). :func:`orthogonalize_sharded` accepts DTensors too: it gathers
every matrix, orthogonalizes only the owned ones, all-gathers the results and re-shards them,
so the Newton–Schulz work is still split. Both run on CPU with gloo in torch 2.13 (tested with
two processes, DTensor and ``fully_shard`` + Muon); with NCCL on GPUs nothing changes.
The simple all-gather version has every rank hold every full matrix for a moment (the memory
FSDP saves comes back during the step); a production implementation gathers each matrix to its
owner only and scatters the result back (less traffic and memory, more code).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

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
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"assign: world_size must be an int ≥ 1, got {world_size!r}")
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
    shapes), then one ``all_gather`` per dtype shares the results: every rank returns all of
    them. ``fn`` is one callable, or one per tensor (Scion: a group's maps may differ), and must
    return its input's shape. DTensors (FSDP2) are gathered to full matrices first and the
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


# --------------------------------------------------------------------------- demo (torchrun)
def demo(steps: int = 3, width: int = 64, global_batch: int = 8) -> dict:
    """DDP + distributed Muon on a tiny GPT; run under torchrun (gloo on CPU, nccl on GPU).

        torchrun --standalone --nproc_per_node=2 -m optimal_scaling.distributed

    Every rank builds the same model (same seed), trains on its slice of the same global
    batches with ``muon_with_adamw(..., distributed=True)``, and rank 0 prints how the Muon
    matrices were split (FLOPs per rank) and a checksum of the final parameters: the same
    command with ``--nproc_per_node=1`` prints the same checksum (up to float rounding).
    """
    import os

    from torch.nn.parallel import DistributedDataParallel

    from optimal_scaling.models import GPT
    from optimal_scaling.optim import muon_param_groups, muon_with_adamw

    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    me, world = dist.get_rank(), dist.get_world_size()
    if global_batch % world:
        raise ValueError(f"global batch {global_batch} is not divisible by {world} ranks")
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if cuda else "cpu")
    torch.manual_seed(0)
    model = GPT(vocab_size=64, context=16, width=width, depth=2, n_heads=2).to(device)
    muon_groups, _ = muon_param_groups(model)
    matrices = [p for group in muon_groups for _, p in group["params"]]
    owners = assign([p.shape for p in matrices], world)
    loads = [sum(matrix_cost(p.shape) for p, r in zip(matrices, owners, strict=True) if r == k)
             for k in range(world)]
    ddp = DistributedDataParallel(model)
    opt = muon_with_adamw(model, lr=0.02, adamw_lr=1e-3, distributed=True)
    g = torch.Generator().manual_seed(1)
    share = global_batch // world
    for _ in range(steps):
        tokens = torch.randint(64, (global_batch, 17), generator=g)[me * share : (me + 1) * share]
        x, y = tokens[:, :-1].to(device), tokens[:, 1:].to(device)
        logits = ddp(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    checksum = sum(p.double().sum().item() for p in model.parameters())
    report = {"world": world, "muon_matrices": len(matrices), "flops_per_rank": loads,
              "checksum": checksum}
    if me == 0:
        print(f"world size {world}: {len(matrices)} Muon matrices, Newton–Schulz FLOPs per rank "
              f"{loads}; parameter checksum {checksum:.10f}", flush=True)
    dist.destroy_process_group()
    return report


if __name__ == "__main__":
    demo()
