"""Inference-aware compute-optimal scaling (Sardana et al., "Beyond Chinchilla-Optimal", 2024).

A model of N parameters trained on D tokens and then run on D_inf tokens costs

    C_total = 6·N·D + w·2·N·D_inf   FLOPs

(6 per parameter per training token, forward and backward; 2 per inference token, forward
only; w prices an inference FLOP relative to a training FLOP, 1 by default). Under a loss law
L(N, D) = E + A/N^α + B/D^β, a model of size N reaches the loss ℓ after

    D_ℓ(N) = (B / (ℓ − E − A/N^α))^{1/β}   tokens,   for N > N_min = (A/(ℓ − E))^{1/α},

and the inference-aware optimum minimizes C_total(N) = 6·N·D_ℓ(N) + 2w·N·D_inf over N > N_min.
With D_inf = 0 it is the Chinchilla compute-optimal model of loss ℓ; as D_inf grows, N* falls
toward N_min (the smallest model that can reach ℓ at all) and D*/N* grows without bound:
train a smaller model for longer.

:func:`inference_optimal` solves it for a law; :func:`cheapest_runs` answers the same question
from a table of measured runs, without a law.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

TRAIN_FLOPS_PER_TOKEN = 6  # per parameter: forward (2) and backward (4)
INFERENCE_FLOPS_PER_TOKEN = 2  # per parameter: forward only


class Law(Protocol):
    """Anything with the five constants of L(N, D) = E + A/N^α + B/D^β (a ``LossLaw``)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float


def _scalar(x: np.ndarray, name: str, who: str) -> float:
    if x.size != 1:
        raise ValueError(f"{who}: {name} must be one number, got shape {x.shape}")
    return float(x.reshape(()))


def _finite_positive(x, name: str, who: str, allow_zero: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: {name} must be numbers, got {x!r}") from None
    if np.isnan(arr).any():
        raise ValueError(f"{who}: {name} contains NaN")
    if (arr < 0).any() or (not allow_zero and (arr == 0).any()) or np.isinf(arr).any():
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{who}: {name} must be finite and {bound}, got {arr.ravel()[:4]}")
    return arr


def _check_law(law: Law, who: str) -> None:
    """A law whose loss falls with N and D: finite E, and A, B, α, β > 0 (a fit can give α ≤ 0,
    for which no model size is smallest or optimal)."""
    try:
        values = {k: float(getattr(law, k)) for k in ("E", "A", "B", "alpha", "beta")}
    except (AttributeError, TypeError, ValueError):
        raise TypeError(f"{who}: law must have numbers E, A, B, alpha, beta (a LossLaw), got "
                        f"{law!r}") from None  # fmt: skip
    bad = [k for k, v in values.items() if not math.isfinite(v) or (k != "E" and v <= 0)]
    if bad:
        raise ValueError(f"{who}: the law needs finite E and A, B, alpha, beta > 0 (a loss that "
                         f"falls with N and D); got {values}")  # fmt: skip


def smallest_model(law: Law, loss: float) -> float:
    """N_min = (A/(ℓ − E))^{1/α}: below it no amount of data reaches the loss ℓ."""
    return _smallest_model(law, loss, "smallest_model")


def _smallest_model(law: Law, loss: float, who: str) -> float:
    _check_law(law, who)
    loss = _scalar(np.asarray(loss, dtype=float), "loss", who)
    gap = loss - law.E
    if not gap > 0:
        raise ValueError(f"{who}: loss {loss} is not above the law's irreducible loss E = "
                         f"{law.E:g}: no model reaches it")  # fmt: skip
    return (law.A / gap) ** (1 / law.alpha)


def tokens_for_loss(law: Law, N, loss: float) -> np.ndarray:
    """D_ℓ(N) = (B/(ℓ − E − A/N^α))^{1/β}, the tokens a model of N parameters needs to reach ℓ;
    ``inf`` where N ≤ N_min (that size never reaches ℓ)."""
    N = _finite_positive(N, "N", "tokens_for_loss")
    n_min = _smallest_model(law, loss, "tokens_for_loss")  # also names an unreachable loss
    room = float(loss) - law.E - law.A / N**law.alpha
    ok = (N > n_min) & (room > 0)  # N ≤ N_min by itself: rounding may leave room ≈ +1e-16
    return np.where(ok, (law.B / np.where(ok, room, 1.0)) ** (1 / law.beta), np.inf)


def total_flops(N, D, inference_tokens, inference_cost: float = 1.0) -> np.ndarray:
    """C_total = 6·N·D + w·2·N·D_inf (w = ``inference_cost``)."""
    who = "total_flops"
    N, D = _finite_positive(N, "N", who), _finite_positive(D, "D", who)
    D_inf = _finite_positive(inference_tokens, "inference_tokens", who, allow_zero=True)
    w = _scalar(_finite_positive(inference_cost, "inference_cost", who), "inference_cost", who)
    return TRAIN_FLOPS_PER_TOKEN * N * D + w * INFERENCE_FLOPS_PER_TOKEN * N * D_inf


def _optimal_log_n(law: Law, loss: float, d_inf: float, w: float) -> float:
    """argmin over u = log N of log C_total(e^u): bracketed on a log grid, refined by Brent."""
    u0 = math.log(_smallest_model(law, loss, "inference_optimal"))

    def log_cost(u: float) -> float:
        N = math.exp(u)
        room = loss - law.E - law.A / N**law.alpha
        if room <= 0:
            return math.inf
        D = (law.B / room) ** (1 / law.beta)
        return math.log(TRAIN_FLOPS_PER_TOKEN * N * D + w * INFERENCE_FLOPS_PER_TOKEN * N * d_inf)

    grid = u0 + np.geomspace(1e-6, 60.0, 400)
    values = np.array([log_cost(u) for u in grid])
    i = int(np.argmin(values))
    if i == len(grid) - 1:
        raise RuntimeError(f"inference_optimal: no optimum within e^60 × N_min for loss "
                           f"{loss}: check the law")  # fmt: skip
    lo, hi = grid[max(i - 1, 0)] if i else u0, grid[i + 1]
    res = minimize_scalar(log_cost, bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-10})  # fmt: skip
    return float(res.x) if res.fun <= values[i] else float(grid[i])


def inference_optimal(law: Law, loss, inference_tokens, inference_cost: float = 1.0
                      ) -> pd.DataFrame:  # fmt: skip
    """The model that reaches ``loss`` at the least total cost, for each (loss, D_inf).

    ``loss`` and ``inference_tokens`` are scalars or 1-D arrays (every combination is solved).
    Columns: ``loss, inference_tokens, N, D, tokens_per_param, train_flops, inference_flops,
    total_flops``, and the Chinchilla model of the same loss (``chinchilla_N``,
    ``chinchilla_D``, ``chinchilla_total`` = its total cost under the same demand) with
    ``saving`` = 1 − total/chinchilla_total.
    """
    who = "inference_optimal"
    _check_law(law, who)
    w = _scalar(_finite_positive(inference_cost, "inference_cost", who), "inference_cost", who)
    try:
        losses = np.atleast_1d(np.asarray(loss, dtype=float))
    except (TypeError, ValueError):
        raise TypeError(f"{who}: loss must be a number or a 1-D list, got {loss!r}") from None
    demands = np.atleast_1d(_finite_positive(inference_tokens, "inference_tokens", who,
                                             allow_zero=True))  # fmt: skip
    if losses.ndim != 1 or demands.ndim != 1:
        raise ValueError(f"{who}: loss and inference_tokens must be scalars or 1-D arrays")
    if not losses.size or not demands.size:
        raise ValueError(f"{who}: loss and inference_tokens need at least one value each")
    rows = []
    for ell in losses:
        if not math.isfinite(ell):
            raise ValueError(f"{who}: loss must be finite, got {ell}")
        n_chin = math.exp(_optimal_log_n(law, ell, 0.0, w))
        d_chin = float(tokens_for_loss(law, n_chin, ell))
        for d_inf in demands:
            N = math.exp(_optimal_log_n(law, ell, float(d_inf), w))
            D = float(tokens_for_loss(law, N, ell))
            train = TRAIN_FLOPS_PER_TOKEN * N * D
            infer = w * INFERENCE_FLOPS_PER_TOKEN * N * d_inf
            chin = float(total_flops(n_chin, d_chin, d_inf, w))
            rows.append({"loss": ell, "inference_tokens": d_inf, "N": N, "D": D,
                         "tokens_per_param": D / N, "train_flops": train,
                         "inference_flops": infer, "total_flops": train + infer,
                         "chinchilla_N": n_chin, "chinchilla_D": d_chin,
                         "chinchilla_total": chin, "saving": 1 - (train + infer) / chin})
    return pd.DataFrame(rows)  # fmt: skip


def cheapest_runs(runs: pd.DataFrame, loss: float, inference_tokens, *, params: str = "params",
                  tokens: str = "tokens", metric: str = "val_loss",
                  inference_cost: float = 1.0) -> pd.DataFrame:  # fmt: skip
    """Measured version: among ``runs`` whose ``metric`` ≤ ``loss``, the one of least total cost.

    One row per entry of ``inference_tokens``: that run's row plus ``inference_tokens``,
    ``train_flops``, ``inference_flops``, ``total_flops``. Raises if no run reaches ``loss``.
    """
    who = "cheapest_runs"
    if not isinstance(runs, pd.DataFrame):
        raise TypeError(f"{who}: runs must be a pandas DataFrame, got {type(runs).__name__}")
    missing = [c for c in (params, tokens, metric) if c not in runs.columns]
    if missing:
        raise ValueError(f"cheapest_runs: the table has no column(s) {missing}; "
                         f"it has {list(runs.columns)}")  # fmt: skip
    for col in (params, tokens, metric):
        if not pd.api.types.is_numeric_dtype(runs[col]) or pd.api.types.is_bool_dtype(runs[col]):
            raise TypeError(f"cheapest_runs: column {col!r} must hold numbers, got dtype "
                            f"{runs[col].dtype}")  # fmt: skip
    if np.ndim(inference_tokens) > 1:
        raise ValueError(f"cheapest_runs: inference_tokens must be a number or a 1-D list, got "
                         f"shape {np.shape(inference_tokens)}")  # fmt: skip
    if isinstance(loss, bool) or not isinstance(loss, int | float | np.number) or \
            not math.isfinite(loss):  # fmt: skip
        raise ValueError(f"{who}: loss must be a finite number, got {loss!r}")
    demands = np.atleast_1d(_finite_positive(inference_tokens, "inference_tokens", who,
                                             allow_zero=True))  # fmt: skip
    if not demands.size:
        raise ValueError(f"{who}: inference_tokens needs at least one value")
    good = runs[runs[metric] <= loss]
    if good.empty:
        raise ValueError(f"cheapest_runs: no run reaches {metric} ≤ {loss} "
                         f"(the best is {runs[metric].min():.4g})")  # fmt: skip
    N = _finite_positive(good[params].to_numpy(float), f"column {params!r}", who)
    D = _finite_positive(good[tokens].to_numpy(float), f"column {tokens!r}", who)
    out = []
    w = _scalar(_finite_positive(inference_cost, "inference_cost", who), "inference_cost", who)
    for d_inf in demands:
        cost = total_flops(N, D, d_inf, w)
        i = int(np.argmin(cost))
        row = good.iloc[i].to_dict()
        row.update(inference_tokens=float(d_inf), train_flops=TRAIN_FLOPS_PER_TOKEN * N[i] * D[i],
                   inference_flops=w * INFERENCE_FLOPS_PER_TOKEN * N[i] * float(d_inf),
                   total_flops=float(cost[i]))  # fmt: skip
        out.append(row)
    return pd.DataFrame(out)
