"""Self-checks for lecture 08 (scaling laws)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optimal_scaling.compute_optimal import huber
from optimal_scaling.course.checks import CheckResult, check
from optimal_scaling.scaling_laws import LossLaw


def _objective(params, N, D, loss, delta=1e-3):
    E, A, B, alpha, beta = params
    pred = np.log(E + A / N**alpha + B / D**beta)
    return float(huber(pred - np.log(loss), delta).sum())


def _cases_objective():
    rng = np.random.default_rng(0)
    N = np.geomspace(1e6, 1e9, 12)
    D = np.geomspace(1e8, 1e11, 12)[rng.permutation(12)]
    loss = 1.7 + 400 / N**0.34 + 400 / D**0.28
    cases = []
    for params, noise in (((1.7, 400.0, 400.0, 0.34, 0.28), 0.0002),  # |r| < δ: the square
                          ((1.69, 406.4, 410.7, 0.34, 0.28), 0.0005),
                          ((1.5, 300.0, 900.0, 0.3, 0.35), 0.01),
                          ((2.0, 50.0, 50.0, 0.2, 0.2), 0.05)):  # fmt: skip
        cases.append({"params": params, "N": N, "D": D,
                      "loss": loss * np.exp(noise * rng.standard_normal(12))})  # fmt: skip
    return cases


def check_huber_objective(fn: Callable) -> CheckResult:
    """``fn(params, N, D, loss)`` → Σ_i Huber_δ(log L̂_i − log L_i), δ = 10⁻³, params =
    (E, A, B, alpha, beta)."""
    return check(
        "the approach-3 objective", fn, _objective, _cases_objective(),
        hint="residual r = log(E + A/N^α + B/D^β) − log L; Huber_δ(r) = r²/2 if |r| ≤ δ else "
        "δ(|r| − δ/2); sum over the points",
        mistakes={
            "the residuals are in log space: log L̂ − log L, not L̂ − L": lambda params, N, D,
                loss: float(huber((params[0] + params[1] / N**params[3]
                                   + params[2] / D**params[4]) - loss).sum()),
            "sum the Huber terms over the points (the paper's objective), do not average":
                lambda **k: _objective(**k) / len(k["N"]),
            "near 0 the Huber loss is r²/2, with the ½ (so that the two pieces join smoothly at "
            "δ)": lambda params, N, D, loss: float(_forgot_half(np.log(
                params[0] + params[1] / N**params[3] + params[2] / D**params[4]) - np.log(loss))),
            "beyond δ the Huber loss is linear: δ·(|r| − δ/2)": lambda params, N, D, loss:
                float((0.5 * (np.log(params[0] + params[1] / N**params[3] + params[2]
                                      / D**params[4]) - np.log(loss)) ** 2).sum()),
        },
        rtol=1e-9, atol=1e-15,
    )  # fmt: skip


def _forgot_half(r: np.ndarray, delta: float = 1e-3) -> np.ndarray:
    r = np.abs(r)
    return np.where(r <= delta, r**2, delta * (r - delta / 2)).sum()


def _vertex(N, loss):
    p2, p1, _ = np.polyfit(np.log(N), loss, 2)
    return float(np.exp(-p1 / (2 * p2)))


def check_isoflop_minimum(fn: Callable) -> CheckResult:
    """``fn(N, loss)`` → N_opt = exp(u*) of the parabola L ≈ p₂u² + p₁u + p₀ in u = log N."""
    rng = np.random.default_rng(1)
    cases = []
    for n_star, curv, k in ((3e7, 0.05, 7), (2e9, 0.12, 9), (5e5, 0.03, 5)):
        N = n_star * np.geomspace(1 / 20, 20, k) * np.exp(0.2 * rng.standard_normal(k))
        loss = 2.5 + curv * np.log(N / n_star) ** 2 + 0.002 * rng.standard_normal(k)
        cases.append({"N": N, "loss": loss})
    return check(
        "the IsoFLOP parabola minimum", fn, _vertex, cases,
        hint="fit the parabola in u = log N (np.polyfit(np.log(N), loss, 2) gives p₂, p₁, p₀); "
        "the minimum is at u* = −p₁/(2p₂); return N = e^{u*}",
        mistakes={
            "fit in log N, not N (IsoFLOP valleys are parabolas on a log axis)": lambda N,
                loss: float(-np.polyfit(N, loss, 2)[1] / (2 * np.polyfit(N, loss, 2)[0])),
            "return N_opt = e^{u*}, not u* itself": lambda N, loss: float(np.log(_vertex(N,
                                                                                      loss))),
            "the minimum of a parabola is the vertex, not the lowest measured point":
                lambda N, loss: float(N[np.argmin(loss)]),
        },
        rtol=1e-6,
    )  # fmt: skip


def _n_opt(E, A, B, alpha, beta, C):
    return float(LossLaw("x", E, A, B, alpha, beta, "check").compute_optimal(C)[0])


def check_compute_optimal_n(fn: Callable) -> CheckResult:
    """``fn(E, A, B, alpha, beta, C)`` → N_opt(C) under C = 6ND for L = E + A/N^α + B/D^β."""
    cases = [{"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28, "C": 5.76e23},
             {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366, "C": 1e21},
             {"E": 1.7, "A": 30.0, "B": 900.0, "alpha": 0.5, "beta": 0.3, "C": 3e14}]  # fmt: skip
    return check(
        "compute-optimal N", fn, _n_opt, cases,
        hint="put D = C/(6N) into L and set dL/dN = 0: αA/N^α = βB/D^β, which gives "
        "N_opt = G·(C/6)^{β/(α+β)} with G = (αA/(βB))^{1/(α+β)}",
        mistakes={
            "the exponent of C/6 is a = β/(α+β) (not α/(α+β), which is D's)": lambda E, A, B,
                alpha, beta, C: float((alpha * A / (beta * B)) ** (1 / (alpha + beta))
                                      * (C / 6) ** (alpha / (alpha + beta))),
            "C = 6ND: use C/6, not C": lambda E, A, B, alpha, beta, C: float(
                (alpha * A / (beta * B)) ** (1 / (alpha + beta)) * C ** (beta / (alpha + beta))),
        },
        rtol=1e-3,  # a numerical minimizer at its default tolerance passes; mistakes are ≥ 1.3× off
    )  # fmt: skip
