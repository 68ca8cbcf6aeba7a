"""Self-checks for lecture 03 (modular duality)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from optimal_scaling.course.checks import CheckResult, check
from optimal_scaling.duality import ColNorm, Spectral, steepest_descent_step


def _gradients(shapes) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [{"G": torch.randn(s, generator=g)} for s in shapes]


def check_colnorm(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """``fn(G)`` → ColNorm's duality map: each column divided by its RMS."""
    return check("ColNorm duality map", fn, ColNorm().dualize,
                 _gradients([(4, 3), (16, 8), (1, 5), (32, 2)]),
                 hint="col_j / ‖col_j‖_RMS with ‖v‖_RMS = ‖v‖₂/√d_out; use dim=0 for columns",
                 rtol=1e-4, atol=1e-5)


def check_spectral_step(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> CheckResult:
    """``fn(G, sharpness)`` → −(‖G‖†/λ)·√(d_out/d_in)·U Vᵀ under the RMS→RMS norm."""
    cases = [dict(case, sharpness=lam) for case, lam in
             zip(_gradients([(4, 4), (3, 8), (8, 3)]), [1.0, 2.0, 0.5], strict=True)]
    return check("spectral steepest-descent step", fn,
                 lambda G, sharpness: steepest_descent_step(G, Spectral(), sharpness), cases,
                 hint="‖G‖† = √(d_out/d_in)·(sum of singular values); dualize = "
                 "√(d_out/d_in)·U Vᵀ from torch.linalg.svd(G, full_matrices=False)",
                 rtol=1e-4, atol=1e-5)
