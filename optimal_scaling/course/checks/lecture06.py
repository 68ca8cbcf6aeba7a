"""Self-checks for lecture 06 (data scaling and the critical batch size)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from optimal_scaling import batch_size as bs
from optimal_scaling.course.checks import CheckResult, check


def check_noise_terms(fn: Callable[[float, float, int, int], tuple[float, float]]) -> CheckResult:
    """``fn(g2_small, g2_big, b_small, b_big)`` → unbiased (‖G‖², tr Σ)."""
    cases = [
        {"g2_small": 3.0, "g2_big": 1.5, "b_small": 8, "b_big": 64},
        {"g2_small": 10.0, "g2_big": 2.0, "b_small": 1, "b_big": 4},
        {"g2_small": 0.52, "g2_big": 0.5, "b_small": 32, "b_big": 512},
        {"g2_small": 0.49, "g2_big": 0.5, "b_small": 8, "b_big": 64},  # noise: tr Σ < 0
    ]
    return check(
        "two-batch noise-scale estimator", fn, bs.noise_scale_terms, cases,
        hint="write E‖G_B‖² = ‖G‖² + tr Σ/B for both batch sizes and solve the two equations",
        mistakes={
            "‖G_big‖² still contains tr Σ/B_big: it is not an unbiased ‖G‖²": lambda **k: (
                k["g2_big"], bs.noise_scale_terms(**k)[1]),
            "tr Σ = (‖G_s‖² − ‖G_b‖²)/(1/B_s − 1/B_b): divide by the difference of inverse "
            "batch sizes": lambda **k: (bs.noise_scale_terms(**k)[0], k["g2_small"] - k["g2_big"]),
            "keep negative estimates: one step's tr Σ (or ‖G‖²) can come out below 0, and "
            "clipping it at 0 biases the average upwards": lambda **k: tuple(
                max(0.0, v) for v in bs.noise_scale_terms(**k)),
        },
    )  # fmt: skip


def _b_crit_reference(B: np.ndarray, S: np.ndarray) -> tuple[float, float, float]:
    fit = bs.fit_critical_batch(pd.DataFrame({"batch_size": B, "steps": S}), bootstrap=0)
    return fit.s_min, fit.e_min, fit.b_crit


def _plain_least_squares(B: np.ndarray, S: np.ndarray) -> tuple[float, float, float]:
    e_min, s_min = np.polyfit(1 / B, S, 1)
    return s_min, e_min, e_min / s_min


def check_fit_b_crit(fn: Callable[[np.ndarray, np.ndarray], tuple]) -> CheckResult:
    """``fn(B, S)`` → (S_min, E_min, B_crit) from the line S = S_min + E_min/B fitted by least
    squares on relative residuals (S − Ŝ)/S."""
    rng = np.random.default_rng(0)
    cases = []
    for s_min, b_crit, noise in [(100.0, 32.0, 0.0), (40.0, 500.0, 0.03), (1e3, 8.0, 0.05)]:
        B = np.array([2.0, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
        S = s_min * (1 + b_crit / B) * np.exp(noise * rng.standard_normal(len(B)))
        cases.append({"B": B, "S": S})
    return check(
        "B_crit from steps and batch sizes", fn, _b_crit_reference, cases,
        hint="S = S_min + E_min·(1/B) is a straight line in 1/B: fit it by least squares on "
        "relative residuals (np.polyfit with w=1/S, or np.linalg.lstsq on rows divided by S); "
        "then B_crit = E_min/S_min",
        mistakes={
            "B_crit = E_min/S_min (examples over steps), not S_min/E_min": lambda B, S: (
                lambda s, e, b: (s, e, 1 / b))(*_b_crit_reference(B, S)),
            "weigh each residual by 1/S (relative residuals): plain least squares lets the "
            "longest runs decide": _plain_least_squares,
        },
        rtol=1e-4,
    )  # fmt: skip


def _min_max_falling_fit(y: np.ndarray) -> np.ndarray:
    """The least-squares non-increasing fit by its closed form (Robertson, Wright & Dykstra):
    f_i = min over j ≤ i of max over k ≥ i of mean(y[j..k]). O(n³): a reference, not a tool."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    return np.array([min(max(y[j:k + 1].mean() for k in range(i, n)) for j in range(i + 1))
                     for i in range(n)])  # fmt: skip


def check_falling_fit(fn: Callable[[np.ndarray], np.ndarray]) -> CheckResult:
    """``fn(y)`` → the least-squares non-increasing fit to y (isotonic regression)."""
    rng = np.random.default_rng(1)
    steps = np.arange(1.0, 41.0)
    cases = [
        {"y": 1 + 4 / np.sqrt(steps) + 0.3 * rng.standard_normal(40)},  # a noisy loss curve
        {"y": np.array([3.0, 2.0, 2.5, 1.0])},  # one violator pair
        {"y": np.array([1.0, 2.0, 3.0, 4.0])},  # rising throughout: one block, the mean
        {"y": np.array([5.0, 4.0, 4.0, 1.0])},  # already non-increasing: itself
        {"y": np.array([2.0, 1.0, 4.0, 0.5, 0.6, 0.2])},  # [1, 4] pooled must pool with 2
    ]
    return check(
        "the falling (non-increasing least-squares) fit", fn, _min_max_falling_fit, cases,
        hint="scan left to right keeping a stack of blocks (sum, count); push each value as a "
        "block, and while the block before has a smaller mean than the last, merge the two; "
        "then repeat each block's mean over its length",
        mistakes={
            "that is the running minimum, not a least-squares fit: it follows every dip of the "
            "noise down": lambda y: np.minimum.accumulate(y),
            "merge with the block before as long as it violates: a merged block can violate "
            "the one before it too (pool backwards, not just once)": lambda y: _pool_once(y),
        },
        rtol=1e-9,
    )  # fmt: skip


def _pool_once(y: np.ndarray) -> np.ndarray:
    """A typical mistake: merge each new value with the block before at most once."""
    blocks: list[list[float]] = []
    for v in np.asarray(y, dtype=float):
        if blocks and np.mean(blocks[-1]) < v:
            blocks[-1].append(v)
        else:
            blocks.append([v])
    return np.concatenate([[np.mean(b)] * len(b) for b in blocks])


def check_eta_surge(fn: Callable) -> CheckResult:
    """``fn(B, eta_crit, b_crit)`` → Adam's η*(B) = η_crit/(√(B/B_crit) + √(B_crit/B))."""
    cases = [{"B": np.array([1.0, 8, 64, 512, 4096]), "eta_crit": 0.01, "b_crit": 64.0},
             {"B": np.array([3.0, 30, 300]), "eta_crit": 2e-3, "b_crit": 1000.0}]  # fmt: skip
    return check(
        "Adam's surge η*(B)", fn, bs.eta_surge, cases,
        hint="η_crit/(√(B/B_crit) + √(B_crit/B)); it works elementwise on an array of B",
        mistakes={
            "that is the paper's η_max/[½(√·+√·)] with η_crit put in for η_max; the lecture's "
            "form has no ½ (η_crit = 2·η_max)": lambda **k: 2 * bs.eta_surge(**k),
            "that is SGD's η_crit/(1 + B_crit/B), which saturates instead of peaking":
                lambda **k: bs.eta_sgd(**k),
        },
    )  # fmt: skip


def _peak_reference(eta_crit: float, b_crit: float) -> tuple[float, float]:
    return b_crit, eta_crit / 2


def check_surge_peak(fn: Callable[[float, float], tuple[float, float]]) -> CheckResult:
    """``fn(eta_crit, b_crit)`` → (B at the peak, η* at the peak)."""
    cases = [{"eta_crit": 0.01, "b_crit": 64.0}, {"eta_crit": 3e-4, "b_crit": 4096.0}]
    return check(
        "the surge's peak", fn, _peak_reference, cases,
        hint="with r = B/B_crit the denominator √r + 1/√r is smallest where r = 1",
        mistakes={"at B = B_crit the denominator is √1 + √1 = 2": lambda eta_crit, b_crit: (
            b_crit, eta_crit)},
        rtol=1e-4,
    )  # fmt: skip
