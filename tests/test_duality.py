"""Duality maps: dualize attains the dual norm at unit norm, brute-force checks, inits, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from optimal_scaling import norms
from optimal_scaling.duality import (
    MAPS,
    BiasRMS,
    ColNorm,
    Conv1DSpectral,
    Conv2DSpectral,
    Conv3DSpectral,
    DualityMap,
    RowNorm,
    Sign,
    Spectral,
    get_map,
    steepest_descent_step,
)

# (id, factory(batched) -> map, event shape); BiasRMS only takes a batch when asked to.
CASES = [
    ("spectral-wide", lambda b=False: Spectral(), (5, 7)),
    ("spectral-tall", lambda b=False: Spectral(), (7, 5)),
    ("colnorm", lambda b=False: ColNorm(), (5, 7)),
    ("rownorm", lambda b=False: RowNorm(), (7, 5)),
    ("sign-scaled", lambda b=False: Sign(scaled=True), (5, 7)),
    ("sign-unscaled", lambda b=False: Sign(scaled=False), (7, 5)),
    ("bias_rms", lambda b=False: BiasRMS(batched=b), (6,)),
    ("conv2d_spectral", lambda b=False: Conv2DSpectral(), (4, 3, 3, 2)),
    ("conv1d_spectral", lambda b=False: Conv1DSpectral(), (4, 3, 3)),
    ("conv3d_spectral", lambda b=False: Conv3DSpectral(), (3, 4, 2, 1, 2)),
]
IDS = [c[0] for c in CASES]
PARAMS = [c[1:] for c in CASES]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def inner(G: torch.Tensor, A: torch.Tensor, event_ndim: int) -> torch.Tensor:
    return (G * A).sum(dim=tuple(range(-event_ndim, 0)))


def test_registry():
    assert set(MAPS) == {"spectral", "colnorm", "rownorm", "sign", "bias_rms", "conv1d_spectral",
                         "conv2d_spectral", "conv3d_spectral"}  # fmt: skip
    for name, cls in MAPS.items():
        m = get_map(name)
        assert isinstance(m, cls) and isinstance(m, DualityMap) and m.name == name
    assert get_map("sign", scaled=False).scaled is False
    with pytest.raises(ValueError, match="unknown duality map 'muon'.*spectral, colnorm"):
        get_map("muon")


@pytest.mark.parametrize(("make", "shape"), PARAMS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dualize_attains_dual_norm_at_unit_norm(make, shape, dtype):
    m = make()
    for seed in range(3):
        G = randn(*shape, seed=seed, dtype=dtype)
        D = m.dualize(G)
        assert D.shape == G.shape and D.dtype == dtype
        dual = m.dual_norm(G)
        assert dual.shape == () and dual > 0
        torch.testing.assert_close(m.inner(G, D), dual, rtol=1e-5, atol=0)
        torch.testing.assert_close(inner(G, D, m.event_ndim), dual, rtol=1e-5, atol=0)
        torch.testing.assert_close(m.norm(D), torch.ones((), dtype=dtype), rtol=1e-5, atol=0)


@pytest.mark.parametrize(("make", "shape"), PARAMS, ids=IDS)
def test_dual_norm_bruteforce(make, shape):
    """No unit-norm A beats ⟨G, dualize(G)⟩, and near-maximizers come close to it."""
    m, mb = make(), make(True)
    k = m.event_ndim
    G = randn(*shape, seed=1)
    dual = m.dual_norm(G)
    D = m.dualize(G)
    n = 1000
    candidates = [randn(n, *shape, seed=2)]  # random directions
    for i, eps in enumerate((1e-3, 1e-2, 1e-1, 1.0)):  # perturbations of the maximizer
        candidates.append(D + eps * randn(n, *shape, seed=3 + i))
    A = torch.cat(candidates)
    A = A / mb.norm(A).reshape(-1, *([1] * k))
    torch.testing.assert_close(mb.norm(A), torch.ones(len(A), dtype=A.dtype))
    values = inner(G, A, k)
    assert values.max() <= dual * (1 + 1e-9)
    assert values.max() >= 0.98 * dual  # the 1e-3 perturbations stay within 2%
    assert values[:n].max() < dual  # random directions never reach it


@pytest.mark.parametrize(("make", "shape"), PARAMS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_init(make, shape, dtype):
    m = make()
    W = m.init(shape, generator=gen(5), dtype=dtype)
    assert W.shape == shape and W.dtype == dtype
    if isinstance(m, BiasRMS):
        assert torch.equal(W, torch.zeros(shape, dtype=dtype))  # the exception: norm 0
        assert m.norm(W) == 0
        return
    torch.testing.assert_close(m.norm(W), torch.ones((), dtype=dtype), rtol=1e-5, atol=0)
    # seedable and random
    assert torch.equal(W, m.init(shape, generator=gen(5), dtype=dtype))
    assert not torch.equal(W, m.init(shape, generator=gen(6), dtype=dtype))


@pytest.mark.parametrize(("make", "shape"), PARAMS, ids=IDS)
def test_batched_equals_loop(make, shape):
    m = make(True)
    G = randn(2, 3, *shape, seed=7)
    norm, dual, D = m.norm(G), m.dual_norm(G), m.dualize(G)
    assert norm.shape == dual.shape == (2, 3) and D.shape == G.shape
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(norm[i, j], m.norm(G[i, j]))
            torch.testing.assert_close(dual[i, j], m.dual_norm(G[i, j]))
            torch.testing.assert_close(D[i, j], m.dualize(G[i, j]))
    W = m.init((2, 3, *shape), generator=gen(8))
    assert W.shape == (2, 3, *shape)
    if not isinstance(m, BiasRMS):
        torch.testing.assert_close(m.norm(W), torch.ones(2, 3))


@pytest.mark.parametrize(("make", "shape"), PARAMS, ids=IDS)
def test_zero_gradient(make, shape):
    m = make()
    Z = torch.zeros(shape)
    assert torch.equal(m.dualize(Z), Z)
    assert m.dual_norm(Z) == 0 and m.norm(Z) == 0
    assert torch.equal(steepest_descent_step(Z, m), Z)


@pytest.mark.parametrize(("make", "shape"), PARAMS, ids=IDS)
def test_partly_zero_gradient(make, shape):
    """Zero columns/rows/entries stay zero and the identities still hold."""
    m = make()
    G = randn(*shape, seed=9)
    G[..., 0] = 0  # a zero column (matrices), a zero entry (bias), a zero tap column (conv)
    G.view(-1)[1:4] = 0
    D = m.dualize(G)
    assert not torch.isnan(D).any()
    torch.testing.assert_close(m.inner(G, D), m.dual_norm(G), rtol=1e-10, atol=0)
    torch.testing.assert_close(m.norm(D), torch.ones((), dtype=G.dtype), rtol=1e-10, atol=0)


def test_sign_identities_with_zeros():
    G = torch.tensor([[1.5, 0.0, -2.0], [0.0, 0.0, 0.25]])
    d_in = 3
    scaled, plain = Sign(scaled=True), Sign(scaled=False)
    assert torch.equal(plain.dualize(G), torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 1.0]]))
    assert torch.equal(scaled.dualize(G), plain.dualize(G) / d_in)
    assert plain.dual_norm(G) == 3.75 and scaled.dual_norm(G) == 3.75 / d_in
    assert plain.norm(G) == 2.0 and scaled.norm(G) == 6.0
    for m in (scaled, plain):
        assert m.inner(G, m.dualize(G)) == m.dual_norm(G)
        assert m.norm(m.dualize(G)) == 1
    torch.testing.assert_close(plain.norm(G), norms.l1_to_inf(G))
    assert torch.equal(scaled.init((4, 8), generator=gen(0)).abs(), torch.full((4, 8), 1 / 8))


def test_norms_agree_with_operator_norms():
    W = randn(6, 4, seed=10)
    torch.testing.assert_close(Spectral().norm(W), norms.rms_to_rms(W))
    torch.testing.assert_close(ColNorm().norm(W), norms.l1_to_rms(W))
    torch.testing.assert_close(RowNorm().norm(W), norms.rms_to_inf(W))
    torch.testing.assert_close(Sign(scaled=False).norm(W), norms.l1_to_inf(W))
    torch.testing.assert_close(Sign().norm(W), 4 * norms.l1_to_inf(W))
    b = randn(9, seed=11)
    torch.testing.assert_close(BiasRMS().norm(b), norms.rms(b))


def test_init_structure():
    Q = Spectral().init((8, 3), generator=gen(1), dtype=torch.float64)
    torch.testing.assert_close(Q.T @ Q, (8 / 3) * torch.eye(3, dtype=torch.float64))
    Q = Spectral().init((3, 8), generator=gen(1), dtype=torch.float64)
    torch.testing.assert_close(Q @ Q.T, (3 / 8) * torch.eye(3, dtype=torch.float64))
    C = ColNorm().init((6, 4), generator=gen(2), dtype=torch.float64)
    torch.testing.assert_close(C.norm(dim=0) / math.sqrt(6), torch.ones(4, dtype=torch.float64))
    R = RowNorm().init((6, 4), generator=gen(3), dtype=torch.float64)
    torch.testing.assert_close(R.norm(dim=1), torch.full((6,), 0.5, dtype=torch.float64))
    K = Conv2DSpectral().init((8, 4, 3, 3), generator=gen(4), dtype=torch.float64)
    for a in range(3):
        for b in range(3):
            tap = K[:, :, a, b]
            torch.testing.assert_close(tap.T @ tap, (2 / 81) * torch.eye(4, dtype=torch.float64))


def test_conv_1x1_is_spectral():
    G = randn(6, 4, seed=12)
    conv, spec = Conv2DSpectral(), Spectral()
    G4 = G[:, :, None, None]
    torch.testing.assert_close(conv.norm(G4), spec.norm(G))
    torch.testing.assert_close(conv.dual_norm(G4), spec.dual_norm(G))
    torch.testing.assert_close(conv.dualize(G4)[:, :, 0, 0], spec.dualize(G))
    torch.testing.assert_close(
        conv.init((6, 4, 1, 1), generator=gen(0))[:, :, 0, 0], spec.init((6, 4), generator=gen(0))
    )


@pytest.mark.parametrize("m, shape", [(Conv1DSpectral(), (5, 3, 4)),
                                      (Conv3DSpectral(), (3, 5, 2, 3, 2))])  # fmt: skip
def test_1d_and_3d_convs_are_a_max_and_sum_over_their_taps(m, shape):
    G = randn(*shape, seed=14)
    out, inp, kernel = shape[0], shape[1], shape[2:]
    taps = [G[(slice(None), slice(None), *t)] for t in itertools.product(*map(range, kernel))]
    k, spec = len(taps), Spectral()
    torch.testing.assert_close(m.norm(G), k * torch.stack([spec.norm(t) for t in taps]).max())
    torch.testing.assert_close(m.dual_norm(G), sum(spec.dual_norm(t) for t in taps) / k)
    last = (slice(None), slice(None), *(n - 1 for n in kernel))
    torch.testing.assert_close(m.dualize(G)[last], spec.dualize(G[last]) / k)
    W = m.init(shape, generator=gen(5), dtype=torch.float64)
    tap = W[last]  # each tap semi-orthogonal times √(out/in)/k
    torch.testing.assert_close(tap @ tap.T if out < inp else tap.T @ tap,
                               (out / inp) / k**2 * torch.eye(min(out, inp), dtype=torch.float64))


def test_conv_is_a_max_and_sum_over_taps():
    G = randn(5, 3, 2, 2, seed=13)
    taps = [G[:, :, a, b] for a in range(2) for b in range(2)]
    spec = Spectral()
    m = Conv2DSpectral()
    torch.testing.assert_close(m.norm(G), 4 * torch.stack([spec.norm(t) for t in taps]).max())
    torch.testing.assert_close(m.dual_norm(G), sum(spec.dual_norm(t) for t in taps) / 4)
    torch.testing.assert_close(m.dualize(G)[:, :, 1, 0], spec.dualize(G[:, :, 1, 0]) / 4)


# ---------------------------------------------------------------- steepest descent
def test_sign_descent_is_adam_without_memory():
    """Adam with β = (0, 0), ε ≈ 0 steps by −η·sign(G): steepest descent in the max norm."""
    G = randn(5, 7, seed=14, dtype=torch.float32)
    G[0, 0] = G[2, 3] = 0.0  # sign(0) = 0 both in Adam (with a tiny ε) and in Sign
    w0 = randn(5, 7, seed=15, dtype=torch.float32)
    p = torch.nn.Parameter(w0.clone())
    lr = 0.05
    opt = torch.optim.Adam([p], lr=lr, betas=(0.0, 0.0), eps=1e-30)
    p.grad = G.clone()
    opt.step()
    delta = p.detach() - w0
    torch.testing.assert_close(delta, -lr * torch.sign(G), rtol=0, atol=1e-6)
    torch.testing.assert_close(delta, -lr * 7 * Sign(scaled=True).dualize(G), rtol=0, atol=1e-6)
    torch.testing.assert_close(delta, -lr * Sign(scaled=False).dualize(G), rtol=0, atol=1e-6)
    # the steepest-descent step has the same direction; only its length differs
    step = steepest_descent_step(G, Sign(scaled=False))
    torch.testing.assert_close(step, -G.abs().sum() * torch.sign(G))


def test_spectral_direction_is_the_orthogonalized_gradient():
    G = randn(6, 9, seed=16)
    D = Spectral().dualize(G)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    torch.testing.assert_close(D, math.sqrt(6 / 9) * U @ Vh)
    sv = torch.linalg.svdvals(D)
    torch.testing.assert_close(sv, torch.full((6,), math.sqrt(6 / 9), dtype=G.dtype))
    # the polar factor: (G Gᵀ)^{-1/2} G
    L, Qm = torch.linalg.eigh(G @ G.T)
    polar = Qm @ torch.diag(L.rsqrt()) @ Qm.T @ G
    torch.testing.assert_close(D, math.sqrt(6 / 9) * polar)
    # a rank-deficient gradient: null directions are dropped, the rest stay at equal scale
    low = randn(6, 2, seed=17) @ randn(2, 9, seed=18)
    sv = torch.linalg.svdvals(Spectral().dualize(low))
    torch.testing.assert_close(sv[:2], torch.full((2,), math.sqrt(6 / 9), dtype=G.dtype))
    assert sv[2:].abs().max() < 1e-10


@pytest.mark.parametrize(("make", "shape"), PARAMS, ids=IDS)
@pytest.mark.parametrize("sharpness", [0.5, 3.0])
def test_steepest_descent_minimizes_the_model(make, shape, sharpness):
    m, mb = make(), make(True)
    k = m.event_ndim
    G = randn(*shape, seed=19)
    step = steepest_descent_step(G, m, sharpness=sharpness)
    torch.testing.assert_close(step, -(m.dual_norm(G) / sharpness) * m.dualize(G))

    def model(delta):
        return inner(G, delta, k) + sharpness / 2 * mb.norm(delta) ** 2

    best = model(step)
    torch.testing.assert_close(best, -(m.dual_norm(G) ** 2) / (2 * sharpness))
    n = 500
    scales = torch.tensor([0.01, 0.1, 1.0, 10.0], dtype=G.dtype).repeat_interleave(n // 4)
    cands = [
        randn(n, *shape, seed=20) * scales.reshape(-1, *([1] * k)),  # random
        step + 1e-2 * randn(n, *shape, seed=21),  # near the step
        torch.linspace(0, 3, 61, dtype=G.dtype).reshape(-1, *([1] * k)) * step,  # along it
    ]
    values = model(torch.cat(cands))
    assert values.min() >= best - 1e-9 * best.abs()


def test_steepest_descent_by_name_and_errors():
    G = randn(4, 4, seed=22)
    torch.testing.assert_close(
        steepest_descent_step(G, "spectral"), steepest_descent_step(G, Spectral())
    )
    with pytest.raises(ValueError, match="sharpness"):
        steepest_descent_step(G, Spectral(), sharpness=0.0)
    with pytest.raises(TypeError, match="DualityMap"):
        steepest_descent_step(G, object())
    with pytest.raises(ValueError, match="unknown duality map"):
        steepest_descent_step(G, "adam")


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "m", [Spectral(), ColNorm(), RowNorm(), Sign(), Sign(scaled=False)], ids=repr
)
def test_matrix_maps_reject_vectors(m):
    name = type(m).__name__
    pattern = rf"{name}: expected a matrix \(\.\.\., d_out, d_in\), got shape \(5,\)"
    for fn in (m.norm, m.dual_norm, m.dualize):
        with pytest.raises(ValueError, match=pattern):
            fn(torch.ones(5))
    with pytest.raises(ValueError, match=rf"{name}.init: expected a matrix"):
        m.init((5,))
    with pytest.raises(TypeError, match="floating"):
        m.dualize(torch.ones(3, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="NaN"):
        m.dualize(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="inf"):
        m.norm(torch.tensor([[1.0, float("inf")]]))
    for shape in ((4.5, 3), (True, 3), ("4", 3)):  # int(4.5) would silently draw a 4 × 3
        with pytest.raises(TypeError, match=rf"{name}.init: shape must be a sequence of ints"):
            m.init(shape)
    with pytest.raises(TypeError, match="dtype must be a torch.dtype"):
        m.init((4, 3), dtype="float32")
    assert m.init((torch.tensor(4), 3.0)).shape == (4, 3)  # whole numbers in any type


def test_bias_and_conv_shape_errors():
    with pytest.raises(
        ValueError, match=r"BiasRMS: expected a bias vector \(n,\), got shape \(3, 4\)"
    ):
        BiasRMS().dualize(torch.ones(3, 4))
    with pytest.raises(ValueError, match="BiasRMS.init"):
        BiasRMS().init((3, 4))
    assert BiasRMS(batched=True).norm(torch.ones(3, 4)).shape == (3,)
    with pytest.raises(
        ValueError, match=r"Conv2DSpectral: expected a conv weight .* got shape \(4, 3, 3\)"
    ):
        Conv2DSpectral().norm(torch.ones(4, 3, 3))
    with pytest.raises(ValueError, match="positive"):
        Spectral().init((0, 3))
    with pytest.raises(ValueError, match="shapes differ"):
        Spectral().inner(torch.ones(2, 3), torch.ones(3, 2))


def test_spectral_methods():
    G = randn(4, 3, seed=23)
    # the Newton–Schulz path approximates the exact SVD path (8 Polar Express steps)
    ns, svd = Spectral(method="newton_schulz").dualize(G), Spectral().dualize(G)
    assert (ns - svd).abs().max() < 0.02
    ns4 = Conv2DSpectral(method="newton_schulz").dualize(G[:, :, None, None])
    assert (ns4 - Conv2DSpectral().dualize(G[:, :, None, None])).abs().max() < 0.02
    # the norms do not need the engine
    torch.testing.assert_close(Spectral(method="newton_schulz").norm(G), Spectral().norm(G))
    with pytest.raises(ValueError, match="unknown method 'qr'.*svd, newton_schulz"):
        Spectral(method="qr")


def test_half_precision_gradient():
    G = randn(4, 6, seed=24, dtype=torch.float32)
    D = Spectral().dualize(G.to(torch.bfloat16))
    assert D.dtype == torch.bfloat16
    torch.testing.assert_close(D.float(), Spectral().dualize(G), rtol=0.05, atol=0.02)


def test_spectral_with_muon_coefficients_is_muon_s_five_step_quintic():
    from optimal_scaling.duality import Spectral
    from optimal_scaling.newton_schulz import orthogonalize

    G = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    got = Spectral("muon").dualize(G)
    want = (16 / 8) ** 0.5 * orthogonalize(G, steps=5, schedule="muon")
    assert torch.allclose(got, want, atol=1e-6)
    s = torch.linalg.svdvals(got / (16 / 8) ** 0.5)
    assert 0.6 < s.min() and s.max() < 1.25  # Muon's quintic does not converge to 1


@pytest.mark.parametrize("name", ["colnorm", "rownorm", "bias_rms"])
def test_tiny_gradients_dualize_like_ordinary_ones(name):
    """Squares of entries near 1e-25 underflow in float32; the map must not return zeros."""
    m = get_map(name)
    shape = (5,) if name == "bias_rms" else (6, 4)
    G = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    for scale in (1e-25, 1e-30):
        got = m.dualize(G * scale)
        assert got.dtype == G.dtype
        torch.testing.assert_close(got, m.dualize(G), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 3), (3, 8)])
def test_spectral_init_is_the_q_factor_with_a_positive_diagonal(shape):
    """Q from A = QR with diag(R) > 0 (the sign choice that makes Q Haar-distributed): the
    same Gaussian A, redrawn from the same seed, gives Qᵀ A upper triangular, diagonal > 0."""
    m, n = shape
    A = torch.randn(shape, generator=gen(5), dtype=torch.float64)
    Q = Spectral().init(shape, generator=gen(5), dtype=torch.float64) / math.sqrt(m / n)
    tall_A, tall_Q = (A, Q) if m >= n else (A.mT, Q.mT)
    R = tall_Q.mT @ tall_A
    torch.testing.assert_close(R, R.triu(), atol=1e-12, rtol=0)
    assert (torch.diagonal(R) > 0).all()
