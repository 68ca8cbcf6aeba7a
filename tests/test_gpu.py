"""Checks that need a CUDA device (skipped elsewhere): no host synchronization in a step."""

from __future__ import annotations

import pytest
import torch

from optimal_scaling import newton_schulz as ns
from optimal_scaling.graphs import GraphCache
from optimal_scaling.models import GPT
from optimal_scaling.newton_schulz import orthogonalize
from optimal_scaling.optim import HyperP, Muon, Scion, muon_param_groups, scion_groups

pytestmark = pytest.mark.gpu


@pytest.fixture
def sync_errors():
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_orthogonalize_never_synchronizes(sync_errors):
    G = torch.randn(3, 256, 512, device="cuda")
    G[1] = 0  # a zero matrix: zeros, decided on the device
    out = orthogonalize(G)
    assert out.shape == G.shape


@pytest.fixture
def graphs(monkeypatch):
    """A fresh graph cache, so that counts are this test's own."""
    cache = GraphCache()
    monkeypatch.setattr(ns, "GRAPHS", cache)
    monkeypatch.setattr(ns, "CUDA_GRAPHS", True)
    return cache


def test_graph_replays_give_the_eager_results(graphs, monkeypatch):
    g = torch.Generator(device="cuda").manual_seed(0)
    Gs = [torch.randn(4, 256, 512, device="cuda", generator=g) for _ in range(4)]
    got = [orthogonalize(G) for G in Gs]
    assert (graphs.eager, graphs.captures, graphs.replays) == (1, 1, 3)
    monkeypatch.setattr(ns, "CUDA_GRAPHS", False)
    want = [orthogonalize(G) for G in Gs]
    assert graphs.eager == 1
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        torch.testing.assert_close(a, b, atol=1e-2, rtol=0)  # bf16 steps; another input
        if k:  # would differ by ~0.3 somewhere: every replay read its own input
            assert (got[k] - got[k - 1]).abs().max() > 0.1


def test_capturing_and_replaying_never_synchronize(graphs, sync_errors):
    G = torch.randn(2, 128, 384, device="cuda")
    for _ in range(3):
        orthogonalize(G)
    assert (graphs.eager, graphs.captures, graphs.replays) == (1, 1, 2)


@pytest.mark.parametrize("cached", [False, True])
def test_inside_a_users_graph_it_runs_eagerly_and_is_captured_with_it(graphs, monkeypatch,
                                                                       cached):  # fmt: skip
    static = torch.randn(64, 192, device="cuda")
    for _ in range(2 if cached else 1):  # warm-up (cuBLAS); and maybe a graph of our own
        orthogonalize(static)
    user = torch.cuda.CUDAGraph()
    with torch.cuda.graph(user):
        out = orthogonalize(static)
    assert graphs.captures == int(cached) and graphs.eager == 2
    G = torch.randn(64, 192, device="cuda")
    static.copy_(G)
    user.replay()
    monkeypatch.setattr(ns, "CUDA_GRAPHS", False)
    torch.testing.assert_close(out, orthogonalize(G), atol=1e-2, rtol=0)


def test_tf32_gets_a_graph_of_its_own(graphs, monkeypatch):
    G = torch.randn(512, 512, device="cuda")
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    try:
        matmul.allow_tf32 = False
        fp32 = [orthogonalize(G, dtype=torch.float32) for _ in range(3)]
        matmul.allow_tf32 = True
        tf32 = orthogonalize(G, dtype=torch.float32)  # a new key: eager, with TF32
        assert (graphs.eager, graphs.captures) == (2, 1)
        monkeypatch.setattr(ns, "CUDA_GRAPHS", False)
        torch.testing.assert_close(tf32, orthogonalize(G, dtype=torch.float32), atol=1e-6, rtol=0)
    finally:
        matmul.allow_tf32 = before
    # the replay is FP32's (TF32 would differ by ~4e-4)
    torch.testing.assert_close(fp32[-1], fp32[0], atol=1e-5, rtol=0)
    assert (tf32 - fp32[0]).abs().max() > 1e-5


def test_row_panels_on_the_gpu_give_the_dense_steps():
    G = torch.randn(4096, 4608, device="cuda")
    X = ns.normalize(G, check=False)  # float32: TF32 is off by default
    dense = ns.torch_steps(X.clone(), [ns.MUON] * 5)
    panels = ns.torch_steps(X.clone(), [ns.MUON] * 5, panel_rows=ns.PANEL_ROWS)
    torch.testing.assert_close(panels, dense, atol=1e-4, rtol=0)
    assert ns.panel_rows(X) == ns.PANEL_ROWS


@pytest.mark.parametrize("graphs_on", [False, True])
@pytest.mark.parametrize("name", ["muon", "scion", "hyperp"])
def test_optimizer_steps_never_synchronize(name, graphs_on, graphs, monkeypatch):
    monkeypatch.setattr(ns, "CUDA_GRAPHS", graphs_on)
    torch.manual_seed(0)
    model = GPT(vocab_size=64, context=16, width=64, depth=2, n_heads=2,
                norm_before_linear=True).cuda()  # fmt: skip
    if name == "scion":
        opt = Scion(scion_groups(model, "colnorm-spectral-rownorm"))
    else:
        opt = (Muon if name == "muon" else HyperP)(muon_param_groups(model)[0])
    x = torch.randint(64, (4, 16), device="cuda")

    def step() -> None:
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # the first step creates the optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:  # gradients still there from the first backward: the step alone
        opt.step()  # the orthogonalizations' graphs are captured
        opt.step()  # and replayed
    finally:
        torch.cuda.set_sync_debug_mode(0)
    if graphs_on:
        assert graphs.captures >= 1 and graphs.replays >= graphs.captures
    else:
        assert graphs.captures == graphs.replays == 0


def test_sampling_on_the_gpu_uses_a_gpu_generator():
    from optimal_scaling.test_time import sample_answers

    torch.manual_seed(0)
    model = GPT(vocab_size=12, context=8, width=16, depth=1, n_heads=2).cuda()
    prompts = torch.randint(12, (3, 4))
    a = sample_answers(model, prompts, 3, 5, seed=1)
    assert a.shape == (3, 5, 3) and a.device.type == "cpu"
    assert torch.equal(a, sample_answers(model, prompts, 3, 5, seed=1))
    with pytest.raises(ValueError, match="generator is on cpu"):
        model.generate(prompts.cuda(), 1, generator=torch.Generator())


def test_scion_merges_a_shape_and_its_transpose_on_the_gpu():
    from optimal_scaling.optim.scion import _merge_transposes

    assert _merge_transposes(torch.zeros(2, 3, device="cuda"))
