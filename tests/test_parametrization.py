"""Every preset's numbers against the μP table (Tensor Programs V) and its relatives."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optimal_scaling.models import GPT, MLP
from optimal_scaling.parametrization import Parametrization
from optimal_scaling.roles import param_roles, transposed

D_IN, BASE = 16, 64


def rules(name, width, **kw):
    par = Parametrization(name, base_width=BASE, **kw)
    model = MLP(D_IN, width, 1, depth=3)
    return {r.name: r for r in par.rules(model)}


def expected(name, optimizer, form, n):
    """The table, written out by hand for MLP(16 → n → n → 1) with base width 64."""
    m = n / BASE
    if name == "sp":
        std = {"input": D_IN**-0.5, "hidden": n**-0.5, "output": n**-0.5}
        return std, dict.fromkeys(std, 1.0), dict.fromkeys(std, 1.0), dict.fromkeys(std, 1.0)
    if name == "ntk":
        std = {"input": D_IN**-0.5, "hidden": BASE**-0.5, "output": BASE**-0.5}
        mult = {"input": 1.0, "hidden": m**-0.5, "output": m**-0.5}
        return std, mult, dict.fromkeys(std, 1.0), dict.fromkeys(std, 1.0)
    if name == "spectral":
        std = {"input": D_IN**-0.5, "hidden": n**-0.5, "output": n**-0.5 * (1 / n) ** 0.5}
        lr = {"input": 1.0, "hidden": 1 / m, "output": 1 / m}
        if optimizer == "sgd":
            lr = {"input": m, "hidden": 1.0, "output": 1 / m}
        return std, dict.fromkeys(std, 1.0), lr, {"input": 1 / m, "hidden": 1 / m, "output": 1.0}
    # μP: init var input 1/fan_in, hidden 1/fan_in, output 1/fan_in² (Table 3)
    std = {"input": D_IN**-0.5, "hidden": n**-0.5, "output": BASE**-0.5 / m}
    mult = dict.fromkeys(std, 1.0)
    eps = {"input": 1 / m, "hidden": 1 / m, "output": 1.0}
    if optimizer == "adam":
        lr = {"input": 1.0, "hidden": 1 / m, "output": 1 / m}
    else:
        lr = {"input": m, "hidden": 1.0, "output": 1 / m}
    if form == "table8":  # fixed readout init, 1/width multiplier
        std["output"], mult["output"], eps["output"] = BASE**-0.5, 1 / m, 1 / m
        lr["output"] = 1.0 if optimizer == "adam" else m
    return std, mult, lr, eps


CASES = [
    ("sp", "adam", "table3"),
    ("mup", "adam", "table3"),
    ("mup", "sgd", "table3"),
    ("mup", "adam", "table8"),
    ("mup", "sgd", "table8"),
    ("ntk", "sgd", "table3"),
    ("spectral", "adam", "table3"),
    ("spectral", "sgd", "table3"),
]


@pytest.mark.parametrize("width", [BASE, 4 * BASE])
@pytest.mark.parametrize("name, optimizer, form", CASES)
def test_presets_match_the_table(name, optimizer, form, width):
    got = rules(name, width, optimizer=optimizer, form=form)
    std, mult, lr, eps = expected(name, optimizer, form, width)
    layer = {"input.weight": "input", "hidden.0.weight": "hidden", "output.weight": "output"}
    for param, role in layer.items():
        r = got[param]
        assert r.role == role
        assert r.init_std == pytest.approx(std[role]), (param, "init std")
        assert r.multiplier == pytest.approx(mult[role]), (param, "multiplier")
        assert r.lr_mult == pytest.approx(lr[role]), (param, "lr")
        if optimizer == "adam":
            assert r.eps_mult == pytest.approx(eps[role]), (param, "eps")
    # biases: init 0; with SGD, μP and the spectral rule give them an LR ∝ fan_out ("input
    # weights & all biases": r_out = m for a hidden bias, 1 for the output's fixed fan_out),
    # Adam LR 1; Adam's ε follows the update scale 1/r_out (sp and ntk: 1)
    m = width / BASE
    hidden_bias, out_bias = got["hidden.0.bias"], got["output.bias"]
    assert hidden_bias.init_std is None and hidden_bias.role == "bias"
    scaled = name in ("mup", "spectral")
    want_lr = m if scaled and optimizer == "sgd" else 1.0
    assert (hidden_bias.lr_mult, out_bias.lr_mult) == pytest.approx((want_lr, 1.0))
    want_eps = 1 / m if scaled else 1.0
    assert (hidden_bias.eps_mult, out_bias.eps_mult) == pytest.approx((want_eps, 1.0))


def test_at_base_width_mup_is_sp():
    sp, mup = rules("sp", BASE), rules("mup", BASE)
    for name in sp:
        assert (sp[name].init_std, sp[name].lr_mult, sp[name].multiplier) == (
            mup[name].init_std,
            mup[name].lr_mult,
            mup[name].multiplier,
        )


@pytest.mark.parametrize("name", ["sp", "mup", "ntk", "spectral"])
def test_apply_draws_the_stated_init(name):
    par = Parametrization(name, base_width=BASE)
    model = par.apply(MLP(D_IN, 512, 16, depth=3), torch.Generator().manual_seed(0))
    for r in par.rules(model):  # every tensor has ≥ 8192 entries: std within ~2.5%
        p = model.get_parameter(r.name)
        if r.init_std is None:
            assert torch.all(p == 0)
        else:  # (the output layer too: where μP's 1/fan_in² differs from SP)
            assert p.numel() >= 8192 and p.std().item() == pytest.approx(r.init_std, rel=0.05), \
                r.name  # fmt: skip
    assert model.output.multiplier == par.rules(model)[-2].multiplier


def test_param_groups_drive_plain_torch_optimizers():
    par = Parametrization("mup", base_width=BASE)
    model = par.apply(MLP(D_IN, 256, 1, depth=3))
    groups = par.param_groups(model, lr=1e-2, weight_decay=0.1, eps=1e-8)
    by_name = {g["name"]: g for g in groups}
    assert by_name["hidden.0.weight"]["lr"] == pytest.approx(1e-2 / 4)
    assert by_name["hidden.0.weight"]["eps"] == pytest.approx(1e-8 / 4)
    assert by_name["hidden.0.bias"]["weight_decay"] == 0.0
    assert by_name["hidden.0.weight"]["weight_decay"] == by_name["output.weight"][
        "weight_decay"] == 0.1  # matrices decay, with the value given  # fmt: skip
    opt = torch.optim.AdamW(groups)
    before = model.hidden[0].weight.detach().clone()
    model(torch.randn(8, D_IN)).pow(2).mean().backward()
    opt.step()
    # Adam's first step moves each entry by its group's lr (m̂/√v̂ = ±1), plus a tiny decay
    step = (model.hidden[0].weight - before).abs()
    assert step.max().item() == pytest.approx(1e-2 / 4, rel=0.05)
    torch.optim.SGD(Parametrization("mup_sgd", base_width=BASE).param_groups(model, lr=0.1)).step()


def test_gpt_attention_and_depth_rules():
    par = Parametrization("mup", base_width=64, depth_alpha=1.0, base_depth=2)
    model = par.apply(GPT(width=256, depth=8, n_heads=4))
    attn = model.blocks[0].attn
    assert attn.head_dim == 64
    assert attn.logit_scale == pytest.approx(math.sqrt(16) / 64)  # √d_head₀ / d_head
    assert model.blocks[3].branch_multiplier == pytest.approx((8 / 2) ** -1.0)
    rule = {r.name: r for r in par.rules(model)}
    # Adam: hidden LR × (L/L0)^(α−1) = 1 for CompleteP, on top of width's 1/m
    assert rule["blocks.0.mlp.fc.weight"].lr_mult == pytest.approx(1 / 4)
    depth_mup = Parametrization("mup", base_width=64, depth_alpha=0.5, base_depth=2)
    rule = {r.name: r for r in depth_mup.rules(model)}
    assert rule["blocks.0.mlp.fc.weight"].lr_mult == pytest.approx(1 / 4 * (8 / 2) ** -0.5)
    sgd = Parametrization("mup", base_width=64, optimizer="sgd", depth_alpha=0.5, base_depth=2)
    rule = {r.name: r for r in sgd.rules(model)}
    assert rule["blocks.0.mlp.fc.weight"].lr_mult == pytest.approx(1.0)  # (L/L0)^(2α−1) = 1
    sgd = Parametrization("mup", base_width=64, optimizer="sgd", depth_alpha=1.0, base_depth=2)
    rule = {r.name: r for r in sgd.rules(model)}
    assert rule["blocks.0.mlp.fc.weight"].lr_mult == pytest.approx(8 / 2)  # (L/L0)^(2·1−1) = 4
    sp = Parametrization("sp", base_width=64).apply(GPT(width=256, n_heads=4))
    assert sp.blocks[0].attn.logit_scale == pytest.approx(64**-0.5)
    # the spectral rule scales attention like μP: √d_head₀/d_head (= 1/d_head at d_head₀ = 1)
    spectral = Parametrization("spectral", base_width=64).apply(GPT(width=256, n_heads=4))
    assert spectral.blocks[0].attn.logit_scale == pytest.approx(math.sqrt(16) / 64)
    # depth-μP (α = ½): every residual branch × (L/L0)^−½
    half = Parametrization("mup", base_width=64, depth_alpha=0.5, base_depth=2)
    deep = half.apply(GPT(width=256, depth=8, n_heads=4))
    assert all(b.branch_multiplier == pytest.approx(0.5) for b in deep.blocks)  # (8/2)^−½


def test_the_branch_multiplier_scales_what_each_block_adds():
    """x ← x + β·Attn(norm x); x ← x + β·MLP(norm x), from the docstring's formula; β = 0
    makes a block the identity."""
    torch.manual_seed(0)
    block = GPT(width=32, depth=1, n_heads=2).blocks[0].double()
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    with torch.no_grad():
        block.branch_multiplier = 0.0
        assert torch.equal(block(x), x)
        block.branch_multiplier = 0.3
        h = x + 0.3 * block.attn(block.attn_norm(x))
        want = h + 0.3 * block.mlp(block.mlp_norm(h))
        assert torch.allclose(block(x), want, rtol=0, atol=1e-12)
        assert (want - x).abs().max() > 1e-2  # the branches add something


def test_gpt_roles():
    roles = GPT(width=32, n_heads=2, norm_before_linear=True).param_roles()
    assert roles["wte.weight"] == roles["wpe.weight"] == "input"
    assert roles["head.weight"] == "output"
    assert roles["blocks.0.attn.qkv.weight"] == "hidden"
    assert roles["blocks.0.attn.proj_norm.weight"] == "gain"


def test_table3_and_table8_train_the_same_function():
    """The abc symmetry: the two μP forms give identical outputs under Adam, step by step."""
    x, y = torch.randn(16, D_IN), torch.randn(16, 1)
    outs = []
    for form in ("table3", "table8"):
        par = Parametrization("mup", base_width=BASE, form=form)
        # the same draw from the same seed: W8 = r_in · W3, the same function at init
        model = par.apply(MLP(D_IN, 256, 1, depth=3), torch.Generator().manual_seed(0))
        opt = torch.optim.Adam(par.param_groups(model, lr=1e-2, eps=1e-12))
        trace = []
        for _ in range(5):
            loss = (model(x) - y).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(model(x).detach())
        outs.append(torch.stack(trace))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)


def test_tied_embeddings():
    with pytest.raises(ValueError, match="Table 8"):
        Parametrization("mup", base_width=32).apply(GPT(width=64, n_heads=2, tied=True))
    model = Parametrization("mup", base_width=32, form="table8").apply(
        GPT(width=128, n_heads=2, tied=True)
    )
    assert model.head.weight is model.wte.weight
    assert model.head.multiplier == pytest.approx(32 / 128)


@pytest.mark.parametrize("preset", ["none", "sp", "mup_table8", "ntk"])
def test_a_tied_gpt_starts_with_the_loss_of_a_uniform_guess(preset):
    """The shared tensor takes the head's init: the initial loss is about ln V, as untied.
    (As an N(0, 1) embedding it made the logits' std ≈ √width: loss 35 at width 64.)"""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (2, 8, 32), generator=g)  # targets unrelated to the inputs
    torch.manual_seed(0)  # "none" keeps the default init, drawn from the global generator
    for width in (64, 256):
        model = GPT(vocab_size=256, context=32, width=width, n_heads=4, tied=True)
        if preset != "none":
            name, _, form = preset.partition("_")
            par = Parametrization(name, base_width=32, **({"form": form} if form else {}))
            par.apply(model, g)
        with torch.no_grad():
            logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        assert logits.std() < 1.5, (width, float(logits.std()))
        assert abs(float(loss) - math.log(256)) < 0.6, (width, float(loss))


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        ({"name": "mupp"}, ValueError, "unknown parametrization 'mupp'"),
        ({"optimizer": "lion"}, ValueError, "unknown optimizer 'lion'"),
        ({"form": "table5"}, ValueError, "unknown μP form"),
        ({"depth_alpha": 0.7, "base_depth": 2}, ValueError, "depth_alpha must be"),
        ({"depth_alpha": 1.0}, ValueError, "needs both"),
    ],
)
def test_bad_options(kwargs, error, needle):
    with pytest.raises(error, match=needle):
        Parametrization(**kwargs)


def test_model_without_roles_is_rejected():
    with pytest.raises(TypeError, match="not a width-parametrized model"):
        Parametrization("mup", base_width=8).rules(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="no residual branches"):
        Parametrization("mup", base_width=8, depth_alpha=1.0, base_depth=2).rules(MLP(4, 16, 1))


def test_apply_keeps_the_models_scaled_branch_init_and_refuses_what_it_cannot_do():
    from optimal_scaling.models import GPT

    torch.manual_seed(0)
    model = GPT(vocab_size=64, context=8, width=256, depth=4, n_heads=4, scaled_branch_init=True)
    Parametrization("mup", base_width=64).apply(model, torch.Generator().manual_seed(0))
    plain = GPT(vocab_size=64, context=8, width=256, depth=4, n_heads=4)
    Parametrization("mup", base_width=64).apply(plain, torch.Generator().manual_seed(0))
    ratio = model.blocks[0].attn.proj.weight.std() / plain.blocks[0].attn.proj.weight.std()
    assert ratio.item() == pytest.approx((2 * 4) ** -0.5, rel=1e-5)  # 1/√(2L), once
    assert model.blocks[0].attn.qkv.weight.std().item() == pytest.approx(
        plain.blocks[0].attn.qkv.weight.std().item())  # other layers untouched
    with pytest.raises(ValueError, match="give base_width"):
        Parametrization("mup")
    with pytest.raises(ValueError, match="base_depth must be an int ≥ 1"):
        Parametrization("mup", base_width=64, depth_alpha=1.0, base_depth=0)
    tied = GPT(vocab_size=64, context=8, width=64, depth=1, n_heads=4, tied=True)
    with pytest.raises(ValueError, match="spectral rules"):
        Parametrization("spectral", base_width=64).apply(tied)


def test_a_base_model_that_cannot_be_built_is_named_as_such():
    with pytest.raises(ValueError, match=r"base model .*base_width 32.*n_heads 12"):
        Parametrization("mup", base_width=32).apply(GPT(width=384, n_heads=12))


def test_numpy_integer_widths_and_depths_count_and_bools_do_not():
    """The package's rule for integer settings: numpy integers count, bools do not; a numpy
    width grid (2 ** np.arange(...)) must work end to end."""
    par = Parametrization("mup", base_width=np.int64(64), depth_alpha=1.0, base_depth=np.int32(2))
    assert (par.base_width, par.base_depth) == (64, 2) and type(par.base_width) is int
    for kwargs, needle in (({"base_width": True}, "base_width must be an int ≥ 1 or None"),
                           ({"base_width": 64, "depth_alpha": 1.0, "base_depth": True},
                            "base_depth must be an int ≥ 1"),
                           ({"base_width": 64, "depth_alpha": True, "base_depth": 2},
                            "depth_alpha must be 0.5")):  # fmt: skip
        with pytest.raises(ValueError, match=needle):
            Parametrization("mup", **kwargs)


def _gpt(**kw):
    torch.manual_seed(0)
    return GPT(**{"vocab_size": 64, "context": 16, "width": 128, "depth": 2, "n_heads": 4, **kw})


def test_embeddings_read_one_hot_inputs_so_only_their_fan_out_grows():
    """An embedding's fan_in is num_embeddings and its fan_out the width: under μP it is an
    input layer with r_out = n/n₀, so SGD LR × r_out and Adam ε × 1/r_out (Table 3).
    (Kills: embedding fans swapped.)"""
    model = _gpt(width=128)
    sgd = {r.name: r for r in Parametrization("mup", base_width=32, optimizer="sgd").rules(model)}
    adam = {r.name: r for r in Parametrization("mup", base_width=32).rules(model)}
    for name, rows in (("wte.weight", 64), ("wpe.weight", 16)):
        assert (sgd[name].fan_in, sgd[name].fan_out) == (rows, 128)
        assert (sgd[name].r_in, sgd[name].r_out) == (1.0, 4.0)
        assert sgd[name].lr_mult == pytest.approx(4.0)  # SGD LR ∝ fan_out
        assert adam[name].lr_mult == pytest.approx(1.0)
        assert adam[name].eps_mult == pytest.approx(1 / 4)


@pytest.mark.parametrize("optimizer, alpha", [("adam", 0.5), ("sgd", 1.0)])
def test_depth_scaling_changes_only_the_hidden_matrices_learning_rates(optimizer, alpha):
    """Hidden LR × (L/L₀)^(α−1) (Adam) or (L/L₀)^(2α−1) (SGD); every other tensor keeps the
    LR of the same parametrization without depth scaling. (Kills: the depth factor applied to
    the output layer too.)"""
    model = _gpt(width=64, depth=8)
    plain = {r.name: r for r in Parametrization("mup", base_width=32, optimizer=optimizer)
             .rules(model)}  # fmt: skip
    deep = {r.name: r for r in Parametrization("mup", base_width=32, optimizer=optimizer,
                                               depth_alpha=alpha, base_depth=2).rules(model)}
    factor = 4.0 ** (alpha - 1 if optimizer == "adam" else 2 * alpha - 1)
    assert factor != 1.0
    for name, r in deep.items():
        want = plain[name].lr_mult * (factor if r.role == "hidden" else 1.0)
        assert r.lr_mult == pytest.approx(want), (name, r.role)
    assert {r.role for r in deep.values()} >= {"input", "hidden", "output", "gain"}


@pytest.mark.parametrize("name", ["sp", "mup", "ntk", "spectral"])
def test_every_preset_draws_embeddings_from_n01(name):
    """σ = 1 for embeddings in every preset (module docstring: one-hot inputs have fan_in 1 in
    effect; spectral: σ = 1·min(1, √(fan_out/1)) = 1). ≥ 32768 draws per table: the sample
    std's sd is ≤ 1/√65536 ≈ 0.004, so 3% is > 7 sd. (Kills: embedding σ = 1/√vocab for
    sp/mup, σ₀ = 1/√vocab for ntk, spectral fan_in = vocab.)"""
    model = _gpt(vocab_size=512, context=256, width=128, depth=1)
    Parametrization(name, base_width=32).apply(model, torch.Generator().manual_seed(0))
    for table in (model.wte.weight, model.wpe.weight):
        assert table.numel() >= 32768
        assert table.std().item() == pytest.approx(1.0, rel=0.03)


def test_apply_sets_gains_to_one_and_biases_to_zero():
    """apply(): "biases 0, gains 1", and a GPT with bias=True labels its biases 'bias'.
    (Kills: gains filled with 0; GPT biases labelled 'gain'.)"""
    model = _gpt(width=64, bias=True, norm_before_linear=True)
    roles = model.param_roles()
    assert roles["blocks.0.attn.qkv.bias"] == roles["blocks.0.mlp.proj.bias"] == "bias"
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    Parametrization("mup", base_width=32).apply(model, torch.Generator().manual_seed(0))
    gains = [n for n, r in roles.items() if r == "gain"]
    biases = [n for n, r in roles.items() if r == "bias"]
    assert len(gains) == 2 * 4 + 1 and len(biases) == 2 * 4
    assert all(torch.all(model.get_parameter(n) == 1.0) for n in gains)
    assert all(torch.all(model.get_parameter(n) == 0.0) for n in biases)


def test_weight_decay_goes_to_matrices_only():
    """param_groups: weight decay on 2-D tensors, 0 on gains and biases. (Kills: gains decayed.)"""
    model = _gpt(width=64, bias=True)
    groups = Parametrization("mup", base_width=32).param_groups(model, lr=1e-3, weight_decay=0.1)
    for g in groups:
        want = 0.1 if g["params"][0].ndim == 2 else 0.0
        assert g["weight_decay"] == want, g["name"]


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda: Parametrization("mup", base_width=32).param_groups(MLP(4, 32, 1), 1e-3, eps=0.0),
         "eps must be a finite number > 0"),
        (lambda: Parametrization("mup", base_width=0), "base_width must be an int ≥ 1 or None"),
        (lambda: Parametrization("mup", base_width=32, base_depth=2), "needs both"),
    ],
)
def test_parametrization_refuses_settings_outside_its_contract(make, needle):
    """eps > 0; base_width a positive int; depth scaling needs both depth_alpha and base_depth.
    (Kills: eps 0 accepted; base_width 0 accepted (it silently meant SP); base_depth alone
    accepted.)"""
    with pytest.raises(ValueError, match=needle):
        make()


def test_role_guesser_for_conv_weights_nested_embeddings_and_bad_declared_roles():
    """Guessed roles: any tensor with ≥ 2 dimensions is hidden (a conv kernel too); an
    nn.Embedding weight is input and transposed however deep it sits; a declared role outside
    ROLES is refused. (Kills: only 2-D is hidden; owner = top-level module; transposed always
    False; declared roles unchecked.)"""
    model = nn.Sequential(nn.Sequential(nn.Embedding(5, 4)), nn.Conv2d(1, 2, 3), nn.Linear(4, 4))
    roles = param_roles(model)
    assert roles["0.0.weight"] == "input" and transposed(model, "0.0.weight")
    assert roles["1.weight"] == "hidden" and not transposed(model, "2.weight")
    assert roles["1.bias"] == roles["2.bias"] == "bias"

    class Declared(nn.Linear):
        def param_roles(self):
            return {"weight": "embedding", "bias": "bias"}

    with pytest.raises(ValueError, match="weight: unknown role 'embedding'"):
        param_roles(Declared(2, 2))
