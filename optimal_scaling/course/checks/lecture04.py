"""Self-checks for lecture 04 (Newton–Schulz)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from optimal_scaling import newton_schulz as ns
from optimal_scaling.course.checks import CheckResult, check


def _matrices(shapes) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = []
    for s in shapes:
        X = torch.randn(s, generator=g, dtype=torch.float64)
        out.append(X / torch.linalg.matrix_norm(X))
    return out


def check_ns_step(fn: Callable[[torch.Tensor, float, float, float], torch.Tensor]) -> CheckResult:
    """``fn(X, a, b, c)`` → a X + b (X Xᵀ) X + c (X Xᵀ)² X for X of shape (m, n), m ≤ n."""
    coeffs = [ns.MUON, ns.CUBIC, (2.0, -1.5, 0.5), ns.MUON, ns.MUON]
    scales = [0.5, 1.0, 1.0, 1.0, 2.0]  # ‖X‖_F ≠ 1 first and last: a step that normalizes shows
    cases = [{"X": s * X, "a": a, "b": b, "c": c}
             for X, s, (a, b, c) in zip(_matrices([(4, 4), (3, 5), (2, 7), (8, 16), (5, 6)]),
                                        scales, coeffs, strict=True)]
    mistakes = {
        "B multiplies X from the left: X ← a·X + B·X": lambda X, a, b, c: a * X + X @ (
            b * (X @ X.T) + c * (X @ X.T) @ (X @ X.T)),
        "the quintic term is c·A·A·X: A appears twice": lambda X, a, b, c: (
            a * X + (b * (X @ X.T) + c * (X @ X.T)) @ X),
        "the step keeps a·X: X ← a·X + B·X": lambda X, a, b, c: (
            (b * (X @ X.T) + c * (X @ X.T) @ (X @ X.T)) @ X),
        "the step does not normalize X (that happens once, before the first step)": (
            lambda X, a, b, c: ns.reference_step(X / torch.linalg.matrix_norm(X), a, b, c)),
    }
    return check("one Newton–Schulz step", fn, ns.reference_step, cases,
                 hint="the step is a·X + (b·A + c·A²)·X with A = X·Xᵀ", mistakes=mistakes,
                 rtol=1e-6, atol=1e-9)


def check_response(fn: Callable[[np.ndarray, list], np.ndarray]) -> CheckResult:
    """``fn(sigma, triples)`` → p_k ∘ … ∘ p_1 (σ), with p(σ) = a σ + b σ³ + c σ⁵ per triple."""
    sigma = np.geomspace(1e-3, 1, 9)
    cases = [{"sigma": sigma, "triples": t} for t in
             ([ns.MUON] * 5, [ns.CUBIC] * 3, ns.polar_express_coefficients(4), [(2.0, -1.5, 0.5)])]
    return check("Newton–Schulz response", fn,
                 lambda sigma, triples: ns.response(sigma, triples, len(triples)), cases,
                 hint="each triple is one polynomial p(σ) = aσ + bσ³ + cσ⁵, applied in order",
                 mistakes={"apply each polynomial to the previous step's output, not to the "
                           "original σ": lambda sigma, triples: (
                               lambda a, b, c: a * sigma + b * sigma**3 + c * sigma**5)(
                               *triples[-1])},
                 rtol=1e-9, atol=1e-12)


def check_flops(fn: Callable[[int, int, bool], int]) -> CheckResult:
    """``fn(m, n, symmetric)`` → FLOPs of one step (a multiply-add counts 2)."""
    cases = [{"m": m, "n": n, "symmetric": s}
             for m, n, s in [(4, 4, False), (4, 8, False), (8, 4, False), (4, 8, True),
                             (8, 4, True), (128, 512, True)]]
    return check("FLOP count of one step", fn, ns.step_flops, cases,
                 hint="count X·Xᵀ, A·A and B·X (a multiply-add is 2 FLOPs); with symmetry, "
                 "X·Xᵀ and A·A cost half their dense FLOPs (the diagonal not counted apart)",
                 mistakes={"a tall matrix is transposed first: the cost uses the short side m = "
                           "min(m, n)": lambda m, n, symmetric: (
                               3 * m * m * n + m**3 if symmetric else 4 * m * m * n + 2 * m**3)})
