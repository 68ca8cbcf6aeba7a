"""Checks that need a CUDA device (skipped elsewhere): no host synchronization in a step."""

from __future__ import annotations

import pytest
import torch

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


@pytest.mark.parametrize("name", ["muon", "scion", "hyperp"])
def test_optimizer_steps_never_synchronize(name):
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
    try:
        opt.step()  # gradients still there from the first backward: the step alone
    finally:
        torch.cuda.set_sync_debug_mode(0)


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
