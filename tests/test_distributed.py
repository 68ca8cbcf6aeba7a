"""Distributed orthogonalization: load balancing, and two gloo processes against one process.

The multi-process tests run this very file as a script in two processes
(``python tests/test_distributed.py SCENARIO OUT_DIR`` with ``RANK``/``WORLD_SIZE`` set; the
ranks meet through a file in OUT_DIR, so no port is needed). Each rank saves its results under
OUT_DIR and the test compares them with a single-process run in the pytest process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from optimal_scaling import distributed as D
from optimal_scaling.models import MLP
from optimal_scaling.newton_schulz import step_flops
from optimal_scaling.optim import HyperP, Muon, Scion, ScionLight, scion_groups
from optimal_scaling.optim.muon import orthogonalized_update

WORLD = 2
STEPS = 3
GLOBAL_BATCH = 16

# Matrices of assorted shapes (wide, tall, square, a conv weight, one in float64).
SHAPES = [(24, 40), (40, 24), (32, 32), (8, 8), (16, 4, 3, 3), (5, 70), (12, 12)]


def _matrices() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = [torch.randn(s, generator=g) for s in SHAPES]
    out[-1] = out[-1].double()
    return out


def _orth(u: torch.Tensor) -> torch.Tensor:
    return orthogonalized_update(u, steps=5, scale="max1")


# --------------------------------------------------------------------------- assign
def _loads(owners: list[int], costs: list[float], world: int) -> list[float]:
    loads = [0.0] * world
    for r, c in zip(owners, costs, strict=True):
        loads[r] += c
    return loads


def test_assign_balances_costs() -> None:
    costs = [8, 4, 4, 2, 2, 2, 1, 1]
    owners = D.assign(costs, 2)
    assert sorted(set(owners)) == [0, 1] and len(owners) == len(costs)
    assert _loads(owners, costs, 2) == [12.0, 12.0]
    assert D.assign(costs, 2) == owners  # deterministic
    # Largest first: the 2 goes to rank 0, then the 1s to rank 1 (loads [2, 2]). Taking the
    # items in index order instead (list scheduling) would give [0, 1, 0], loads [3, 1].
    assert D.assign([1, 1, 2], 2) == [1, 1, 0]
    assert D.assign([1, 2, 3, 4], 2) == [0, 1, 1, 0]  # 4→0, 3→1, 2→1, 1→0: loads [5, 5]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_assign_within_lpt_bound(world: int) -> None:
    """Graham's bound against the true optimum (every assignment of 9 items, enumerated)."""
    import itertools

    import numpy as np

    g = torch.Generator().manual_seed(world)
    costs = (torch.rand(9, generator=g) ** 3 * 100).tolist()
    owners = D.assign(costs, world)
    assert all(0 <= r < world for r in owners)
    if world == 8:  # 9 items on 8 ranks: the optimum pairs the two smallest
        best = max(max(costs), sorted(costs)[0] + sorted(costs)[1])
    else:
        every = np.array(list(itertools.product(range(world), repeat=len(costs))))
        loads = np.stack([(every == r) @ np.array(costs) for r in range(world)], axis=1)
        best = loads.max(axis=1).min()
    assert max(_loads(owners, costs, world)) <= (4 / 3 - 1 / (3 * world)) * best + 1e-9


def test_assign_costs_shapes_by_newton_schulz_flops() -> None:
    shapes = [(1024, 4096), (64, 64), (4096, 1024), (256, 256)]
    # The two big matrices cost the same and go to different ranks; the small ones follow.
    assert D.assign(shapes, 2) == [0, 1, 1, 0]
    assert D.matrix_cost((1024, 4096)) == step_flops(1024, 4096)
    assert D.matrix_cost((16, 4, 3, 3)) == step_flops(16, 36)
    assert D.matrix_cost((7,)) == 0


def test_assign_more_ranks_than_matrices_and_errors() -> None:
    assert D.assign([3.0, 1.0], 4) == [0, 1]
    assert D.assign([], 3) == []
    with pytest.raises(ValueError, match="world_size"):
        D.assign([1.0], 0)
    with pytest.raises(ValueError, match="≥ 0"):
        D.assign([-1.0], 2)
    with pytest.raises(TypeError, match="shapes or costs"):
        D.assign(["big"], 2)


# --------------------------------------------------------------------------- without a group
def test_not_distributed_helpers() -> None:
    assert not D.is_distributed()
    assert D.rank() == 0 and D.world_size() == 1


def test_rank_and_world_size_ask_the_given_group(monkeypatch) -> None:
    """A subgroup (2 of 3 processes) has its own size and ranks: not the default group's."""
    sub = object()
    monkeypatch.setattr(D.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(D.dist, "get_world_size", lambda group=None: 2 if group is sub else 3)
    monkeypatch.setattr(D.dist, "get_rank", lambda group=None: 1 if group is sub else 2)
    assert D.is_distributed()
    assert D.world_size(sub) == 2 and D.rank(sub) == 1
    assert D.world_size() == 3 and D.rank() == 2


@pytest.mark.parametrize(
    "costs, owned",
    [
        # costs 10, 10 go to ranks 0 and 1, then the free ones to the lower rank (ties)
        ([0, 0, 10, 10], [[0, 1, 2], [3]]),
        (None, [[0, 2], [1, 3]]),  # equal shapes: equal costs, alternating owners
    ],
)
def test_sharded_work_follows_the_costs(monkeypatch, costs, owned) -> None:
    """In-process: pose as each rank of 2 (no exchange) and record what ``fn`` computes."""
    mats = [torch.full((2, 2), float(k)) for k in range(4)]
    monkeypatch.setattr(D, "world_size", lambda group=None: 2)
    monkeypatch.setattr(D, "_exchange", lambda *args: None)
    for me in range(2):
        monkeypatch.setattr(D, "rank", lambda group=None, me=me: me)
        done: list[int] = []

        def fn(t: torch.Tensor, done: list[int] = done) -> torch.Tensor:
            done.append(int(t[0, 0]))
            return -t

        outs = D.orthogonalize_sharded(mats, fn, costs=costs)
        assert done == owned[me]
        for k, o in enumerate(outs):  # without the exchange, only this rank's results are set
            assert (o is not None and torch.equal(o, -mats[k])) == (k in owned[me])


def test_fallback_is_the_plain_loop() -> None:
    mats = _matrices()
    outs = D.orthogonalize_sharded(mats, _orth)
    for o, m in zip(outs, mats, strict=True):
        assert o.dtype == m.dtype and torch.equal(o, _orth(m))
    fns = [lambda t, k=k: t * k for k in range(len(mats))]  # one fn per tensor
    for k, o in enumerate(D.orthogonalize_sharded(mats, fns)):
        assert torch.equal(o, mats[k] * k)
    assert torch.equal(D.orthogonalize_dtensor(mats[0], _orth), _orth(mats[0]))


def test_sharded_checks_fn_output() -> None:
    with pytest.raises(ValueError, match="shape"):
        D.orthogonalize_sharded([torch.ones(3, 4)], lambda t: t.T)
    with pytest.raises(ValueError, match="one callable per tensor"):
        D.orthogonalize_sharded([torch.ones(3, 4)], [_orth, _orth])
    with pytest.raises(ValueError, match="costs"):
        D.orthogonalize_sharded([torch.ones(3, 4)], _orth, costs=[1.0, 2.0])


def _mlp(bias: bool = True) -> MLP:
    torch.manual_seed(0)
    return MLP(6, 12, 5, depth=4, bias=bias).double()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(GLOBAL_BATCH, 6, generator=g, dtype=torch.float64)
    return x, torch.randn(GLOBAL_BATCH, 5, generator=g, dtype=torch.float64)


def _make_optimizer(kind: str, model: nn.Module, distributed: bool):
    """The optimizers the DDP test compares (float64 throughout, so one process can match)."""
    matrices = [p for p in model.parameters() if p.ndim == 2]
    if kind == "muon":
        return Muon(matrices, lr=0.05, dtype=torch.float64, distributed=distributed)
    if kind == "hyperp":
        return HyperP(matrices, lr=0.05, dtype=torch.float64, distributed=distributed)
    # RowNorm readout (Sign would flip on rounding-level gradient differences); exact SVD.
    groups = scion_groups(model, "colnorm-spectral-rownorm", lr=0.05, spectral_method="svd")
    cls = ScionLight if kind == "scionlight" else Scion
    return cls(groups, momentum=0.5, distributed=distributed)


def _train(model: nn.Module, opt, x: torch.Tensor, y: torch.Tensor, steps: int = STEPS) -> None:
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()  # the mean over this batch
        opt.step()


@pytest.mark.parametrize("kind", ["muon", "hyperp", "scion", "scionlight"])
def test_distributed_flag_without_group_changes_nothing(kind: str) -> None:
    x, y = _batch()
    params = []
    for distributed in (False, True):
        model = _mlp()
        _train(model, _make_optimizer(kind, model, distributed), x, y)
        params.append([p.detach() for p in model.parameters()])
    for a, b in zip(*params, strict=True):
        assert torch.equal(a, b)


def test_distributed_flag_validated() -> None:
    with pytest.raises(TypeError, match="distributed"):
        Muon([nn.Parameter(torch.ones(2, 2))], distributed="yes")
    with pytest.raises(TypeError, match="distributed"):
        Scion([nn.Parameter(torch.ones(2, 2))], distributed=1)


# --------------------------------------------------------------------------- two processes
def _launch(scenario: str, out: Path, timeout: float = 120.0) -> None:
    """Run this file as ``scenario`` in WORLD processes; fail with their stderr if one fails."""
    env = {**os.environ, "WORLD_SIZE": str(WORLD), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, scenario, str(out)],
            env={**env, "RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(WORLD)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"{scenario}: the workers did not finish in {timeout:.0f} s")
    for r, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"{scenario}: rank {r} exited with {p.returncode}:\n{log}"


def _load(out: Path, name: str, r: int):
    return torch.load(out / f"{name}{r}.pt", weights_only=True)


@pytest.mark.distributed
def test_two_ranks_orthogonalize_sharded_equals_one_process(tmp_path: Path) -> None:
    _launch("sharded", tmp_path)
    expected = [_orth(m) for m in _matrices()]
    ranks = [_load(tmp_path, "sharded", r) for r in range(WORLD)]
    for k, e in enumerate(expected):
        assert torch.equal(ranks[0][k], ranks[1][k])  # every rank holds every result
        assert ranks[0][k].dtype == e.dtype
        torch.testing.assert_close(ranks[0][k], e, atol=1e-6, rtol=0)


@pytest.mark.distributed
def test_ddp_training_equals_one_process_on_the_global_batch(tmp_path: Path) -> None:
    _launch("ddp", tmp_path)
    x, y = _batch()
    init = _mlp().state_dict()
    for kind in ("muon", "hyperp", "scion", "scionlight"):
        model = _mlp()
        _train(model, _make_optimizer(kind, model, distributed=False), x, y)
        assert not torch.allclose(model.hidden[0].weight, init["hidden.0.weight"])  # it trained
        ranks = [_load(tmp_path, f"ddp_{kind}", r) for r in range(WORLD)]
        for name, p in model.state_dict().items():
            assert torch.equal(ranks[0][name], ranks[1][name]), f"{kind}: ranks differ at {name}"
            torch.testing.assert_close(ranks[0][name], p, atol=1e-10, rtol=0, msg=f"{kind} {name}")


@pytest.mark.distributed
def test_dtensor_and_fsdp2_on_gloo(tmp_path: Path) -> None:
    _launch("dtensor", tmp_path)
    mats = _matrices()
    got = [_load(tmp_path, "dtensor", r) for r in range(WORLD)]
    for r in range(WORLD):
        for k, m in enumerate(mats):
            torch.testing.assert_close(got[r]["full"][k], _orth(m), atol=1e-6, rtol=0)
            # Rank r keeps its torch.chunk slice of the rows (Shard(0)), uneven ones included.
            local = torch.chunk(_orth(m), WORLD, dim=0)[r]
            torch.testing.assert_close(got[r]["local"][k], local, atol=1e-6, rtol=0)
    # FSDP2 (fully_shard) + Muon(distributed=True) against one process.
    x, y = _batch()
    model = _mlp(bias=False)
    _train(model, _make_optimizer("muon", model, distributed=False), x, y)
    for name, p in model.state_dict().items():
        torch.testing.assert_close(got[0]["fsdp"][name], p, atol=1e-10, rtol=0, msg=name)


# --------------------------------------------------------------------------- the workers
def _worker_sharded(out: Path, r: int) -> None:
    mats = _matrices()
    done = []

    def fn(u: torch.Tensor) -> torch.Tensor:
        done.append(tuple(u.shape))
        return _orth(u)

    outs = D.orthogonalize_sharded(mats, fn)
    # This rank orthogonalized its own share only.
    owners = D.assign([m.shape for m in mats], WORLD)
    assert done == [tuple(m.shape) for m, o in zip(mats, owners, strict=True) if o == r]
    assert 0 < len(done) < len(mats)
    # Each result was computed by one rank and copied: bitwise the single-process value.
    for o, m in zip(outs, mats, strict=True):
        assert torch.equal(o, _orth(m))
    torch.save(outs, out / f"sharded{r}.pt")


def _worker_ddp(out: Path, r: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    x, y = _batch()
    half = GLOBAL_BATCH // WORLD
    x, y = x[r * half : (r + 1) * half], y[r * half : (r + 1) * half]
    for kind in ("muon", "hyperp", "scion", "scionlight"):
        states = []
        for distributed in (True, False):
            model = DDP(_mlp())
            _train(model, _make_optimizer(kind, model.module, distributed), x, y)
            states.append(model.module.state_dict())
        # Sharding the orthogonalization changes nothing, bit for bit.
        for name, p in states[0].items():
            assert torch.equal(p, states[1][name]), f"{kind}: sharded != local at {name}"
        torch.save(states[0], out / f"ddp_{kind}{r}.pt")


def _worker_dtensor(out: Path, r: int) -> None:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    mesh = init_device_mesh("cpu", (WORLD,))
    mats = _matrices()
    dts = [distribute_tensor(m, mesh, [Shard(0)]) for m in mats]
    one = [D.orthogonalize_dtensor(dt, _orth) for dt in dts]
    split = D.orthogonalize_sharded(dts, _orth)
    for a, b in zip(one, split, strict=True):
        assert a.placements == (Shard(0),) and b.placements == (Shard(0),)
        assert torch.equal(a.to_local(), b.to_local())
    result = {
        "full": [b.full_tensor() for b in split],
        "local": [b.to_local() for b in split],
    }
    # FSDP2: every matrix sharded by rows; Muon gathers, splits the work, re-shards.
    x, y = _batch()
    half = GLOBAL_BATCH // WORLD
    x, y = x[r * half : (r + 1) * half], y[r * half : (r + 1) * half]
    model = _mlp(bias=False)
    fully_shard(model, mesh=mesh)
    _train(model, _make_optimizer("muon", model, distributed=True), x, y)
    result["fsdp"] = {k: v.full_tensor() for k, v in model.state_dict().items()}
    torch.save(result, out / f"dtensor{r}.pt")


def _worker_main(scenario: str, out: Path) -> None:
    torch.set_num_threads(1)
    r, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group(
        "gloo", init_method=f"file://{out / 'rendezvous'}", rank=r, world_size=world
    )
    try:
        {"sharded": _worker_sharded, "ddp": _worker_ddp, "dtensor": _worker_dtensor}[scenario](
            out, r
        )
        dist.barrier()  # both ranks finished every collective before either tears gloo down
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker_main(sys.argv[1], Path(sys.argv[2]))
    # Every result is saved and the group destroyed; skip the interpreter's teardown, where
    # gloo's threads have aborted a finished rank ("terminate called without an active
    # exception", exit -6) on a loaded machine, twice, despite the barrier above.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_demo_on_one_process_trains_like_plain_muon(monkeypatch, capsys):
    """D01, D02, D04, D05: one gloo rank (the module docstring: --nproc_per_node=1 gives the
    same checksum): the report, the printed line, the process group torn down, and the
    parameters equal to plain (not distributed) Muon training on the same batches."""
    import torch.distributed as dist

    from optimal_scaling import ddp_demo
    from optimal_scaling.distributed import matrix_cost
    from optimal_scaling.models import GPT
    from optimal_scaling.optim import muon_param_groups, muon_with_adamw

    if torch.cuda.is_available():
        pytest.skip("the demo picks nccl on a CUDA machine")
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                       "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    report = ddp_demo.demo(steps=2, width=32, global_batch=4)
    assert not dist.is_initialized()
    torch.manual_seed(0)
    model = GPT(vocab_size=64, context=16, width=32, depth=2, n_heads=2)
    groups, _ = muon_param_groups(model)
    matrices = [p for g in groups for _, p in g["params"]]
    assert report["world"] == 1 and report["muon_matrices"] == len(matrices) == 8
    assert report["flops_per_rank"] == [sum(matrix_cost(p.shape) for p in matrices)]
    opt = muon_with_adamw(model, lr=0.02, adamw_lr=1e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        tokens = torch.randint(64, (4, 17), generator=g)
        loss = torch.nn.functional.cross_entropy(model(tokens[:, :-1]).reshape(-1, 64),
                                                 tokens[:, 1:].reshape(-1))  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    want = sum(p.double().sum().item() for p in model.parameters())
    assert report["checksum"] == pytest.approx(want, rel=1e-6, abs=1e-6)
    assert "world size 1: 8 Muon matrices" in capsys.readouterr().out


def test_ddp_demo_refuses_a_batch_the_ranks_cannot_share(monkeypatch):
    """D03: a global batch not divisible by the world size is refused by name, and the process
    group the demo initialized is destroyed after the error too."""
    import torch.distributed as dist

    from optimal_scaling import ddp_demo

    if torch.cuda.is_available():
        pytest.skip("the demo picks nccl on a CUDA machine")
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                       "RANK": "0", "WORLD_SIZE": "1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 3)
    try:
        with pytest.raises(ValueError, match="global batch 4 is not divisible by 3 ranks"):
            ddp_demo.demo(steps=1, width=32, global_batch=4)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_ddp_demo_leaves_a_callers_process_group_as_it_was(monkeypatch):
    """Inside a caller's distributed job the demo uses the caller's group and does not tear
    it down."""
    import torch.distributed as dist

    from optimal_scaling import ddp_demo

    if torch.cuda.is_available():
        pytest.skip("the demo picks nccl on a CUDA machine")
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
                       "RANK": "0", "WORLD_SIZE": "1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    dist.init_process_group("gloo")
    try:
        assert ddp_demo.demo(steps=1, width=32, global_batch=4)["world"] == 1
        assert dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
