"""DDP + distributed Muon on a tiny GPT, for torchrun (lecture 05).

    torchrun --standalone --nproc_per_node=2 -m optimal_scaling.ddp_demo

Every rank builds the same model, trains on its slice of the same global batches with
``muon_with_adamw(..., distributed=True)``, and rank 0 prints how the Muon matrices were split
(Newton–Schulz FLOPs per rank) and a checksum of the final parameters: ``--nproc_per_node=1``
prints the same checksum up to float rounding. In your own script::

    dist.init_process_group("nccl")          # "gloo" on CPUs
    local = int(os.environ["LOCAL_RANK"]); torch.cuda.set_device(local)
    model = DDP(model.cuda(), device_ids=[local])
    opt = muon_with_adamw(model.module, distributed=True)
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from optimal_scaling.distributed import assign, matrix_cost


def demo(steps: int = 3, width: int = 64, global_batch: int = 8) -> dict:
    """Train ``steps`` steps under torchrun (gloo on CPU, nccl on GPU); the module doc says how.

    Returns (and rank 0 prints) the world size, the Muon matrices, their FLOPs per rank and
    a checksum of the final parameters. A process group that is already initialized is used
    and left as it was; one the demo creates is destroyed at the end, also after an error.
    """
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local)  # NCCL's device for this rank
    created = not dist.is_initialized()  # a caller's own group is left to the caller
    if created:
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        return _train(steps, width, global_batch, torch.device(f"cuda:{local}" if cuda else "cpu"))
    finally:
        if created:
            dist.destroy_process_group()


def _train(steps: int, width: int, global_batch: int, device: torch.device) -> dict:
    from torch.nn.parallel import DistributedDataParallel

    from optimal_scaling.models import GPT
    from optimal_scaling.optim import muon_param_groups, muon_with_adamw

    me, world = dist.get_rank(), dist.get_world_size()
    if global_batch % world:
        raise ValueError(f"global batch {global_batch} is not divisible by {world} ranks")
    torch.manual_seed(0)
    model = GPT(vocab_size=64, context=16, width=width, depth=2, n_heads=2).to(device)
    muon_groups, _ = muon_param_groups(model)
    matrices = [p for group in muon_groups for _, p in group["params"]]
    owners = assign([p.shape for p in matrices], world)
    loads = [sum(matrix_cost(p.shape) for p, r in zip(matrices, owners, strict=True) if r == k)
             for k in range(world)]
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
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
    return report


if __name__ == "__main__":
    demo()
