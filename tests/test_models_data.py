import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from optimal_scaling.data import TeacherTask
from optimal_scaling.models import GPT, MLP
from optimal_scaling.models.gpt import Attention, FeedForward
from optimal_scaling.models.layers import Embedding, Linear, RMSNorm


@pytest.mark.parametrize("depth, bias", [(2, True), (3, True), (5, False)])
def test_mlp_parameter_count_matches_formula(depth, bias):
    d_in, w, d_out = 7, 12, 3
    b = int(bias)
    expected = (d_in + b) * w + (depth - 2) * (w + b) * w + (w + b) * d_out
    model = MLP(d_in, w, d_out, depth=depth, bias=bias)
    assert model.num_params() == expected
    assert len(model.hidden) == depth - 2
    assert model(torch.randn(4, d_in)).shape == (4, d_out)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"depth": 1}, "depth must be an int ≥ 2"),
        ({"width": 0}, "width must be an int ≥ 1"),
        ({"d_in": True}, "d_in must be an int ≥ 1"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
    ],
)
def test_mlp_bad_arguments(kwargs, needle):
    args = {"d_in": 3, "width": 4, "d_out": 1, **kwargs}
    with pytest.raises(ValueError, match=needle):
        MLP(**args)


def test_mlp_wrong_input_width():
    with pytest.raises(ValueError, match="last dimension 3"):
        MLP(3, 4, 1)(torch.randn(2, 5))


def test_teacher_task_is_deterministic_and_fresh():
    task = TeacherTask(d_in=8, width=16, seed=3)
    x1, y1 = task.batch(5, torch.Generator().manual_seed(0))
    x2, y2 = task.batch(5, torch.Generator().manual_seed(0))
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and y1.shape == (5, 1)
    x3, _ = task.batch(5, torch.Generator().manual_seed(1))
    assert not torch.equal(x1, x3)
    # the target is the formula of the module docstring, from the teacher's own N(0, 1) draws:
    # y = v₀ᵀ tanh(s·W₀x/√d_in)/√k with s = 2 (the default), d_in = 8, k = 16
    g = torch.Generator().manual_seed(3)
    W0, v0 = torch.randn(16, 8, generator=g), torch.randn(16, generator=g)
    manual = torch.tanh(2.0 * x1 @ W0.T / 8**0.5) @ v0 / 16**0.5
    assert torch.allclose(y1.squeeze(-1), manual)
    with pytest.raises(ValueError, match=r"shape \(batch, 8\)"):
        task(torch.randn(5, 9))


def test_gpt_is_causal_and_shaped():
    from optimal_scaling.models import GPT

    torch.manual_seed(0)
    model = GPT(vocab_size=50, context=16, width=32, depth=2, n_heads=4)
    idx = torch.randint(0, 50, (2, 10))
    logits = model(idx)
    assert logits.shape == (2, 10, 50)
    changed = idx.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 50  # a later token cannot change earlier logits
    torch.testing.assert_close(model(changed)[:, :6], logits[:, :6])
    assert not torch.allclose(model(changed)[:, 6:], logits[:, 6:])


def test_gpt_attention_matches_the_formula():
    """softmax(s·q kᵀ + causal mask) v, with the settable logit scale s."""
    from einops import rearrange

    from optimal_scaling.models.gpt import Attention

    torch.manual_seed(0)
    attn = Attention(width=16, n_heads=2, bias=False, norm_before_linear=False)
    attn.logit_scale = 0.3
    x = torch.randn(1, 5, 16)
    q, k, v = rearrange(attn.qkv(x), "b t (three h d) -> three b h t d", three=3, h=2)
    scores = (q @ k.transpose(-1, -2)) * 0.3
    scores = scores.masked_fill(torch.triu(torch.ones(5, 5, dtype=torch.bool), 1), float("-inf"))
    y = rearrange(scores.softmax(-1) @ v, "b h t d -> b t (h d)")
    torch.testing.assert_close(attn(x), attn.proj(y))


def test_gpt_options():
    from optimal_scaling.models import GPT
    from optimal_scaling.models.layers import RMSNorm

    plain = GPT(width=32, depth=3, n_heads=2)
    normed = GPT(width=32, depth=3, n_heads=2, norm_before_linear=True)
    count = lambda m: sum(isinstance(x, RMSNorm) for x in m.modules())  # noqa: E731
    # pre-norm: 2 per block + final; norm before every linear adds 2 per block
    assert (count(plain), count(normed)) == (3 * 2 + 1, 3 * 4 + 1)
    tied = GPT(width=32, n_heads=2, tied=True)
    assert tied.head.weight is tied.wte.weight
    assert tied.num_params() == GPT(width=32, n_heads=2).num_params() - 256 * 32
    assert plain.num_params(non_embedding=True) == plain.num_params() - (256 + 64) * 32


@pytest.mark.parametrize(
    "kwargs, needle",
    [({"width": 30, "n_heads": 4}, "not divisible"), ({"depth": 0}, "depth must be")],
)
def test_gpt_bad_config(kwargs, needle):
    from optimal_scaling.models import GPT

    with pytest.raises(ValueError, match=needle):
        GPT(**kwargs)


def test_gpt_bad_input():
    from optimal_scaling.models import GPT

    model = GPT(context=8, width=16, n_heads=2)
    with pytest.raises(ValueError, match="exceeds the model's context 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    for dtype in (torch.float32, torch.uint8, torch.int16, torch.uint16):  # uint16: shards' dtype
        with pytest.raises(TypeError, match=f"dtype int64 or int32, got {dtype}.*idx.long"):
            model(torch.zeros(1, 4, dtype=dtype))
    for bad in (-1, 2.0, True):
        with pytest.raises(ValueError, match=f"generate: new_tokens must be an int ≥ 0, got {bad}"):
            model.generate(torch.zeros(1, 2, dtype=torch.long), bad)
    with pytest.raises(ValueError, match=r"shape \(batch, time\)"):
        model(torch.zeros(4, dtype=torch.long))


# --------------------------------------------------------------------------- Llama-style knobs
def test_rotary_embedding_keeps_norms_and_sees_only_relative_positions():
    from optimal_scaling.models.gpt import rotary_tables, rotate

    cos, sin = rotary_tables(16, 8)
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    Q = rotate(q.expand(16, 8).float(), cos, sin).double()
    K = rotate(k.expand(16, 8).float(), cos, sin).double()
    assert torch.allclose(Q.norm(dim=1), q.norm().expand(16), rtol=1e-5)
    # ⟨R_t1 q, R_t2 k⟩ depends on t1 − t2 only
    assert torch.allclose(Q[5] @ K[3], Q[9] @ K[7], rtol=1e-4)
    assert torch.allclose(Q[0] @ K[0], q @ k, rtol=1e-5)
    # the angles t·θ_i with θ_i = 10000^(−2i/d) (the base is what the properties above miss)
    for t, i in ((1, 0), (1, 1), (3, 2), (15, 3)):
        angle = t * 10000.0 ** (-2 * i / 8)
        assert cos[t, i].item() == pytest.approx(math.cos(angle), abs=1e-6)
        assert sin[t, i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    with pytest.raises(ValueError, match="even"):
        rotary_tables(4, 3)


def test_llama_style_gpt_has_the_paper_s_pieces():
    torch.manual_seed(0)
    kw = dict(vocab_size=32, context=16, width=32, depth=3, n_heads=4, norm_before_linear=True)
    llama = GPT(**kw, positions="rope", mlp="swiglu", qk_norm=True, norm_gain=False,
                scaled_branch_init=True)  # fmt: skip
    roles = llama.param_roles()
    assert llama.wpe is None and "gain" not in roles.values()  # no position table, no gains
    assert sum(r == "hidden" for r in roles.values()) == 3 * 5  # qkv, proj, gate, up, down
    x = torch.randint(0, 32, (2, 16))
    logits = llama(x)
    assert logits.shape == (2, 16, 32) and torch.isfinite(logits).all()
    # causal: the first position's logits do not depend on later tokens
    y = x.clone()
    y[:, 5:] = (y[:, 5:] + 1) % 32
    assert torch.allclose(llama(y)[:, :5], logits[:, :5], atol=1e-5)
    # SwiGLU: proj(norm(silu(gate x) ⊙ up x))
    mlp, h = llama.blocks[0].mlp, torch.randn(3, 32)
    want = mlp.proj(mlp.proj_norm(F.silu(mlp.fc(h)) * mlp.up(h)))
    assert torch.allclose(mlp(h), want)
    # 1/√(2L) on each branch's last linear, against the same init without it
    torch.manual_seed(1)
    a = GPT(**kw, scaled_branch_init=True)
    torch.manual_seed(1)
    b = GPT(**kw)
    ratio = a.blocks[1].mlp.proj.weight / b.blocks[1].mlp.proj.weight
    assert torch.allclose(ratio, torch.full_like(ratio, 6**-0.5))
    assert torch.equal(a.blocks[1].mlp.fc.weight, b.blocks[1].mlp.fc.weight)
    with pytest.raises(ValueError, match="unknown mlp"):
        GPT(**kw, mlp="relu")
    with pytest.raises(ValueError, match="unknown positions"):
        GPT(**kw, positions="alibi")


def test_an_optimizer_init_keeps_the_branch_scaling():
    from optimal_scaling.sweep.runner import build_optimizer
    from optimal_scaling.sweep.spec import OPTIMIZERS

    run = {"seed": 0, "optimizer": {"name": "scion", **OPTIMIZERS["scion"]}}
    model = GPT(vocab_size=32, context=16, width=32, depth=2, n_heads=4,
                norm_before_linear=True, scaled_branch_init=True)  # fmt: skip
    build_optimizer(run, model)
    # Scion's init gives every hidden matrix RMS→RMS norm 1; the branch outputs get 1/√(2L)
    def rms_rms(W):
        return (W.shape[1] / W.shape[0]) ** 0.5 * torch.linalg.matrix_norm(W, ord=2).item()

    assert rms_rms(model.blocks[0].attn.qkv.weight) == pytest.approx(1.0, rel=1e-4)
    assert rms_rms(model.blocks[0].attn.proj.weight) == pytest.approx(0.5, rel=1e-4)
    assert rms_rms(model.blocks[1].mlp.proj.weight) == pytest.approx(0.5, rel=1e-4)


def test_models_take_numpy_ints_and_store_python_ints():
    """Sizes read from a numpy grid are ints; the stored config stays JSON-serializable."""
    import json

    mlp = MLP(np.int64(3), np.int64(8), np.int32(2), depth=np.int64(3))
    gpt = GPT(np.int64(16), np.int64(8), np.int64(16), depth=np.int64(1), n_heads=np.int64(2))
    for model in (mlp, gpt):
        json.dumps(model.config)
        assert all(type(v) is int for v in model.config.values() if not isinstance(v, bool)
                   and isinstance(v, int | np.integer))  # fmt: skip
    assert type(gpt.width) is int and mlp(torch.randn(2, 3)).shape == (2, 2)
    with pytest.raises(ValueError, match="GPT: width must be an int ≥ 1, got 16.0"):
        GPT(16, 8, 16.0, depth=1, n_heads=2)


def test_teacher_task_names_bad_sizes_and_batch_sizes():
    for kwargs in ({"d_in": 0}, {"width": 0}):
        with pytest.raises(ValueError, match="d_in and width must be ≥ 1"):
            TeacherTask(**kwargs)
    with pytest.raises(ValueError, match="batch_size must be ≥ 1, got 0"):
        TeacherTask(d_in=4, width=8).batch(0, torch.Generator())


def _gpt(**kw):
    torch.manual_seed(0)
    return GPT(**{"vocab_size": 64, "context": 16, "width": 128, "depth": 2, "n_heads": 4, **kw})


def test_linear_starts_from_n_0_1_over_fan_in_and_biases_from_zero():
    """Linear: init N(0, 1/fan_in); MLP biases start at zero. 65536 draws: the std of a
    1024 × 64 weight is 1/8 within 2% (> 6 sd). (Kills: 1/fan_out; random bias init.)"""
    torch.manual_seed(0)
    layer = Linear(64, 1024, bias=True)
    assert layer.weight.std().item() == pytest.approx(64**-0.5, rel=0.02)
    assert torch.all(layer.bias == 0)
    assert torch.all(MLP(3, 8, 2, depth=3).hidden[0].bias == 0)


def test_layer_multipliers_and_rms_norm_follow_their_formulas():
    """Linear: y = m·(x Wᵀ) + b (the bias is not scaled); Embedding: y = m·W[token];
    RMSNorm: x/√(mean(x²) + ε)·g. (Kills: multiplier on the bias; Embedding multiplier ignored;
    RMSNorm gain ignored.)"""
    torch.manual_seed(0)
    lin = Linear(4, 3, bias=True)
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([1.0, -2.0, 3.0]))
    lin.multiplier = 0.25
    x = torch.randn(5, 4)
    torch.testing.assert_close(lin(x), 0.25 * (x @ lin.weight.T) + lin.bias)
    emb = Embedding(10, 4)
    emb.multiplier = 0.5
    idx = torch.tensor([[1, 7, 7]])
    torch.testing.assert_close(emb(idx), 0.5 * emb.weight[idx])
    norm = RMSNorm(6)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 7.0))
    h = torch.randn(2, 6)
    want = h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * torch.arange(1.0, 7.0)
    torch.testing.assert_close(norm(h), want)


def _attention_by_formula(attn, x, scale, q_norm=None, k_norm=None):
    q, k, v = rearrange(attn.qkv(x), "b t (three h d) -> three b h t d", three=3, h=attn.n_heads)
    if q_norm is not None:
        q, k = q_norm(q), k_norm(k)
    t = x.shape[1]
    scores = (q @ k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf"))
    return attn.proj(rearrange(scores.softmax(-1) @ v, "b h t d -> b t (h d)"))


def test_attention_default_scale_is_one_over_sqrt_head_dim_and_qk_norm_normalizes_both():
    """softmax(q kᵀ/√d_head + mask) v by default; with qk_norm q and k are RMS-normalized per
    head first. (Kills: default 1/d_head; qk_norm dropping the query's norm.)"""
    torch.manual_seed(0)
    attn = Attention(width=16, n_heads=2, bias=False, norm_before_linear=False)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(attn(x), _attention_by_formula(attn, x, 8**-0.5))
    qk = Attention(width=16, n_heads=2, bias=False, norm_before_linear=False, qk_norm=True,
                   gain=False)  # fmt: skip

    def rms(z):
        return z / torch.sqrt(z.pow(2).mean(-1, keepdim=True) + 1e-6)

    torch.testing.assert_close(qk(3 * x), _attention_by_formula(qk, 3 * x, 8**-0.5, rms, rms))


def test_feed_forward_is_gelu_between_its_two_matrices():
    """width → ratio·width → GELU → width. (Kills: ReLU instead of GELU.)"""
    torch.manual_seed(0)
    ff = FeedForward(8, 4, bias=False, norm_before_linear=False)
    h = torch.randn(3, 8)
    torch.testing.assert_close(ff(h), ff.proj(F.gelu(ff.fc(h))))


def test_gpt_forward_by_hand():
    """tokens → wte + wpe[0..t−1] → blocks → norm → head, written out. (Kills: positions off by
    one; final norm dropped.)"""
    model = _gpt(width=32, n_heads=2)
    idx = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = model.wte.weight[idx] + model.wpe.weight[:7]
        for block in model.blocks:
            x = block(x)
        want = model.norm(x) @ model.head.weight.T
        torch.testing.assert_close(model(idx), want)


def test_generate_leaves_an_eval_mode_model_in_eval_mode():
    """"The model's train/eval mode is left as it was." (Kills: always back to train mode.)"""
    model = _gpt(width=32, n_heads=2).eval()
    model.generate(torch.zeros(1, 2, dtype=torch.long), 2, temperature=0)
    assert not model.training


def test_mlp_forward_by_hand():
    """x → φ(input) → φ(hidden[0]) → … → output, no activation on the readout.
    (Kills: activation on the readout; no activation between hidden layers.)"""
    torch.manual_seed(0)
    model = MLP(3, 8, 2, depth=4, activation="tanh")
    x = torch.randn(5, 3)
    h = torch.tanh(F.linear(x, model.input.weight, model.input.bias))
    for layer in model.hidden:
        h = torch.tanh(F.linear(h, layer.weight, layer.bias))
    want = F.linear(h, model.output.weight, model.output.bias)
    torch.testing.assert_close(model(x), want)
