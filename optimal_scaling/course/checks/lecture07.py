"""Self-checks for lecture 07 (norm transfer)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from optimal_scaling import norm_transfer as nt
from optimal_scaling import norms
from optimal_scaling.course.checks import CheckResult, check


def check_rms_to_inf(fn: Callable[[torch.Tensor], float]) -> CheckResult:
    """``fn(W)`` → ‖W‖_{RMS→∞} = max_i √d_in·‖row_i‖₂ for W of shape (d_out, d_in)."""
    gen = torch.Generator().manual_seed(0)
    cases = [{"W": torch.randn(shape, generator=gen, dtype=torch.float64)}
             for shape in [(5, 3), (3, 16), (64, 64), (1, 7)]]  # fmt: skip
    return check(
        "the RMS→∞ norm", fn, lambda W: norms.operator_norm(W, "rms->inf").item(), cases,
        hint="an RMS-sized input x (‖x‖₂ = √d_in) gives logit i = ⟨row_i, x⟩ ≤ ‖row_i‖₂·√d_in; "
        "take the largest over rows",
        mistakes={
            "multiply each row's ℓ2 norm by √d_in (an RMS-unit input has ℓ2 norm √d_in)":
                lambda W: W.norm(dim=1).max().item(),
            "rows are dim 1 of a (d_out, d_in) matrix: this took the columns": lambda W: (
                W.shape[1] ** 0.5 * W.norm(dim=0).max()).item(),
        },
        rtol=1e-6,
    )  # fmt: skip


def _fixed_reference(x, loss, anchor):
    return nt.optimal_norm(x, loss, anchor=anchor, points=7)["fixed"]


def check_optimal_norm(fn: Callable) -> CheckResult:
    """``fn(x, loss, anchor)`` → the vertex of the weighted, anchored parabola (the "fixed"
    variant of :func:`optimal_scaling.norm_transfer.optimal_norm`)."""
    rng = np.random.default_rng(0)
    cases = []
    for center, curv, n in ((6.8, 0.05, 11), (7.3, 0.2, 9), (5.5, 0.08, 13)):
        x = rng.uniform(center - 3, center + 3, n)  # in no order, as a table's rows come
        loss = 2.0 + curv * (x - center) ** 2 + 0.01 * (x - center) ** 3
        loss = loss + 0.003 * rng.standard_normal(n)
        cases.append({"x": x, "loss": loss, "anchor": (3.0, 2.0 + curv * (3.0 - center) ** 2)})
    return check(
        "the optimal norm of one slice", fn, _fixed_reference, cases,
        hint="sort by x; take the 7 points nearest (in rank) the lowest loss, weights "
        "1/(1 + rank distance); fit L − L₀ = a(x − x₀)² + b(x − x₀) by weighted least squares; "
        "the vertex is x₀ − b/2a",
        mistakes={
            "weight the points: w = 1/(1 + |i − i_min|), i the rank of a point": lambda x,
            loss, anchor: _unweighted(x, loss, anchor),
            "the intercept is fixed: the parabola passes through (x₀, L₀)": lambda **k:
                nt.optimal_norm(k["x"], k["loss"], points=7)["free"],
            "sort the points by x first: 'nearest in rank' means nearest in the order of x":
                lambda x, loss, anchor: _unweighted(x, loss, anchor, weighted=True, sort=False),
        },
        rtol=1e-6,
    )  # fmt: skip


def _unweighted(x, loss, anchor, weighted: bool = False, sort: bool = True):
    """The anchored parabola's vertex, without the weights (or, with ``weighted`` and not
    ``sort``, with them but on the points in the order given)."""
    x, loss = np.asarray(x), np.asarray(loss)
    if sort:
        order = np.argsort(x)
        x, loss = x[order], loss[order]
    k = int(np.argmin(loss))
    near = np.argsort(np.abs(np.arange(len(x)) - k), kind="stable")[:7]
    w = np.sqrt(1 / (1 + np.abs(near - k))) if weighted else np.ones(len(near))
    x0, l0 = anchor
    A = np.column_stack([(x[near] - x0) ** 2, x[near] - x0])
    a, b = np.linalg.lstsq(A * w[:, None], (loss[near] - l0) * w, rcond=None)[0]
    return x0 - b / (2 * a)


def _power_law_reference(D, y, resamples, log: bool = True):
    logd, logy = (np.log(D), np.log(y)) if log else (D, y)  # log=False: a typical mistake
    slope = np.polyfit(logd, logy, 1)[0]
    draws = [np.polyfit(logd[i], logy[i], 1)[0] for i in resamples]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(slope), float(lo), float(hi)


def check_power_law(fn: Callable) -> CheckResult:
    """``fn(D, y, resamples)`` → (exponent, low, high): y ∝ D^exponent by least squares in
    logs, and the 95% percentile interval over refits on the given resampled index sets."""
    rng = np.random.default_rng(1)
    cases = []
    for a, noise in ((-0.28, 0.05), (0.45, 0.1)):
        D = 2.0 ** np.arange(16, 24)
        y = 3.0 * D**a * np.exp(noise * rng.standard_normal(len(D)))
        resamples = [rng.integers(0, len(D), len(D)) for _ in range(200)]
        resamples = [i for i in resamples if len(np.unique(i)) > 1]
        cases.append({"D": D, "y": y, "resamples": resamples})
    return check(
        "a power law with its bootstrap interval", fn, _power_law_reference, cases,
        hint="np.polyfit(np.log(D), np.log(y), 1)[0] is the exponent; refit it on D[i], y[i] "
        "for every index set i, then np.percentile(exponents, [2.5, 97.5])",
        mistakes={"fit in logs: a power law is a straight line in (log D, log y)":
                  lambda D, y, resamples: _power_law_reference(D, y, resamples, log=False)},
        rtol=1e-6, atol=1e-9,
    )  # fmt: skip
