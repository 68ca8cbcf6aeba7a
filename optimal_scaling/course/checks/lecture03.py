"""Self-checks for lecture 03 (modular duality)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from optimal_scaling.course.checks import CheckResult, check
from optimal_scaling.duality import ColNorm, Spectral, steepest_descent_step


def _gradients(shapes) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"G": torch.randn(s, generator=g)} for s in shapes]


def _with_zero_column() -> dict:
    G = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    G[:, 2] = 0.0  # a token that never occurred: its column of the gradient is zero
    return {"G": G}


def check_colnorm(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """``fn(G)`` → ColNorm's duality map: each column divided by its RMS."""
    return check("ColNorm duality map", fn, ColNorm().dualize,
                 [*_gradients([(4, 3), (16, 8), (1, 5), (32, 2)]), _with_zero_column()],
                 hint="divide each column by its own RMS (over its d_out entries); a zero "
                 "column stays zero (torch.where(rms > 0, G / rms, 0))",
                 mistakes={
                     "divide by each column's RMS, ‖col‖₂/√d_out, not by its ℓ2 norm":
                         lambda G: G / G.norm(dim=0, keepdim=True),
                     "columns are dim 0 of a (d_out, d_in) matrix: this normalized the rows":
                         lambda G: G / (G.norm(dim=1, keepdim=True) / G.shape[1] ** 0.5),
                 },
                 rtol=1e-4, atol=1e-5)


def check_spectral_step(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """``fn(G, sharpness)`` → −(‖G‖†/λ)·√(d_out/d_in)·U Vᵀ under the RMS→RMS norm."""
    cases = [dict(case, sharpness=lam) for case, lam in
             zip(_gradients([(4, 4), (3, 8), (8, 3)]), [1.0, 2.0, 0.5], strict=True)]
    return check("spectral steepest-descent step", fn,
                 lambda G, sharpness: steepest_descent_step(G, Spectral(), sharpness), cases,
                 hint="the step is −(‖G‖†/λ)·dualize(G); both the dual norm and the duality "
                 "map of the RMS→RMS norm come from G's SVD",
                 mistakes={
                     "a descent step points against the gradient: it needs the minus sign":
                         lambda G, sharpness: -steepest_descent_step(G, Spectral(), sharpness),
                     "the step's length is ‖G‖†/λ: dualize(G) alone has norm 1":
                         lambda G, sharpness: -Spectral().dualize(G),
                 },
                 rtol=1e-4, atol=1e-5)
