"""Operator norms: the closed forms are the definitions, batched; power iteration; errors."""

from __future__ import annotations

import math

import pytest
import torch

from optimal_scaling import norms
from optimal_scaling.norms import (
    NORM_PAIRS,
    NORMS,
    PowerIteration,
    induced_norm_bruteforce,
    operator_norm,
    spectral_estimate,
)

FUNCS = {
    "spectral": norms.spectral,
    "rms->rms": norms.rms_to_rms,
    "l1->rms": norms.l1_to_rms,
    "rms->inf": norms.rms_to_inf,
    "l1->inf": norms.l1_to_inf,
    "l1->l2": norms.l1_to_l2,
}
SHAPES = [(3, 4), (5, 2), (4, 4), (6, 9), (1, 5), (7, 1)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed), dtype=dtype)


def test_names_cover_every_norm():
    assert set(NORMS) == set(NORM_PAIRS) == set(FUNCS)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["l1->rms", "l1->inf", "l1->l2", "rms->inf"])
def test_closed_form_is_the_definition(name, shape):
    """ℓ1 inputs peak at a basis vector, ℓ∞ outputs at x ∝ a row: the search finds them."""
    W = randn(*shape, seed=sum(shape))
    alpha, beta = NORM_PAIRS[name]
    brute = induced_norm_bruteforce(W, alpha, beta, samples=512, generator=gen(1))
    closed = operator_norm(W, name)
    assert closed.shape == ()
    torch.testing.assert_close(closed, brute, rtol=1e-10, atol=0)
    torch.testing.assert_close(FUNCS[name](W), closed, rtol=0, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["spectral", "rms->rms"])
def test_spectral_norms_are_the_definition(name, shape):
    W = randn(*shape, seed=sum(shape))
    alpha, beta = NORM_PAIRS[name]
    closed = operator_norm(W, name)
    # with the top right singular vector among the candidates the search attains the norm
    v1 = torch.linalg.svd(W).Vh[:1]
    brute = induced_norm_bruteforce(W, alpha, beta, samples=256, generator=gen(2), extra=v1)
    torch.testing.assert_close(closed, brute, rtol=1e-10, atol=0)
    # without it: the norm bounds every sampled ratio
    sampled = induced_norm_bruteforce(W, alpha, beta, samples=4096, generator=gen(3))
    assert sampled <= closed * (1 + 1e-12)
    if shape[1] <= 4:  # in low dimension random search alone comes within 1%
        assert sampled >= 0.99 * closed


def test_rms_to_rms_relation_and_examples():
    W = randn(6, 9, seed=4)
    torch.testing.assert_close(norms.rms_to_rms(W), math.sqrt(9 / 6) * norms.spectral(W))
    # the identity is an RMS→RMS isometry; an orthogonal matrix has spectral norm 1
    torch.testing.assert_close(norms.rms_to_rms(torch.eye(5)), torch.tensor(1.0))
    Q = torch.linalg.qr(randn(8, 8, seed=5)).Q
    torch.testing.assert_close(norms.spectral(Q), torch.tensor(1.0, dtype=torch.float64))
    # a matrix of ones (d_out, d_in): σ_max = √(d_out·d_in), RMS→RMS = d_in
    ones = torch.ones(3, 7)
    torch.testing.assert_close(norms.spectral(ones), torch.tensor(math.sqrt(21)))
    torch.testing.assert_close(norms.rms_to_rms(ones), torch.tensor(7.0))
    torch.testing.assert_close(norms.rms_to_inf(ones), torch.tensor(7.0))
    torch.testing.assert_close(norms.l1_to_rms(ones), torch.tensor(1.0))


@pytest.mark.parametrize("name", NORMS)
def test_batched_equals_loop(name):
    W = randn(3, 4, 5, 6, seed=6)
    out = operator_norm(W, name)
    assert out.shape == (3, 4)
    loop = torch.stack(
        [torch.stack([operator_norm(W[i, j], name) for j in range(4)]) for i in range(3)]
    )
    torch.testing.assert_close(out, loop, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_kept(dtype):
    for name in NORMS:
        assert operator_norm(randn(4, 3, dtype=dtype), name).dtype == dtype


def test_half_precision_is_upcast():
    W = randn(4, 3, dtype=torch.float32)
    out = norms.spectral(W.to(torch.bfloat16))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, norms.spectral(W), rtol=1e-2, atol=0)
    brute = induced_norm_bruteforce(W.to(torch.float16), "l1", "rms", samples=8)
    assert brute.dtype == torch.float32  # the compute dtype, as the docstring says


def test_unicode_arrow_accepted():
    W = randn(4, 3)
    torch.testing.assert_close(operator_norm(W, "rms→rms"), norms.rms_to_rms(W))


def test_rms():
    x = torch.tensor([3.0, 4.0])
    torch.testing.assert_close(norms.rms(x), torch.tensor(math.sqrt(12.5)))
    W = randn(4, 5, seed=7)
    torch.testing.assert_close(norms.rms(W), W.norm() / math.sqrt(20))
    torch.testing.assert_close(norms.rms(W, dim=-1), W.norm(dim=-1) / math.sqrt(5))
    assert torch.isnan(norms.rms(torch.tensor([1.0, float("nan")])))  # a monitor: NaN propagates
    with pytest.raises(TypeError, match="floating"):
        norms.rms(torch.arange(3))


def test_vector_norms():
    x = torch.tensor([[3.0, -4.0, 0.0, 0.0]])
    assert norms.vector_norm(x, "l1").item() == 7.0
    assert norms.vector_norm(x, "l2").item() == 5.0
    assert norms.vector_norm(x, "rms").item() == 2.5
    assert norms.vector_norm(x, "inf").item() == 4.0
    with pytest.raises(ValueError, match="l1, l2, rms, inf"):
        norms.vector_norm(x, "l3")


# ------------------------------------------------------------------------- power iteration
def test_spectral_estimate_cold_start():
    W = randn(40, 30, seed=8, dtype=torch.float32)
    exact = norms.spectral(W)
    est = spectral_estimate(W, iters=30, generator=gen(9))
    assert est <= exact * (1 + 1e-5)  # a Rayleigh quotient: never above σ_max
    assert est >= 0.99 * exact


def test_spectral_estimate_batched_and_zero():
    W = randn(3, 2, 12, 10, seed=10)
    est = spectral_estimate(W, iters=200, generator=gen(11))
    assert est.shape == (3, 2)
    torch.testing.assert_close(est, norms.spectral(W), rtol=1e-2, atol=0)
    zero = spectral_estimate(torch.zeros(2, 5, 4))
    assert torch.equal(zero, torch.zeros(2))


def test_power_iteration_warm_start():
    W = randn(40, 30, seed=12, dtype=torch.float32)
    est = PowerIteration(iters=2, seed=0)
    est(W, iters=30)  # converge once
    assert est(W) >= 0.99 * norms.spectral(W)
    for step in range(5):  # a training run: small changes, 1-2 iterations per call suffice
        W = W + 0.02 * randn(40, 30, seed=100 + step, dtype=torch.float32)
        exact = norms.spectral(W)
        for iters in (1, 2):
            sigma = est(W, iters=iters)
            assert sigma <= exact * (1 + 1e-5)
            assert sigma >= 0.99 * exact


def test_power_iteration_warm_beats_cold():
    W = randn(64, 64, seed=13, dtype=torch.float32)
    exact = norms.spectral(W)
    est = PowerIteration(iters=2, seed=1)
    est(W, key="w", iters=100)
    W2 = W + 0.01 * randn(64, 64, seed=14, dtype=torch.float32)
    exact2 = norms.spectral(W2)
    warm = est(W2, key="w", iters=2)
    cold = spectral_estimate(W2, iters=2, generator=gen(15))
    assert (exact2 - warm) / exact2 < 0.01
    assert (exact2 - warm) < (exact2 - cold)
    assert exact > 0


def test_power_iteration_state():
    est = PowerIteration(iters=3, seed=0)
    A, B = randn(6, 5, seed=16), randn(6, 5, seed=17)
    est(A, key="a")
    est(B, key="b")
    assert len(est) == 2 and est.vector("a").shape == (5,)
    assert not torch.equal(est.vector("a"), est.vector("b"))
    # same seed, same calls, same numbers; a shape change restarts without error
    again = PowerIteration(iters=3, seed=0)
    assert torch.equal(again(A, key="a"), PowerIteration(iters=3, seed=0)(A, key="a"))
    sigma = est(randn(2, 7, 3, seed=18), key="a")
    assert sigma.shape == (2,) and est.vector("a").shape == (2, 3)
    est.reset("a")
    assert est.vector("a") is None and len(est) == 1
    est.reset()
    assert len(est) == 0
    # default key: the shape; the stored vector converges to A's top right singular vector
    long = PowerIteration(iters=200, seed=0)
    long(A)
    v1 = torch.linalg.svd(A.double()).Vh[0]
    assert abs(float(long.vector((6, 5)).double() @ v1)) == pytest.approx(1.0, abs=1e-6)
    # and a second call continues from it: 3 + 3 warm-started steps = 6 steps from the seed
    split, whole = PowerIteration(iters=3, seed=0), PowerIteration(iters=6, seed=0)
    split(A)
    torch.testing.assert_close(split(A), whole(A), rtol=1e-6, atol=0)


def test_power_iteration_batched_rms_to_rms_and_zero():
    W = randn(4, 8, 12, seed=19)
    est = PowerIteration(iters=60, seed=2)
    torch.testing.assert_close(est(W), norms.spectral(W), rtol=1e-2, atol=0)
    torch.testing.assert_close(est.rms_to_rms(W), norms.rms_to_rms(W), rtol=1e-2, atol=0)
    zero = est(torch.zeros(4, 8, 12))
    assert torch.equal(zero, torch.zeros(4, dtype=torch.float32))
    assert not torch.isnan(est.vector((4, 8, 12))).any()


def test_power_iteration_no_grad():
    W = randn(5, 4, seed=20).requires_grad_()
    assert not PowerIteration(seed=0)(W).requires_grad
    assert not spectral_estimate(W).requires_grad


# ------------------------------------------------------------------------------ errors
ALL_CALLS = [*FUNCS.values(), lambda W: operator_norm(W, "l1->inf"), spectral_estimate]


@pytest.mark.parametrize("fn", ALL_CALLS)
def test_errors(fn):
    with pytest.raises(
        ValueError, match=r"expected a matrix \(\.\.\., d_out, d_in\), got shape \(5,\)"
    ):
        fn(torch.ones(5))
    with pytest.raises(TypeError, match="floating"):
        fn(torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn([[1.0, 2.0]])
    bad = torch.ones(3, 4)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fn(bad)
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="inf"):
        fn(bad)
    with pytest.raises(ValueError, match="empty"):
        fn(torch.ones(0, 4))


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown operator norm 'frobenius'.*rms->rms"):
        operator_norm(torch.ones(2, 2), "frobenius")
    with pytest.raises(ValueError, match="l1, l2, rms, inf"):
        induced_norm_bruteforce(torch.ones(2, 2), "l1", "max")
    with pytest.raises(ValueError, match="plain matrix"):
        induced_norm_bruteforce(torch.ones(2, 2, 2), "l1", "l2")
    with pytest.raises(ValueError, match="extra holds vectors of length 4, W takes 6"):
        induced_norm_bruteforce(torch.ones(2, 6), "l2", "l2", extra=torch.ones(3, 4))
    with pytest.raises(ValueError, match="samples"):
        induced_norm_bruteforce(torch.ones(2, 2), "l2", "l2", samples=True)
    with pytest.raises(ValueError, match="iters"):
        PowerIteration(iters=-1)
    with pytest.raises(ValueError, match="NaN"):
        PowerIteration()(torch.full((2, 2), float("nan")))


def test_rms_is_taken_along_the_dimension_asked_for():
    assert torch.allclose(norms.vector_norm(torch.ones(4, 9), "rms", dim=0), torch.ones(9))
    assert norms.vector_norm(torch.ones(4, 9), "l2", dim=0)[0] == pytest.approx(2.0)


def test_power_iteration_recovers_after_a_zero_matrix_and_starts_from_unit_vectors():
    W = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    est = norms.PowerIteration(iters=2, seed=0)
    est(W, key="w")
    assert est(torch.zeros_like(W), key="w") == 0  # the stored vector survives the zero matrix
    assert est(W, key="w", iters=30) == pytest.approx(torch.linalg.matrix_norm(W, 2).item())
    batched = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(1))
    fresh = norms.PowerIteration(iters=0, seed=0)
    fresh(batched, key="b")
    assert torch.allclose(torch.linalg.vector_norm(fresh.vector("b"), dim=-1), torch.ones(3))
