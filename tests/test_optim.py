"""Optimizers (Muon, Scion, ScionLight, HyperP) against references written from the formulas.

The references below use only torch and ``newton_schulz.orthogonalize`` (Muon's building
block), never the optimizers' own helpers.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optimal_scaling.duality import BiasRMS, ColNorm, RowNorm, Sign, Spectral
from optimal_scaling.models import GPT, MLP
from optimal_scaling.newton_schulz import orthogonalize
from optimal_scaling.optim import (
    PRESETS,
    CombinedOptimizer,
    HyperP,
    Muon,
    Scion,
    ScionLight,
    lmo,
    muon_param_groups,
    muon_with_adamw,
    scion_groups,
    weight_decay_gap,
)

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and avoids oversubscribing under ``-n 2``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def param(*shape: int, seed: int = 0) -> nn.Parameter:
    return nn.Parameter(randn(*shape, seed=seed) if shape else torch.tensor(0.5))


def tiny_gpt(seed: int = 0, **kwargs) -> GPT:
    torch.manual_seed(seed)
    return GPT(vocab_size=32, context=8, width=16, depth=1, n_heads=2, mlp_ratio=2, **kwargs)


def batches(n: int) -> list[torch.Tensor]:
    return [torch.randint(0, 32, (2, 8), generator=gen(100 + i)) for i in range(n)]


def lm_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x).flatten(0, 1).float(), x.flatten())


def train(model: nn.Module, opt, xs: list[torch.Tensor]) -> None:
    for x in xs:
        opt.zero_grad()
        lm_loss(model, x).backward()
        opt.step()


def assert_same_params(a: nn.Module, b: nn.Module, atol: float) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=atol, rtol=0, msg=name)


# ------------------------------------------------------------------------------- Muon
def muon_scale(scale: str, d_out: int, d_in: int) -> float:
    return {
        "max1": math.sqrt(max(1, d_out / d_in)),
        "ratio": math.sqrt(d_out / d_in),
        "adamw": 0.2 * math.sqrt(max(d_out, d_in)),
        "none": 1.0,
    }[scale]


def newton_schulz_from_formula(G: torch.Tensor, margin: float, eps: float) -> torch.Tensor:
    """Five Muon steps written from the formula (Keller Jordan's function), no package code."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.T if G.shape[0] > G.shape[1] else G
    X = X / (margin * X.norm() + eps)
    for _ in range(5):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if G.shape[0] > G.shape[1] else X


@pytest.mark.parametrize("scale", ["max1", "ratio", "adamw", "none"])
@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy_ball", "nesterov"])
def test_muon_matches_reference(nesterov, scale):
    shapes = [(6, 4), (4, 6), (3, 2, 2, 2)]  # tall, wide, conv (flattened to 3 × 8)
    mu, lr, wd = 0.9, 0.05, 0.1
    params = [param(*s, seed=i) for i, s in enumerate(shapes)]
    ref = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(r) for r in ref]
    opt = Muon(
        params, lr=lr, momentum=mu, nesterov=nesterov, scale=scale, weight_decay=wd, dtype=F64
    )
    for t in range(3):
        grads = [randn(*s, seed=10 * t + i + 1) for i, s in enumerate(shapes)]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(grads):
            bufs[i] = mu * bufs[i] + g
            u = g + mu * bufs[i] if nesterov else bufs[i]
            d_out, d_in = u.shape[0], u[0].numel()
            O = newton_schulz_from_formula(u.reshape(d_out, d_in), margin=1.01, eps=0.0)
            ref[i] = ref[i] * (1 - lr * wd) - lr * muon_scale(scale, d_out, d_in) * O.view_as(u)
        for p, r in zip(params, ref, strict=True):
            torch.testing.assert_close(p.detach(), r, atol=1e-12, rtol=0)


def test_muon_errors():
    with pytest.raises(ValueError, match=r"matrices only.*shape \(5,\)"):
        Muon([param(5)])
    with pytest.raises(ValueError, match=r"'gain'.*shape \(5,\)"):
        Muon([("gain", param(5))])
    with pytest.raises(ValueError, match="unknown scale 'huge'.*max1, ratio, adamw, none"):
        Muon([param(3, 2)], scale="huge")
    with pytest.raises(ValueError, match=r"lr must be in \[0"):
        Muon([param(3, 2)], lr=-0.1)
    with pytest.raises(ValueError, match="momentum"):
        Muon([param(3, 2)], momentum=1.0)
    with pytest.raises(ValueError, match="unknown schedule"):
        Muon([param(3, 2)], schedule="quartic")
    opt = Muon([param(3, 2)])
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        opt.add_param_group({"params": [param(4)]})
    assert len(opt.param_groups) == 1  # the bad group was not kept
    p = param(4, 3)
    p.grad = torch.full_like(p, float("nan"))
    with pytest.raises(ValueError, match=r"gradient of a parameter of shape \(4, 3\) contains NaN"):
        Muon([p]).step()


# ------------------------------------------------------------------------------- HyperP
def test_hyperp_stays_on_the_sphere():
    params = [param(6, 4, seed=1), param(4, 6, seed=2)]
    radii = [float(p.detach().norm()) for p in params]
    start = [p.detach().clone() for p in params]
    opt = HyperP(params, lr=0.1, weight_decay=0.5, dtype=F64)
    for t in range(4):
        for i, p in enumerate(params):
            p.grad = randn(*p.shape, seed=20 + 2 * t + i)
        opt.step()
    for p, r, p0 in zip(params, radii, start, strict=True):
        assert float(p.detach().norm()) == pytest.approx(r, rel=1e-12)
        assert not torch.allclose(p.detach(), p0)
    # One step = the Muon step (tested above), then W ← r·W/‖W‖_F.
    a, b = param(5, 3), param(5, 3)
    a.grad, b.grad = randn(5, 3, seed=3), randn(5, 3, seed=3)
    HyperP([a], lr=0.2, dtype=F64).step()
    Muon([b], lr=0.2, dtype=F64).step()
    r = float(randn(5, 3).norm())
    torch.testing.assert_close(a.detach(), r * b.detach() / b.detach().norm(), atol=1e-12, rtol=0)
    z = nn.Parameter(torch.zeros(3, 2))
    z.grad = torch.ones(3, 2)
    with pytest.raises(ValueError, match=r"shape \(3, 2\) has Frobenius norm 0"):
        HyperP([z]).step()


def test_hyperp_weight_decay_is_second_order():
    W, G = randn(8, 6, seed=1), randn(8, 6, seed=2)
    lrs = [1e-2, 5e-3, 2.5e-3, 1.25e-3]
    gaps = [weight_decay_gap(W, G, lr, weight_decay=0.5, dtype=F64) for lr in lrs]
    ratios = [gaps[i] / gaps[i + 1] for i in range(len(gaps) - 1)]
    assert all(3.8 < r < 4.2 for r in ratios), ratios  # O(lr²)
    # The gap is max|W_λ − W_0| over the entries, from two explicit HyperP steps.
    steps = []
    for wd in (0.5, 0.0):
        p = nn.Parameter(W.clone())
        p.grad = G.clone()
        HyperP([p], lr=lrs[0], weight_decay=wd, dtype=F64).step()
        steps.append(p.detach())
    assert gaps[0] == pytest.approx(float((steps[0] - steps[1]).abs().max()), rel=1e-12)
    # Without the sphere (plain Muon), weight decay moves W at first order: ratio 2.
    muon_gaps = []
    for lr in lrs:
        out = []
        for wd in (0.5, 0.0):
            p = nn.Parameter(W.clone())
            p.grad = G.clone()
            Muon([p], lr=lr, weight_decay=wd, dtype=F64).step()
            out.append(p.detach())
        muon_gaps.append(float((out[0] - out[1]).abs().max()))
    assert muon_gaps[0] / muon_gaps[1] == pytest.approx(2.0, rel=1e-6)


# ------------------------------------------------------------------------------- Scion LMOs
def col_rms(G: torch.Tensor) -> torch.Tensor:
    return G.pow(2).mean(dim=0, keepdim=True).sqrt()


def row_rms(G: torch.Tensor) -> torch.Tensor:
    return G.pow(2).mean(dim=1, keepdim=True).sqrt()


def svd_lmo(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G.to(F64), full_matrices=False)
    d_out, d_in = G.shape
    return -math.sqrt(d_out / d_in) * U @ Vh


LMO_CASES = {
    "colnorm": lambda G: -G / col_rms(G),
    "spectral": svd_lmo,
    "rownorm": lambda G: -(1 / G.shape[1]) * G / row_rms(G),
    "sign": lambda G: -torch.sign(G) / G.shape[1],
}


def one_step_direction(norm, G: torch.Tensor, lr: float = 0.1, radius: float = 2.0, **kw):
    """(x_new − x)/(γ·ρ) after one Scion step with α = 1: the LMO Scion used."""
    x = param(*G.shape, seed=7)
    x0 = x.detach().clone()
    x.grad = G.clone()
    Scion([x], lr=lr, momentum=1.0, norm=norm, radius=radius, **kw).step()
    return (x.detach() - x0) / (lr * radius)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5)], ids=["tall", "wide"])
@pytest.mark.parametrize("norm", list(LMO_CASES))
def test_scion_lmo_matches_definition(norm, shape):
    G = randn(*shape, seed=1)
    torch.testing.assert_close(one_step_direction(norm, G), LMO_CASES[norm](G), atol=1e-12, rtol=0)


def test_scion_bias_lmo_and_newton_schulz_spectral():
    g = randn(6, seed=3)
    expected = -g / g.pow(2).mean().sqrt()
    torch.testing.assert_close(one_step_direction("bias_rms", g), expected, atol=1e-12, rtol=0)
    G = randn(6, 4, seed=4)
    approx = one_step_direction("spectral", G, norm_kwargs={"method": "newton_schulz"})
    exact = svd_lmo(G)
    assert float((approx - exact).norm() / exact.norm()) < 0.02


@pytest.mark.parametrize("norm", list(LMO_CASES))
def test_constrained_differs_by_the_shrink_term(norm):
    lr, radius = 0.1, 2.0
    G = randn(5, 3, seed=1)
    x = randn(5, 3, seed=2)
    out = {}
    for constrained in (False, True):
        p = nn.Parameter(x.clone())
        p.grad = G.clone()
        Scion([p], lr=lr, norm=norm, radius=radius, constrained=constrained).step()
        out[constrained] = p.detach()
    torch.testing.assert_close(out[True] - out[False], -lr * x, atol=1e-12, rtol=0)
    # Constrained steps keep a parameter inside the radius-ρ ball (convex combinations).
    p = nn.Parameter(torch.zeros(5, 3, dtype=F64))
    opt = Scion([p], lr=0.3, norm=norm, radius=radius, constrained=True)
    opt.init(gen(0))
    for t in range(5):
        p.grad = randn(5, 3, seed=30 + t)
        opt.step()
        assert opt.norms()["group0.param0"] <= radius * (1 + 1e-12)


def test_scion_sign_everywhere_is_normalized_sign_descent():
    lr, radius = 0.01, 0.5
    params = [param(4, 6, seed=1), param(3, 4, seed=2)]
    ref = [p.detach().clone() for p in params]
    opt = Scion(params, lr=lr, momentum=1.0, norm="sign", radius=radius)
    for t in range(3):
        for i, p in enumerate(params):
            p.grad = randn(*p.shape, seed=10 * t + i)
            ref[i] = ref[i] - lr * radius * torch.sign(p.grad) / p.shape[1]
        opt.step()
    for p, r in zip(params, ref, strict=True):
        torch.testing.assert_close(p.detach(), r, atol=1e-12, rtol=0)


def test_scion_momentum_matches_reference():
    alpha, lr, radius = 0.3, 0.05, 1.5
    p = param(5, 4)
    x, d = p.detach().clone(), torch.zeros(5, 4, dtype=F64)
    opt = Scion([p], lr=lr, momentum=alpha, norm="colnorm", radius=radius)
    for t in range(4):
        g = randn(5, 4, seed=t + 1)
        p.grad = g.clone()
        opt.step()
        d = (1 - alpha) * d + alpha * g
        x = x + lr * radius * (-d / col_rms(d))
    torch.testing.assert_close(p.detach(), x, atol=1e-12, rtol=0)


def test_scion_auto_norms():
    model = MLP(4, 8, 3, depth=3)
    for p in model.parameters():
        name = Scion([p]).norm_of(Scion([p]).param_groups[0], p).name
        assert name == ("spectral" if p.ndim == 2 else "bias_rms")
    w = param(3, 8)
    for role, name in [("input", "colnorm"), ("hidden", "spectral"), ("output", "sign")]:
        opt = Scion([{"params": [w], "role": role}])
        assert opt.norm_of(opt.param_groups[0], w).name == name
    conv = param(4, 3, 2, 2)
    assert Scion([conv]).norm_of(Scion([conv]).param_groups[0], conv).name == "conv2d_spectral"
    opt = Scion([{"params": [conv], "role": "hidden"}])  # a hidden conv weight: per-tap spectral
    assert opt.norm_of(opt.param_groups[0], conv).name == "conv2d_spectral"
    for shape, name in [((2, 3, 4), "conv1d_spectral"), ((2, 3, 1, 2, 2), "conv3d_spectral"),
                        ((), "bias_rms")]:  # fmt: skip
        x = param(*shape)
        assert Scion([x]).norm_of(Scion([x]).param_groups[0], x).name == name


# ------------------------------------------------------------------------------- ScionLight
def test_scion_light_equals_scion():
    alpha = 0.2
    a = tiny_gpt(norm_before_linear=True, bias=True).double()
    b = copy.deepcopy(a)
    opt_a = Scion(scion_groups(a, lr=0.05, spectral_method="svd"), momentum=alpha)
    opt_b = ScionLight(scion_groups(b, lr=0.05, spectral_method="svd"), momentum=alpha)
    start = copy.deepcopy(a)
    for x in batches(5):
        opt_a.zero_grad()
        lm_loss(a, x).backward()
        opt_a.step()
        opt_b.zero_grad()  # a no-op: the gradients are the momentum
        lm_loss(b, x).backward()
        opt_b.step()
    assert_same_params(a, b, atol=1e-6)
    with pytest.raises(AssertionError):
        assert_same_params(a, start, atol=1e-3)  # it did train
    assert len(opt_b.state) == 0 and opt_b.state_dict()["state"] == {}
    assert len(opt_a.state) == len(list(a.parameters()))
    # After the step, p.grad = (1 − α)·d/α where d is Scion's momentum buffer.
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        expected = (1 - alpha) / alpha * opt_a.state[pa]["momentum_buffer"]
        torch.testing.assert_close(pb.grad, expected, atol=1e-9, rtol=1e-9)
    opt_b.reset_momentum()
    assert all(p.grad is None for p in b.parameters())


# ------------------------------------------------------------------------------- presets, init
@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_assign_norms_by_role(preset):
    model = tiny_gpt(norm_before_linear=True, bias=True)
    mults = {"input": 2.0, "hidden": 0.25, "output": 4.0}
    radii = {"input": 3.0, "hidden": 5.0, "output": 7.0, "gain": 0.5, "bias": 0.25}
    groups = scion_groups(model, preset, lr=0.1, lr_multipliers=mults, radii=radii)
    out_norm = "sign" if preset.endswith("sign") else "rownorm"
    expected = {
        "input": "colnorm",
        "hidden": "spectral",
        "output": out_norm,
        "gain": "bias_rms",
        "bias": "bias_rms",
    }
    roles = model.param_roles()
    seen = {}
    for g in groups:
        assert g["norm"] == expected[g["role"]]
        assert g["lr"] == pytest.approx(0.1 * mults.get(g["role"], 1.0))
        assert g["radius"] == radii[g["role"]]
        for name, _ in g["params"]:
            seen[name] = g
            assert roles[name] == g["role"]
            assert g["transpose"] == name.startswith(("wte.", "wpe."))
    assert set(seen) == set(roles) and set(roles.values()) == set(expected)
    assert seen["head.weight"]["norm"] == out_norm and seen["wte.weight"]["norm"] == "colnorm"
    opt = Scion(groups)
    qkv = model.blocks[0].attn.qkv.weight
    m = opt.norm_of(seen["blocks.0.attn.qkv.weight"], qkv)
    assert isinstance(m, Spectral) and m.method == "newton_schulz"
    # An MLP's input layer is a Linear: no transpose.
    mlp_groups = scion_groups(MLP(4, 8, 3), preset)
    assert [g["transpose"] for g in mlp_groups if g["role"] == "input"] == [False]


@pytest.mark.parametrize("method", ["newton_schulz", "svd"])
def test_a_hidden_conv_weight_gets_conv2d_spectral_with_the_spectral_method(method):
    class ConvNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Linear(3, 8)
            self.conv = nn.Conv2d(8, 8, 3)
            self.head = nn.Linear(8, 2)

        def param_roles(self):
            return {"emb.weight": "input", "emb.bias": "bias", "conv.weight": "hidden",
                    "conv.bias": "bias", "head.weight": "output", "head.bias": "bias"}  # fmt: skip

    model = ConvNet()
    groups = scion_groups(model, spectral_method=method)
    conv = next(g for g in groups if g["role"] == "hidden")
    assert conv["norm"] == "conv2d_spectral" and [n for n, _ in conv["params"]] == ["conv.weight"]
    assert conv["norm_kwargs"] == {"method": method}
    m = Scion(groups).norm_of(conv, model.conv.weight)
    assert m.name == "conv2d_spectral" and m.method == method


@pytest.mark.parametrize("conv, name", [(nn.Conv1d(3, 5, 4), "conv1d_spectral"),
                                        (nn.Conv3d(3, 5, 2), "conv3d_spectral")])  # fmt: skip
def test_1d_and_3d_conv_weights_get_their_conv_map_and_a_unit_step(conv, name):
    class ConvNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def param_roles(self):
            return {"conv.weight": "hidden", "conv.bias": "bias"}

    model = ConvNet()
    groups = scion_groups(model, lr=0.1, spectral_method="svd")
    hidden = next(g for g in groups if g["role"] == "hidden")
    assert hidden["norm"] == name
    opt = Scion(groups)
    m = opt.norm_of(hidden, conv.weight)
    g = torch.randn_like(conv.weight)
    conv.weight.grad, conv.bias.grad = g, torch.randn_like(conv.bias)
    before = conv.weight.detach().clone()
    opt.step()
    delta = conv.weight.detach() - before  # γ·ρ·lmo(g): norm γ, and ⟨g, Δ⟩ = −γ·‖g‖†
    torch.testing.assert_close(m.norm(delta), torch.tensor(0.1), rtol=1e-4, atol=0)
    torch.testing.assert_close((g * delta).sum(), -0.1 * m.dual_norm(g), rtol=1e-4, atol=0)
    assert Scion([conv.weight], norm="auto").norm_of(Scion([conv.weight]).param_groups[0],
                                                      conv.weight).name == name  # fmt: skip


def test_a_scalar_parameter_is_a_vector_of_one():
    x = nn.Parameter(torch.tensor(0.5))
    opt = Scion([{"params": [("temperature_bias", x)]}], lr=0.25, norm="auto")
    x.grad = torch.tensor(-3.0)
    opt.step()  # lmo of the RMS norm of one number: −sign(g)
    assert x.item() == pytest.approx(0.75) and opt.norms() == {"temperature_bias": 0.75}
    opt.init()  # a bias inits to zero
    assert x.item() == 0.0 and x.shape == ()


def test_a_stack_of_matrices_is_not_taken_for_a_conv():
    class Experts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 6, 5))

    with pytest.raises(ValueError, match=r"w is a hidden tensor of shape \(4, 6, 5\) but not a "
                       r"conv layer's weight.*norm=Spectral\(\)"):  # fmt: skip
        scion_groups(Experts())
    w = Experts().w
    opt = Scion([{"params": [w], "norm": Spectral()}], lr=0.1)  # batched over the experts
    w.grad = torch.randn_like(w)
    before = w.detach().clone()
    opt.step()
    torch.testing.assert_close(Spectral().norm(w.detach() - before), torch.full((4,), 0.1))


def test_auto_names_the_optimizer_and_a_way_out_for_tensors_it_cannot_place():
    x = nn.Parameter(torch.zeros(2, 2, 2, 2, 2, 2))
    for cls in (Scion, ScionLight):
        with pytest.raises(ValueError, match=rf"^{cls.__name__}: no automatic norm for a tensor "
                           r"of shape \(2, 2, 2, 2, 2, 2\).*DualityMap instance"):  # fmt: skip
            cls([x], norm="auto")


def test_preset_errors():
    with pytest.raises(ValueError, match="untie"):
        scion_groups(tiny_gpt(tied=True))
    with pytest.raises(ValueError, match="unknown preset 'adam'.*colnorm-spectral-sign"):
        scion_groups(tiny_gpt(), "adam")
    with pytest.raises(ValueError, match=r"unknown roles in radii: \['embedding'\]"):
        scion_groups(tiny_gpt(), radii={"embedding": 1.0})


def test_a_plain_module_gets_the_same_norms_from_the_optimizer_and_the_tracker():
    """No param_roles(): one guesser gives Scion's groups and the tracker the same roles."""
    from optimal_scaling.roles import param_roles
    from optimal_scaling.tracking import NormTracker

    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(11, 6)
            self.fc = nn.Linear(6, 6)
            self.norm = nn.LayerNorm(6)

        def forward(self, x):
            return self.fc(self.norm(self.emb(x)))

    model = Plain()
    roles = param_roles(model)
    assert roles == {"emb.weight": "input", "fc.weight": "hidden", "fc.bias": "bias",
                     "norm.weight": "gain", "norm.bias": "bias"}  # fmt: skip
    groups = scion_groups(model, "colnorm-spectral-rownorm")
    tracker = NormTracker(model)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        for _, p in group["params"]:
            _, role, transpose = tracker.params[names[id(p)]]
            assert role == group["role"] and transpose == group["transpose"]
            assert tracker.norms[role] == group["norm"]
    emb = next(g for g in groups if g["role"] == "input")
    assert emb["transpose"] and emb["norm"] == "colnorm"  # per token, in both places
    opt = Scion(groups)
    weights = opt.norms()
    tracked = {n: tracker.norm(n, p) for n, p in model.named_parameters()}
    for name, value in weights.items():
        assert tracked[name] == pytest.approx(value, rel=1e-3), name


@pytest.mark.parametrize("preset", list(PRESETS))
def test_init_has_unit_norm_times_radius(preset):
    model = tiny_gpt(norm_before_linear=True, bias=True)
    radii = {"input": 2.0, "hidden": 3.0, "output": 5.0, "gain": 11.0, "bias": 7.0}
    opt = Scion(scion_groups(model, preset, radii=radii, spectral_method="svd"))
    for p in model.parameters():  # make sure init overwrites (or keeps) everything
        p.data.fill_(0.123)
    opt.init(gen(0))
    close = functools.partial(torch.testing.assert_close, rtol=1e-5, atol=1e-6)  # float32
    W = {name: p.detach().double() for name, p in model.named_parameters()}
    for name, role in model.param_roles().items():
        w, r = W[name], radii[role]
        if role == "input":  # (vocab, d): every token's vector has RMS ρ
            close(row_rms(w), torch.full_like(row_rms(w), r))
        elif role == "hidden":  # semi-orthogonal · √(d_out/d_in): RMS→RMS norm ρ
            d_out, d_in = w.shape
            s = torch.linalg.svdvals(w) * math.sqrt(d_in / d_out)
            close(s, torch.full_like(s, r))
        elif role == "output" and preset.endswith("sign"):  # entries ±ρ/d_in
            close(w.abs(), torch.full_like(w, r / w.shape[1]))
        elif role == "output":  # every row: √d_in·‖row‖_2 = ρ
            n = math.sqrt(w.shape[1]) * w.norm(dim=1)
            close(n, torch.full_like(n, r))
        elif role == "bias":
            assert torch.count_nonzero(w) == 0
        else:  # gains stay as they were (an RMSNorm gain is not re-initialized)
            assert torch.all(w == torch.tensor(0.123, dtype=torch.float32).double())
    first = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.init(gen(0))
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), first[n])  # the generator makes it reproducible


def test_embedding_colnorm_acts_per_token():
    model = tiny_gpt()
    lr, radius = 0.1, 3.0
    opt = Scion(scion_groups(model, lr=lr, radii={"input": radius}))
    wte = model.wte.weight  # (vocab, d)
    G = randn(*wte.shape, seed=5, dtype=torch.float32)
    x0 = wte.detach().clone()
    wte.grad = G.clone()
    opt.step()  # only wte has a gradient
    expected = x0 - lr * radius * G / row_rms(G)  # each token's row normalized to RMS 1
    torch.testing.assert_close(wte.detach(), expected, atol=1e-5, rtol=0)
    token_rms = row_rms(wte.detach()).max()
    assert opt.norms()["wte.weight"] == pytest.approx(float(token_rms), rel=1e-5)


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("norm", ["spectral", "colnorm", "rownorm", "sign"])
def test_scion_rejects_vectors_in_matrix_groups(norm):
    with pytest.raises(ValueError, match=rf"{norm}.*expects a matrix.*'b' of shape \(5,\)"):
        Scion([("b", param(5))], norm=norm)


def test_scion_errors():
    w = param(4, 3)
    with pytest.raises(ValueError, match="unknown norm 'frobenius'.*spectral, colnorm.*auto"):
        Scion([w], norm="frobenius")
    with pytest.raises(ValueError, match=r"lr must be in \[0"):
        Scion([w], lr=-1e-3)
    for alpha in (0.0, 1.5):
        with pytest.raises(ValueError, match="momentum"):
            Scion([w], momentum=alpha)
    with pytest.raises(ValueError, match="radius"):
        Scion([w], radius=0.0)
    with pytest.raises(ValueError, match=r"BiasRMS.*shape \(4, 3\)"):
        Scion([w], norm="bias_rms")
    with pytest.raises(ValueError, match="norm_kwargs need a named norm"):
        Scion([w], norm="auto", norm_kwargs={"method": "svd"})
    with pytest.raises(TypeError, match="do not fit the 'colnorm' map"):
        Scion([w], norm="colnorm", norm_kwargs={"method": "svd"})
    with pytest.raises(ValueError, match="unknown role 'embedding'"):
        Scion([{"params": [w], "role": "embedding"}])
    model = tiny_gpt()
    opt = Scion(scion_groups(model))
    lm_loss(model, batches(1)[0]).backward()
    model.head.weight.grad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"'head.weight' of shape \(32, 16\) contains NaN"):
        opt.step()


# ------------------------------------------------------------------------------- groups
def test_muon_param_groups_by_role():
    model = tiny_gpt(bias=True)
    muon, adamw = muon_param_groups(model, lr=0.02, adamw_lr=1e-3, weight_decay=0.1)
    roles = model.param_roles()
    assert [len(muon)] == [1] and muon[0]["lr"] == 0.02 and muon[0]["weight_decay"] == 0.1
    assert {n for n, _ in muon[0]["params"]} == {n for n, r in roles.items() if r == "hidden"}
    matrices, vectors = adamw
    assert {n for n, _ in matrices["params"]} == {"wte.weight", "wpe.weight", "head.weight"}
    assert matrices["weight_decay"] == 0.1 and vectors["weight_decay"] == 0.0
    assert {roles[n] for n, _ in vectors["params"]} == {"gain", "bias"}
    assert all(g["lr"] == 1e-3 for g in adamw)


def test_muon_with_adamw_passes_weight_decay_betas_and_eps_on():
    model = tiny_gpt()
    opt = muon_with_adamw(model, weight_decay=0.1, betas=(0.8, 0.9), eps=1e-6)
    muon, adamw = opt.optimizers
    assert [g["weight_decay"] for g in muon.param_groups] == [0.1]
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.1, 0.0]  # matrices, vectors
    assert all(g["betas"] == (0.8, 0.9) and g["eps"] == 1e-6 for g in adamw.param_groups)


def test_muon_uses_each_groups_lr():
    """A group's own lr wins over the default (schedules write ``group["lr"]``)."""
    a, b, c = param(6, 4, seed=1), param(6, 4, seed=2), param(6, 4, seed=2)
    a.grad, b.grad, c.grad = randn(6, 4, seed=3), randn(6, 4, seed=4), randn(6, 4, seed=4)
    a0 = a.detach().clone()
    opt = Muon([{"params": [a], "lr": 0.0}, {"params": [b], "lr": 0.01}], lr=0.02, dtype=F64)
    opt.step()
    Muon([c], lr=0.01, dtype=F64).step()
    assert torch.equal(a.detach(), a0)
    torch.testing.assert_close(b.detach(), c.detach(), atol=1e-15, rtol=0)
    for g in opt.param_groups:
        g["lr"] = 0.0
    b1 = b.detach().clone()
    opt.step()
    assert torch.equal(a.detach(), a0) and torch.equal(b.detach(), b1)


def test_muon_param_groups_fall_back_on_shapes():
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    muon, adamw = muon_param_groups(model)
    assert {n for n, _ in muon[0]["params"]} == {"1.weight", "3.weight"}
    names = {n for g in adamw for n, _ in g["params"]}
    assert names == {"0.weight", "1.bias", "2.weight", "2.bias", "3.bias"}


def test_combined_optimizer():
    model = tiny_gpt()
    opt = muon_with_adamw(model, lr=0.02, adamw_lr=1e-3)
    assert [type(o).__name__ for o in opt.optimizers] == ["Muon", "AdamW"]
    assert len(opt.param_groups) == 3
    assert opt.optimizers[1].defaults["betas"] == (0.9, 0.95)  # the documented default
    before = copy.deepcopy(model)
    x = batches(1)[0]
    loss = opt.step(lambda: lm_loss(model, x).backward() or torch.tensor(1.0))
    assert float(loss) == 1.0
    for (name, p), q in zip(model.named_parameters(), before.parameters(), strict=True):
        assert not torch.equal(p, q), name  # every parameter moved
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    for g in opt.param_groups:
        g["lr"] = 0.0  # the groups are the members' own dicts
    assert all(g["lr"] == 0.0 for o in opt.optimizers for g in o.param_groups)
    # ... and every member steps with them (how a schedule sets the lr): lr 0 changes nothing
    before = copy.deepcopy(model)
    lm_loss(model, x).backward()
    opt.step()
    assert_same_params(model, before, atol=0)
    with pytest.raises(ValueError, match="holds 1 optimizers, this one 2"):
        opt.load_state_dict({"optimizers": [opt.optimizers[0].state_dict()]})
    with pytest.raises(ValueError, match="belongs to two optimizers"):
        CombinedOptimizer([opt.optimizers[0], Muon(opt.optimizers[0].param_groups[0]["params"])])
    hyper = muon_with_adamw(model, optimizer=HyperP, scale="adamw")
    assert isinstance(hyper.optimizers[0], HyperP)
    assert hyper.optimizers[0].param_groups[0]["scale"] == "adamw"


# ------------------------------------------------------------------------------- state dicts
FACTORIES = {
    "muon": lambda m: Muon(
        [p for n, p in m.named_parameters() if m.param_roles()[n] == "hidden"], lr=0.02
    ),
    "muon+adamw": lambda m: muon_with_adamw(m, weight_decay=0.01),
    "hyperp+adamw": lambda m: muon_with_adamw(m, optimizer=HyperP, weight_decay=0.01),
    "scion": lambda m: Scion(scion_groups(m, lr=0.02, spectral_method="svd"), momentum=0.3),
    "scion-constrained": lambda m: Scion(scion_groups(m, lr=0.02), momentum=0.5, constrained=True),
}


@pytest.mark.parametrize("kind", list(FACTORIES))
def test_state_dict_round_trip(kind):
    make = FACTORIES[kind]
    xs = batches(5)
    model_a = tiny_gpt(seed=0)
    opt_a = make(model_a)
    train(model_a, opt_a, xs[:3])
    buf = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # plain data: no pickled classes
    model_b, model_c = tiny_gpt(seed=1), tiny_gpt(seed=2)
    opt_b, opt_c = make(model_b), make(model_c)
    model_b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["opt"])
    model_c.load_state_dict(ckpt["model"])  # ...but a fresh optimizer state
    for model, opt in [(model_a, opt_a), (model_b, opt_b), (model_c, opt_c)]:
        train(model, opt, xs[3:])
    assert_same_params(model_a, model_b, atol=1e-7)
    with pytest.raises(AssertionError):
        assert_same_params(model_a, model_c, atol=1e-7)  # the state mattered


def test_muon_reproduces_the_original_normalization():
    """margin=1, eps=1e-7: X/(‖X‖_F + 1e-7), the original Muon's update, in float32."""
    shapes = [(8, 5), (5, 8), (6, 6)]
    params = [param(*s, seed=i).float() for i, s in enumerate(shapes)]
    params = [p.detach().requires_grad_(True) for p in params]
    ref = [p.detach().clone() for p in params]
    opt = Muon(params, lr=0.02, momentum=0.95, margin=1.0, eps=1e-7, dtype=torch.float32)
    for p in params:
        p.grad = 1e-3 * randn(*p.shape, seed=7 + p.shape[0]).float()  # a small gradient
    grads = [p.grad.clone() for p in params]
    opt.step()
    for p, r, g in zip(params, ref, grads, strict=True):
        u = g + 0.95 * g  # Nesterov on a zero buffer: buf = g, u = g + μ·buf
        O = newton_schulz_from_formula(u, margin=1.0, eps=1e-7)
        want = r - 0.02 * math.sqrt(max(1, p.shape[0] / p.shape[1])) * O
        torch.testing.assert_close(p.detach(), want, atol=2e-6, rtol=0)
    # the package's default margin 1.01 gives a measurably different step
    q = param(8, 5, seed=0).detach().float().requires_grad_(True)
    q.grad = grads[0].clone()
    Muon([q], lr=0.02, momentum=0.95, dtype=torch.float32).step()
    assert (q.detach() - params[0].detach()).abs().max() > 1e-5


def test_batched_updates_equal_one_at_a_time():
    from optimal_scaling.optim.muon import orthogonalized_update, orthogonalized_updates

    shapes = [(6, 4), (4, 6), (6, 4), (3, 2, 2, 2), (5, 5), (5, 5), (7, 3)]
    us = [randn(*s, seed=i).float() for i, s in enumerate(shapes)]
    batched = orthogonalized_updates(us, scale="ratio")
    for u, b in zip(us, batched, strict=True):
        assert b.shape == u.shape
        torch.testing.assert_close(b, orthogonalized_update(u, scale="ratio"), atol=1e-5, rtol=0)


def test_scion_batches_spectral_lmos_like_one_at_a_time():
    torch.manual_seed(0)
    ws = [torch.randn(6, 4), torch.randn(6, 4), torch.randn(4, 6), torch.randn(5)]
    grads = [torch.randn_like(w) for w in ws]
    outs = []
    for batched in (True, False):
        ps = [w.clone().requires_grad_(True) for w in ws]
        opt = Scion([{"params": ps[:3], "norm": "spectral",
                      "norm_kwargs": {"method": "newton_schulz"}},
                     {"params": ps[3:], "norm": "bias_rms"}], lr=0.1)  # fmt: skip
        for p, g in zip(ps, grads, strict=True):
            p.grad = g.clone()
        if not batched:  # force one LMO per parameter
            opt._lmos = lambda group, work: [lmo(m, d, group["transpose"]) for _, d, m in work]
        opt.step()
        outs.append([p.detach() for p in ps])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
def test_scion_batches_every_simple_map_like_one_at_a_time(transpose, merge, monkeypatch):
    """Same map and shape: one call for the stack; the result is the per-parameter one.
    ``merge``: Spectral d_out × d_in and d_in × d_out in one batch, as on CUDA."""
    from optimal_scaling.optim import scion

    monkeypatch.setattr(scion, "_merge_transposes", lambda d: merge)
    g = torch.Generator().manual_seed(4)
    maps = [Spectral("newton_schulz"), ColNorm(), RowNorm(), Sign(), Sign(scaled=False)]
    work = [(None, torch.randn(5, 3, generator=g, dtype=torch.float64), m)
            for m in maps for _ in range(3)]  # fmt: skip
    work += [(None, torch.randn(7, generator=g, dtype=torch.float64), BiasRMS())
             for _ in range(3)] if not transpose else []  # fmt: skip
    work += [(None, torch.randn(3, 5, generator=g, dtype=torch.float64), Spectral("svd"))
             for _ in range(2)]  # shares a batch with the 5 × 3 ones: one is transposed # fmt: skip
    work.insert(1, (None, torch.randn(3, 5, generator=g, dtype=torch.float64), maps[0]))
    work.append((None, torch.zeros(5, 3, dtype=torch.float64), ColNorm()))  # zeros stay zeros
    group = {"transpose": transpose}
    got = Scion._lmos(group, work)
    for (_, d, m), out in zip(work, got, strict=True):  # (Newton–Schulz computes in float32)
        atol = 1e-5 if isinstance(m, Spectral) else 1e-12
        torch.testing.assert_close(out, lmo(m, d, transpose), atol=atol, rtol=0)


@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_scion_spectral_batches_of_half_precision_compute_in_float32(dtype, merge, monkeypatch):
    """As dualize does: half precision is upcast (the SVD has no bf16 kernel), the LMO comes
    back in the parameter's dtype, and a checking map still refuses NaN."""
    from optimal_scaling.optim import scion

    monkeypatch.setattr(scion, "_merge_transposes", lambda d: merge)
    g = torch.Generator().manual_seed(5)
    for m in (Spectral("svd"), Spectral("newton_schulz")):
        work = [(None, torch.randn(*s, generator=g).to(dtype), m) for s in ((6, 4), (4, 6))]
        for (_, d, _), out in zip(work, Scion._lmos({"transpose": False}, work), strict=True):
            assert out.dtype == dtype  # (a batch may round one entry to the next half ulp)
            torch.testing.assert_close(out, lmo(m, d), atol=2e-3, rtol=0)
    bad = torch.full((6, 4), float("nan"), dtype=dtype)
    with pytest.raises(ValueError, match="NaN"):
        Scion._lmos({"transpose": False}, [(None, bad, Spectral()), (None, bad, Spectral())])


def count_ops(fn, name: str) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == name)


def test_a_step_launches_per_shape_not_per_parameter():
    """Muon: 5 steps × 3 products per distinct shape (a d_out × d_in and a d_in × d_out share
    one); Scion: one norm for a whole stack of same-length gains."""
    def muon_bmms(shapes) -> int:
        ps = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
        for p in ps:
            p.grad = torch.randn_like(p)
        opt = Muon(ps, check_finite=False)
        return count_ops(opt.step, "aten::bmm") + count_ops(opt.step, "aten::baddbmm")

    assert muon_bmms([(8, 4)] * 6) == 5 * 3  # (bmm from one step, baddbmm from the next)
    assert muon_bmms([(8, 4), (4, 8)] * 4 + [(6, 6)] * 2) == 2 * 5 * 3

    def scion_norms(n: int) -> int:
        ps = [torch.nn.Parameter(torch.randn(16)) for _ in range(n)]
        for p in ps:
            p.grad = torch.randn_like(p)
        opt = Scion([{"params": ps, "norm": "bias_rms"}], lr=0.1, check_finite=False)
        return count_ops(opt.step, "aten::linalg_vector_norm")

    assert scion_norms(2) == scion_norms(9) == 1

    def scion_bmms(shapes, merge: bool) -> int:
        from optimal_scaling.optim import scion

        scion._merge_transposes, real = (lambda d: merge), scion._merge_transposes
        ps = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
        for p in ps:
            p.grad = torch.randn_like(p)
        opt = Scion([{"params": ps, "norm": "spectral", "norm_kwargs": {"method": "muon"}}],
                    lr=0.1, check_finite=False)  # fmt: skip
        try:
            return count_ops(opt.step, "aten::bmm")
        finally:
            scion._merge_transposes = real

    # one batch per shape: 5 Muon steps with one X Xᵀ each; on CUDA a shape and its transpose
    # share one (CPU tensors here, so merging is asked for explicitly)
    assert scion_bmms([(8, 4), (4, 8), (8, 4)], merge=True) == 5
    assert scion_bmms([(8, 4), (4, 8), (6, 6)], merge=True) == 2 * 5
    assert scion_bmms([(8, 4), (4, 8), (8, 4)], merge=False) == 2 * 5
    from optimal_scaling.optim.scion import _merge_transposes

    assert not _merge_transposes(torch.zeros(2, 2))


def test_optimizer_steps_never_wait_for_the_device(monkeypatch):
    """The CUDA path, run on the CPU: no .item(), bool(), float() or .tolist() on a tensor.

    On CUDA every such call is a host synchronization; with check_finite=False (the CUDA
    default) a step must make none. (A GPU test checks the same with sync debug mode.)
    """

    torch.manual_seed(0)
    model = GPT(vocab_size=32, context=8, width=16, depth=1, n_heads=2, norm_before_linear=True)
    x = torch.randint(32, (2, 8))
    hidden = muon_param_groups(model)[0]  # torch's AdamW on the rest is torch's business
    opts = [
        Muon(hidden, check_finite=False),
        Scion(scion_groups(model, "colnorm-spectral-rownorm"), check_finite=False),
        HyperP([p for n, p in model.named_parameters() if p.ndim == 2 and "w" not in n[:2]],
               check_finite=False),
    ]  # fmt: skip
    for opt in opts:
        opt.zero_grad()
        lm_loss(model, x).backward()
        opt.step()  # first steps create state (HyperP's radius check is CPU-only)

    def sync(*args, **kwargs):
        raise AssertionError("host synchronization in a GPU-path step")

    @contextlib.contextmanager
    def no_sync():  # (only around the steps: the forward pass checks CPU token ids)
        with monkeypatch.context() as m:
            for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
                m.setattr(torch.Tensor, name, sync)
            yield

    G = torch.randn(12, 7)
    with no_sync():
        orthogonalize(G, check=False)
        orthogonalize(torch.stack([G, torch.zeros_like(G), G.T.contiguous().T]), check=False)
    for opt in opts:
        opt.zero_grad()
        lm_loss(model, x).backward()
        with no_sync():
            opt.step()


def test_scion_decoupled_weight_decay_follows_its_formula():
    from optimal_scaling.duality import get_map

    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(6, 4, dtype=torch.float64))
    W.grad = torch.randn(6, 4, dtype=torch.float64)
    before, g = W.detach().clone(), W.grad.clone()
    opt = Scion([{"params": [W], "norm": "rownorm"}], lr=0.1, radius=2.0, weight_decay=0.5)
    opt.step()
    want = (1 - 0.1 * 0.5) * before - 0.1 * 2.0 * get_map("rownorm").dualize(g)
    assert torch.allclose(W.detach(), want)
    with pytest.raises(ValueError, match="weight_decay must be 0 with constrained"):
        Scion([W], constrained=True, weight_decay=0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        Scion([W], weight_decay=-1.0)


def test_scion_refuses_what_it_would_get_wrong():
    w = torch.nn.Parameter(torch.randn(6, 4))
    with pytest.raises(ValueError, match="only for γ ≤ 1"):
        Scion([w], lr=1.5, constrained=True)
    conv = torch.nn.Parameter(torch.randn(8, 4, 3, 3))
    for norm in ("spectral", "colnorm"):
        with pytest.raises(ValueError, match="conv2d_spectral"):
            Scion([conv], norm=norm)
    Scion([conv], norm="conv2d_spectral")  # the right map is accepted


def test_scion_init_leaves_unnamed_vectors_alone_and_zeroes_named_biases():
    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(4)  # weight = gain (ones), bias (zeros → stays zeros)
    lin = torch.nn.Linear(4, 4)
    with torch.no_grad():
        lin.bias.fill_(0.5)
    names = ["norm.weight", "lin.weight", "lin.bias"]
    opt = Scion([{"params": [norm.weight, lin.weight, lin.bias], "param_names": names}])
    opt.init()
    assert torch.equal(norm.weight, torch.ones(4))  # a gain is not zeroed
    assert torch.equal(lin.bias.detach(), torch.zeros(4))  # a bias gets BiasRMS's zero init
    s = torch.linalg.svdvals(lin.weight.detach())
    assert torch.allclose(s, s[0].expand_as(s), atol=1e-5)  # semi-orthogonal spectral init


# --------------------------------------------------------------------------- robustness
def _with_grads(params, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    return params


@pytest.mark.parametrize("make", [
    lambda ps: Muon(ps, lr=0.05), lambda ps: HyperP(ps, lr=0.05),
    lambda ps: Scion(ps, lr=0.05, norm="spectral", momentum=0.5),
], ids=["muon", "hyperp", "scion"])  # fmt: skip
def test_a_copied_or_pickled_optimizer_steps_like_the_original(make):
    import pickle

    params = [nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(5, 5))]
    opt = make(params)
    _with_grads(params, 0)
    opt.step()  # a state to carry over
    copies = [copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))]
    moves = []
    for o in [opt, *copies]:
        ps = o.param_groups[0]["params"]
        before = [p.detach().clone() for p in ps]
        _with_grads(ps, 1)
        o.step()  # (the copies lost `distributed` before: AttributeError here)
        moves.append([p.detach() - b for p, b in zip(ps, before, strict=True)])
        assert o.distributed is False
    for got in moves[1:]:
        for a, b in zip(moves[0], got, strict=True):
            assert a.abs().max() > 0 and torch.equal(a, b)


def test_hyperp_state_is_completed_after_a_failed_first_step_and_from_a_muon_checkpoint():
    w = nn.Parameter(torch.zeros(4, 3))
    opt = HyperP([w], lr=0.1)
    _with_grads([w])
    with pytest.raises(ValueError, match="Frobenius norm 0"):
        opt.step()
    assert not opt.state[w]  # nothing was recorded by the failed step
    with torch.no_grad():
        w.copy_(torch.randn(4, 3))
    r = float(torch.linalg.vector_norm(w.detach()))
    opt.step()  # (a KeyError 'init_norm' before)
    assert math.isclose(float(torch.linalg.vector_norm(w.detach())), r, rel_tol=1e-5)
    v = nn.Parameter(torch.randn(4, 3))
    muon = Muon([v], lr=0.1)
    _with_grads([v])
    muon.step()
    hyper = HyperP([v], lr=0.1)
    hyper.load_state_dict(muon.state_dict())  # a momentum buffer, no radius
    r = float(torch.linalg.vector_norm(v.detach()))
    hyper.step()
    assert math.isclose(float(torch.linalg.vector_norm(v.detach())), r, rel_tol=1e-5)


@pytest.mark.parametrize("kind", ["muon", "scion"])
def test_a_step_that_raises_changes_nothing(kind):
    """A NaN gradient in the second group is found before the first group is stepped."""
    a, b = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(3, 5))
    groups = [{"params": [a]}, {"params": [b]}]
    opt = (Muon(groups, lr=0.1) if kind == "muon"
           else Scion(groups, lr=0.1, norm="spectral", momentum=0.5))  # fmt: skip
    _with_grads([a, b])
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    before = a.detach().clone()
    _with_grads([a, b], 1)
    b.grad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"of shape \(3, 5\) contains NaN"):
        opt.step()
    assert torch.equal(a, before)
    after = opt.state_dict()["state"]
    for k, state in saved["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(after[k][key]), torch.as_tensor(value)), key


def test_bad_gradients_and_settings_are_named():
    e = nn.Embedding(10, 4, sparse=True)
    e(torch.tensor([1, 2])).sum().backward()
    for opt in (Muon([e.weight]), Scion([e.weight], norm="colnorm")):
        with pytest.raises(ValueError, match=r"\(10, 4\) has a sparse gradient"):
            opt.step()
    w = nn.Parameter(torch.randn(4, 4))
    with pytest.raises(TypeError, match="check_finite must be True, False or None"):
        Muon([w], check_finite="no")
    with pytest.raises(ValueError, match="lr·weight_decay = 2 > 1"):
        Muon([w], lr=0.2, weight_decay=10.0)
    with pytest.raises(ValueError, match="lr·weight_decay"):
        Scion([w], lr=0.5, weight_decay=4.0, norm="spectral")
    with pytest.raises(ValueError, match="steps must be an int ≥ 0"):
        Muon([w], steps=2.0)
    Muon([w], check_finite=np.bool_(True))  # a numpy bool is a bool
    h = nn.Parameter(torch.zeros(0, 4))
    h.grad = torch.zeros(0, 4)
    HyperP([h]).step()  # an empty matrix has no sphere to keep, and nothing to move


def test_numpy_numbers_empty_matrices_and_zero_polar_express_steps():
    import numpy as np

    w, empty, thin = (nn.Parameter(torch.randn(4, 6)), nn.Parameter(torch.zeros(0, 5)),
                      nn.Parameter(torch.zeros(5, 0)))  # fmt: skip
    opt = Muon([w, empty, thin], lr=np.float32(0.02), momentum=np.float64(0.9),
               steps=np.int64(5))  # fmt: skip
    ref = Muon([nn.Parameter(w.detach().clone())], lr=0.02, momentum=0.9)
    _with_grads([w, empty, thin])
    _with_grads(ref.param_groups[0]["params"])
    opt.step()
    ref.step()
    assert torch.allclose(w, ref.param_groups[0]["params"][0], atol=1e-7)
    assert empty.shape == (0, 5) and thin.shape == (5, 0)
    for cls in (Scion, ScionLight):  # Scion too: an empty weight is skipped, not an error
        w2 = nn.Parameter(w.detach().clone())
        opt = cls([w2, empty, thin], lr=0.1)
        opt.init()
        _with_grads([w2, empty, thin])
        opt.step()
        assert empty.shape == (0, 5) and torch.isfinite(w2).all(), cls.__name__
    # zero Polar Express steps: only the normalization, X/(1.01·‖X‖_F)
    v = nn.Parameter(torch.zeros(3, 5))
    v.grad = torch.randn(3, 5)
    Muon([v], lr=1.0, momentum=0.0, steps=0, schedule="polar_express", scale="none").step()
    assert torch.allclose(-v, orthogonalize(v.grad, steps=0), atol=1e-7)


def test_distributed_flag_keeps_non_default_settings():
    outs = []
    for distributed in (False, True):
        torch.manual_seed(0)
        p = nn.Parameter(torch.randn(6, 4, dtype=torch.float64))
        p.grad = torch.randn(6, 4, dtype=torch.float64)
        Muon([p], lr=0.1, scale="adamw", schedule="polar_express", margin=1.2, eps=0.1,
             dtype=torch.float64, distributed=distributed).step()
        outs.append(p.detach())
    assert torch.equal(*outs)


def test_unchecked_nan_gradients_propagate_instead_of_escaping_as_a_linalg_error():
    """check_finite=False: a NaN gradient reaches the SVD, which LAPACK refuses; the step gives
    NaN weights (as on CUDA) and train() reports the run as diverged, never raises."""
    from optimal_scaling.train import train

    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    opt = Scion(model.parameters(), lr=0.1, norm="auto", check_finite=False)
    model.weight.grad = torch.full_like(model.weight, math.nan)
    opt.step()
    assert model.weight.isnan().all()

    model = nn.Linear(4, 4)
    opt = Scion(model.parameters(), lr=0.1, norm="auto", check_finite=False)
    x = torch.randn(8, 4)
    y = torch.randn(8, 4)
    bad = {"step": 0}

    def loss_fn(out, target):  # a finite loss at step 2, and a NaN gradient
        bad["step"] += 1
        if bad["step"] == 2:
            out.register_hook(lambda g: torch.full_like(g, math.nan))
        return F.mse_loss(out, target)

    result = train(model, opt, lambda: (x, y), steps=5, loss_fn=loss_fn, progress=False)
    assert result.diverged and result.reason == "step 3: non-finite loss"


@pytest.mark.parametrize("cls, key, meant", [(Muon, "momentun", "momentum"),
                                             (Muon, "weight_decya", "weight_decay"),
                                             (Scion, "radious", "radius"),
                                             (ScionLight, "norms", "norm")])  # fmt: skip
def test_a_misspelt_group_key_raises_and_metadata_keys_are_kept(cls, key, meant):
    w = param(3, 4)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: unknown param-group key '{key}' "
                       rf"\(did you mean '{meant}'\?\)"):  # fmt: skip
        cls([{"params": [w], key: 0.5}])
    opt = cls([{"params": [w], "name": "embeddings"}])  # torch keeps extra keys; so do we
    assert opt.param_groups[0]["name"] == "embeddings"
    with pytest.raises(ValueError, match="did you mean"):
        opt.add_param_group({"params": [param(2, 2)], key: 0.5})
    assert len(opt.param_groups) == 1


def test_a_scheduler_that_pushes_a_setting_out_of_range_is_caught_at_the_step():
    """Constrained Scion stays in its ball only for γ ≤ 1; a scheduler writes lr unchecked."""
    w = param(4, 4)
    opt = Scion([w], lr=0.5, constrained=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 + 2.0 * t)  # lr 0.5, 1.5, ...
    w.grad = torch.ones_like(w)
    opt.step()
    sched.step()
    before = w.detach().clone()
    with pytest.raises(ValueError, match=r"Scion: the constrained step .* γ ≤ 1; got lr = 1.5"):
        opt.step()
    assert torch.equal(w.detach(), before)  # the step that raised changed nothing
    muon = Muon([param(4, 4)], lr=0.5, weight_decay=1.0)
    muon.param_groups[0]["lr"] = 2.0  # what a scheduler does
    muon.param_groups[0]["params"][0].grad = torch.ones(4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"Muon: lr·weight_decay = 2 > 1"):
        muon.step()


def test_load_state_dict_checks_the_checkpoint_and_keeps_the_optimizer_on_failure():
    w = param(4, 4)
    muon = Muon([w], lr=0.02)
    w.grad = torch.ones_like(w)
    muon.step()
    good = copy.deepcopy(muon.state_dict())
    bad = copy.deepcopy(good)
    bad["param_groups"][0]["momentum"] = 1.5
    with pytest.raises(ValueError, match=r"load_state_dict: param group 0 of the checkpoint: "
                       r"Muon: momentum must be in \[0, 1\), got 1.5"):  # fmt: skip
        muon.load_state_dict(bad)
    assert muon.param_groups[0]["momentum"] == 0.95  # unchanged
    assert muon.state_dict()["param_groups"] == good["param_groups"]
    assert torch.equal(muon.state[w]["momentum_buffer"], good["state"][0]["momentum_buffer"])
    scion = Scion([w], lr=0.1)
    scion_before = copy.deepcopy(scion.state_dict())
    with pytest.raises(ValueError, match=r"Scion: a param group lacks the settings \[.*'radius'"
                       r".*checkpoint of another optimizer"):  # fmt: skip
        scion.load_state_dict(good)  # a Muon checkpoint
    assert scion.state_dict() == scion_before and scion.param_groups[0]["radius"] == 1.0
    assert not scion.state
    muon.load_state_dict(good)  # a good one still loads


@pytest.mark.parametrize("shape", [(5,), ()])
def test_orthogonalized_update_refuses_vectors_and_scalars(shape):
    from optimal_scaling.optim.muon import orthogonalized_update, orthogonalized_updates

    with pytest.raises(ValueError, match=rf"u must be a matrix or a conv weight.*shape "
                       rf"{re.escape(str(shape))}"):  # fmt: skip
        orthogonalized_update(torch.ones(shape))
    with pytest.raises(ValueError, match=r"u\[1\] has shape"):
        orthogonalized_updates([torch.ones(3, 3), torch.ones(shape)])
    with pytest.raises(TypeError, match="u must be a tensor, got list"):
        orthogonalized_update([[1.0, 2.0]])
