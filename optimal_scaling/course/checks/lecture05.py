"""Self-checks for lecture 05 (Muon and Scion)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from optimal_scaling import norms
from optimal_scaling.course.checks import CheckResult, check
from optimal_scaling.duality import get_map
from optimal_scaling.optim.groups import PRESETS

_NORM_OF_LMO = {"colnorm": "l1->rms", "spectral": "rms->rms", "rownorm": "rms->inf"}


def _scion_reference(x, d, g, lr, radius, alpha, norm, constrained):
    d = (1 - alpha) * d + alpha * g
    step = -get_map(norm).dualize(d)  # lmo(d) = argmin_{‖s‖≤1} ⟨d, s⟩
    x = (1 - lr) * x + lr * radius * step if constrained else x + lr * radius * step
    return x, d


def check_scion_step(fn: Callable) -> CheckResult:
    """``fn(x, d, g, lr, radius, alpha, norm, constrained)`` → (new x, new d)."""
    gen = torch.Generator().manual_seed(0)
    cases = []
    for shape, norm, constrained, alpha in [((6, 4), "spectral", False, 1.0),
                                            ((6, 4), "spectral", True, 0.1),
                                            ((5, 3), "colnorm", False, 0.5),
                                            ((3, 8), "rownorm", True, 0.2)]:
        x, d, g = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3))
        cases.append({"x": x, "d": d, "g": g, "lr": 0.1, "radius": 2.0, "alpha": alpha,
                      "norm": norm, "constrained": constrained})
    return check("one Scion step", fn, _scion_reference, cases,
                 hint="d ← (1−α)d + αg; lmo(d) = −duality.get_map(norm).dualize(d); "
                 "x ← x + γρ·lmo(d), or (1−γ)x + γρ·lmo(d) when constrained", rtol=1e-6,
                 atol=1e-9)


def _choose_reference(role: str, ndim: int) -> str:
    if ndim == 1:
        return "bias_rms"
    if role == "hidden" and ndim == 4:
        return "conv2d_spectral"
    return PRESETS["colnorm-spectral-rownorm"][role]


def check_choose_norm(fn: Callable[[str, int], str]) -> CheckResult:
    """``fn(role, ndim)`` → the norm (duality-map name) of the norm-transfer setting."""
    cases = [{"role": r, "ndim": n} for r, n in [("input", 2), ("hidden", 2), ("output", 2),
                                                  ("gain", 1), ("bias", 1), ("hidden", 4)]]
    return check("the norm of each layer", fn, _choose_reference, cases,
                 hint="embedding (one-hot in) → colnorm; hidden → spectral (conv: "
                 "conv2d_spectral); readout → rownorm (RMS→∞); vectors → bias_rms")


def _track_reference(W_before, W_after, norm):
    name = _NORM_OF_LMO[norm]
    return (norms.operator_norm(W_after, name).item(),
            norms.operator_norm(W_after - W_before, name).item())


def check_track(fn: Callable) -> CheckResult:
    """``fn(W_before, W_after, norm)`` → (‖W_after‖, ‖W_after − W_before‖) in the LMO's norm."""
    gen = torch.Generator().manual_seed(1)
    cases = []
    for shape, norm in [((8, 4), "colnorm"), ((6, 6), "spectral"), ((4, 9), "spectral"),
                        ((3, 16), "rownorm")]:
        W = torch.randn(shape, generator=gen, dtype=torch.float64)
        cases.append({"W_before": W, "W_after": W + 0.1 * torch.randn(shape, generator=gen,
                                                                      dtype=torch.float64),
                      "norm": norm})
    return check("norm tracking", fn, _track_reference, cases,
                 hint="colnorm: max column RMS; spectral: √(d_in/d_out)·σ_max; rownorm: "
                 "max_i √d_in·‖row_i‖₂; the update is W_after − W_before", rtol=1e-6, atol=1e-9)
