"""Self-checks for lecture 02 (the spectral condition)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from optimal_scaling.course.checks import CheckResult, check
from optimal_scaling.measure import log_alignment_ratio
from optimal_scaling.norms import rms_to_rms


def _matrices() -> list[dict]:
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 4), (3, 7), (9, 2), (16, 16)]
    cases = [{"W": torch.randn(s, generator=g)} for s in shapes]
    cases.append({"W": torch.outer(torch.ones(5), torch.arange(1.0, 4.0))})  # rank one
    return cases


def check_rms_to_rms(fn: Callable[[torch.Tensor], float]) -> CheckResult:
    """``fn(W)`` → ‖W‖_{RMS→RMS} = √(d_in/d_out)·σ_max(W) as a float."""
    return check(
        "RMS→RMS operator norm",
        fn,
        lambda W: rms_to_rms(W).item(),
        _matrices(),
        hint="the spectral norm σ_max, rescaled for RMS-measured inputs and outputs; W has "
        "shape (d_out, d_in)",
        mistakes={
            "the factor is √(d_in/d_out), not √(d_out/d_in) (W has shape (d_out, d_in))":
                lambda W: (W.shape[0] / W.shape[1]) ** 0.5 * torch.linalg.matrix_norm(
                    W, ord=2).item(),
            "σ_max alone is the ℓ2→ℓ2 norm; RMS→RMS rescales it by √(d_in/d_out)":
                lambda W: torch.linalg.matrix_norm(W, ord=2).item(),
        },
        rtol=1e-4,
    )


def check_alignment(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> CheckResult:
    """``fn(W, z)`` → log_fan_in(‖W z‖_RMS / (‖W‖_RMS ‖z‖_RMS)) for z of shape (batch, d_in)."""
    g = torch.Generator().manual_seed(1)
    cases = []
    for d_out, d_in in [(8, 16), (32, 32), (5, 64)]:
        W = torch.randn(d_out, d_in, generator=g)
        cases.append({"W": W, "z": torch.randn(10, d_in, generator=g)})
        cases.append({"W": W, "z": W[:1].repeat(10, 1)})  # inputs aligned with a row
    return check(
        "log alignment ratio",
        fn,
        log_alignment_ratio,
        cases,
        rtol=1e-4,
        hint="entrywise RMS norms for W z, W and z; the logarithm is taken in base fan_in",
        mistakes={"the logarithm is in base fan_in (divide the natural log by log(fan_in))":
                  lambda W, z: log_alignment_ratio(W, z) * math.log(W.shape[1])},
    )
