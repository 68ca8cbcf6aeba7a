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
                 hint="update the direction d (α weighs the new gradient), then move x along the "
                 "LMO of the norm, scaled by γ·ρ (constrained: a convex combination with x)",
                 mistakes={
                     "the LMO is minus the duality map (it minimizes ⟨d, s⟩)": lambda **k: (
                         lambda x, d: (2 * k["x"] - x if not k["constrained"]
                                       else 2 * (1 - k["lr"]) * k["x"] - x, d))(
                         *_scion_reference(**k)),
                     "α weighs the new gradient: d ← (1−α)·d + α·g": lambda **k:
                         _scion_reference(**dict(k, alpha=1 - k["alpha"])),
                 },
                 rtol=1e-6, atol=1e-9)


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
                 hint="ask what each layer's input and output are (one-hot tokens, RMS-sized "
                 "vectors, logits) and pick the operator norm between them",
                 mistakes={"the norm-transfer setting measures the readout in RMS→∞ (rownorm); "
                           "sign is the other Scion preset": lambda role, ndim: (
                               "sign" if role == "output" and ndim == 2
                               else _choose_reference(role, ndim))})


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
                 hint="measure W_after and the update W_after − W_before in the same operator "
                 "norm, the one whose LMO the layer uses",
                 mistakes={"the RMS→RMS norm rescales σ_max by √(d_in/d_out)": lambda **k: (
                     (torch.linalg.matrix_norm(k["W_after"], ord=2).item(),
                      torch.linalg.matrix_norm(k["W_after"] - k["W_before"], ord=2).item())
                     if k["norm"] == "spectral" else _track_reference(**k))},
                 rtol=1e-6, atol=1e-9)
