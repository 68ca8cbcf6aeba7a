r"""Compute-optimal scaling from your own runs: Chinchilla's three approaches, with error bars.

Given training runs of models with N parameters on D tokens (compute C ≈ 6·N·D), each
approach estimates how to split a budget C between N and D, N_opt ∝ C^a, D_opt ∝ C^b:

1. :func:`envelope_fit` — the envelope of training curves: at each compute C, the run whose
   curve is lowest there gives N_opt(C); power laws in C are fitted to those points.
2. :func:`isoflop_fit` — IsoFLOP profiles: at fixed C, the final loss against log N is a
   valley; a parabola L ≈ p₂·u² + p₁·u + p₀ in u = log N has its minimum at u* = −p₁/(2p₂),
   so N_opt(C) = e^{u*}; power laws in C again.
3. :func:`fit_parametric` — fit L(N, D) = E + A/N^α + B/D^β to every (N, D, L) point as
   Hoffmann et al. did: write it as a log-sum-exp,

       log L̂ = LSE(a − α·log N, b − β·log D, e),   A = e^a, B = e^b, E = e^e,

   minimize Σ_i Huber_δ(log L̂_i − log L_i) with δ = 10⁻³ by L-BFGS from a grid of starts
   (α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25}: 4 500 of them), and
   keep the best. Then a = β/(α+β) and b = α/(α+β) (:class:`~optimal_scaling.scaling_laws.LossLaw`).

All starts of approach 3 run at once (:func:`optimal_scaling.fitting.lbfgs`: one L-BFGS per
row, vectorized over rows), and a bootstrap refits every resample in the same batched call,
from the best distinct minima of the full fit. Intervals are percentile intervals of the
bootstrap draws, for the parameters and for what they imply (:func:`compute_optimal_draws`:
N*(C), D*(C) and tokens per parameter).

:func:`extrapolation_check` fits on the smaller runs and predicts the largest;
:func:`residuals` gives the per-point log residuals; :func:`checklist` writes a fit's report
along the "(Mis)Fitting" survey's reproducibility checklist.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from optimal_scaling._validate import check_int
from optimal_scaling.fitting import (
    check_bootstrap,
    fit_power_law,
    lbfgs,
    percentile_intervals,
    positive_values,
    require_columns,
)
from optimal_scaling.scaling_laws import LossLaw

__all__ = [
    "PARAMETERS",
    "compute_optimal_draws",
    "checklist",
    "envelope_fit",
    "extrapolation_check",
    "fit_parametric",
    "huber",
    "isoflop_fit",
    "parametric_objective",
    "residuals",
    "start_grid",
]

#: The keys of a parametric fit, in the order of the optimizer's vector (E, A, B as logs).
PARAMETERS = ("E", "A", "B", "alpha", "beta")


# --------------------------------------------------------------------------- approach 3
def huber(r: np.ndarray, delta: float = 1e-3) -> np.ndarray:
    """Huber_δ(r) = r²/2 for |r| ≤ δ, δ·(|r| − δ/2) beyond: quadratic near 0, linear after
    (δ > 0)."""
    if isinstance(delta, bool) or not isinstance(delta, int | float | np.number) or \
            not 0 < delta < np.inf:  # fmt: skip
        raise ValueError(f"huber: delta must be a number > 0, got {delta!r}")
    r = np.abs(np.asarray(r, dtype=float))
    a = np.minimum(r, delta)  # a·(|r| − a/2) is both branches at once, and never overflows
    return a * (r - 0.5 * a)


def start_grid(
    alpha: Sequence[float] = (0, 0.5, 1, 1.5, 2),
    beta: Sequence[float] = (0, 0.5, 1, 1.5, 2),
    e: Sequence[float] = (-1, -0.5, 0, 0.5, 1),
    a: Sequence[float] = (0, 5, 10, 15, 20, 25),
    b: Sequence[float] = (0, 5, 10, 15, 20, 25),
) -> np.ndarray:
    """Hoffmann et al.'s grid of initial values as rows (e, a, b, α, β): 4 500 by default."""
    grids = np.meshgrid(e, a, b, alpha, beta, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1).astype(float)


def _is_paper_grid(starts: np.ndarray) -> bool:
    """Whether ``starts`` holds exactly the rows of :func:`start_grid` (in any order)."""
    grid = start_grid()
    return starts.shape == grid.shape and np.array_equal(np.unique(starts, axis=0),
                                                         np.unique(grid, axis=0))


def parametric_objective(N, D, loss, delta: float = 1e-3,
                         weights: np.ndarray | None = None) -> Callable:  # fmt: skip
    """f(x) = Σ_i w_i·Huber_δ(LSE(a − α log N_i, b − β log D_i, e) − log L_i) and its gradient.

    Returns ``fun(x, rows) -> (f, grad)`` for :func:`~optimal_scaling.fitting.lbfgs`, x the
    rows (e, a, b, α, β). ``weights`` is (n,) or (rows, n) (one weighting per problem, e.g.
    bootstrap counts); None weighs every point 1 (the paper's sum).
    """
    logN, logD, logL = (np.log(np.asarray(v, dtype=float)) for v in (N, D, loss))

    def fun(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, a, b, al, be = (x[:, i : i + 1] for i in range(5))
        u = a - al * logN  # log(A/N^α), shape (k, n)
        v = b - be * logD  # log(B/D^β)
        w = np.broadcast_to(e, u.shape)  # log E
        m = np.maximum(np.maximum(u, v), w)
        pu, pv, pw = np.exp(u - m), np.exp(v - m), np.exp(w - m)
        total = pu + pv + pw
        r = m + np.log(total) - logL  # log L̂ − log L
        W = 1.0 if weights is None else (weights if weights.ndim == 1 else weights[rows])
        ar = np.abs(r)
        clipped = np.minimum(ar, delta)
        h = clipped * (ar - 0.5 * clipped)  # Huber_δ(r), both branches at once
        hp = W * np.clip(r, -delta, delta) / total  # dHuber/dr · (softmax normalizer)
        gu, gv = hp * pu, hp * pv
        grad = np.stack([(hp * pw).sum(1), gu.sum(1), gv.sum(1),
                         -(gu * logN).sum(1), -(gv * logD).sum(1)], axis=1)  # fmt: skip
        return (W * h).sum(1), grad

    return fun


def _points(N, D, loss, who: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for v in (N, D, loss):
        x = np.asarray(v, dtype=float) if not isinstance(v, pd.Series) else \
            pd.to_numeric(v, errors="coerce").to_numpy(dtype=float)  # fmt: skip
        arrays.append(x)
    shapes = {x.shape for x in arrays}
    if len(shapes) > 1 and any(x.ndim > 1 for x in arrays):  # flattening would mispair them
        raise ValueError(f"{who}: N, D and loss must have one shape (or be 1-D), got "
                         f"{[x.shape for x in arrays]}")  # fmt: skip
    arrays = [x.ravel() for x in arrays]  # same shape: a grid of runs, paired elementwise
    if len({len(x) for x in arrays}) != 1:
        raise ValueError(f"{who}: N, D and loss must have the same length, got "
                         f"{[len(x) for x in arrays]}")  # fmt: skip
    for name, x in zip(("N", "D", "loss"), arrays, strict=True):
        bad = ~np.isfinite(x) | (x <= 0)
        if bad.any():
            raise ValueError(f"{who}: {name} must be positive and finite (logs are taken); "
                             f"{int(bad.sum())} of {len(x)} values are not, e.g. "
                             f"{x[bad][:3].tolist()}")  # fmt: skip
    if len(arrays[0]) < 6:
        raise ValueError(f"{who}: {len(arrays[0])} points cannot pin down 5 parameters with a "
                         "residual; need at least 6")  # fmt: skip
    if len(np.unique(arrays[0])) < 2 or len(np.unique(arrays[1])) < 2:
        raise ValueError(f"{who}: N and D must each take at least two values (α and β are "
                         "not identified otherwise)")  # fmt: skip
    if len(np.unique(arrays[2])) < 2:
        raise ValueError(f"{who}: the loss is {arrays[2][0]:g} at every point: nothing falls "
                         "with N or D, so A, B, α and β are not identified")  # fmt: skip
    return arrays[0], arrays[1], arrays[2]


def _as_params(x: np.ndarray) -> dict[str, float]:
    e, a, b, al, be = (float(v) for v in np.clip(x, -700, 700))  # e^700 is still a float
    return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)),
            "alpha": al, "beta": be}  # fmt: skip


def _distinct(x: np.ndarray, f: np.ndarray, k: int) -> np.ndarray:
    """Up to k rows of x with the lowest f, no two within 1e-3 of each other (max-abs)."""
    keep: list[int] = []
    for i in np.argsort(f):
        if not np.isfinite(f[i]):
            break
        if all(np.max(np.abs(x[i] - x[j])) > 1e-3 for j in keep):
            keep.append(int(i))
        if len(keep) == k:
            break
    return x[keep]


def fit_parametric(
    N,
    D,
    loss,
    delta: float = 1e-3,
    starts: np.ndarray | None = None,
    objective: str = "sum",
    bootstrap: int = 0,
    bootstrap_starts: int = 16,
    level: float = 0.95,
    seed: int = 0,
    max_iter: int = 300,
    memory: int = 6,
) -> dict:
    """Approach 3: fit L(N, D) = E + A/N^α + B/D^β (module docstring) and return a dict.

    Keys: ``E``, ``A``, ``B``, ``alpha``, ``beta``; ``a``, ``b`` (compute-optimal exponents);
    ``law`` (a :class:`~optimal_scaling.scaling_laws.LossLaw`); ``objective`` (its value at
    the fit), ``starts`` and ``converged`` (how many starts, how many stopped by a
    tolerance), ``hits`` (starts that ended within 10⁻⁶ of the best objective, relative),
    ``delta``, ``objective_kind`` ("sum" or "mean") and ``paper_grid`` (the starts were the
    paper's 4 500-point grid, :func:`start_grid`, in any order), ``seconds``
    (wall time of the fit, bootstrap excluded); with ``bootstrap`` > 0 also ``draws`` (a
    DataFrame, one refit per resample of the points with replacement, started from the
    full fit's ``bootstrap_starts`` best distinct minima) and ``intervals`` (percentile
    intervals at ``level`` for the parameters, a and b).

    ``objective="mean"`` divides the Huber sum by the number of points: the same minimum.
    This L-BFGS stops on a relative decrease test or an absolute gradient test (max |g| ≤
    gtol = 1e-10, tiny next to either objective's gradients), so here both give the same fit;
    an optimizer with absolute tolerances on the decrease, as scipy's L-BFGS-B defaults are
    for small objectives, can stop earlier on the mean (lecture 08 shows both).
    """
    who = "fit_parametric"
    N, D, loss = _points(N, D, loss, who)
    if objective not in ("sum", "mean"):
        raise ValueError(f"{who}: objective must be 'sum' or 'mean', got {objective!r}")
    bootstrap = check_bootstrap(bootstrap, level, who, seed)
    if isinstance(delta, bool) or not isinstance(delta, int | float | np.number) or \
            not 0 < delta < np.inf:  # fmt: skip
        raise ValueError(f"{who}: delta (the Huber threshold) must be a number > 0, got "
                         f"{delta!r}")  # fmt: skip
    bootstrap_starts = check_int(who, "bootstrap_starts", bootstrap_starts, low=1)
    x0 = start_grid() if starts is None else np.asarray(starts, dtype=float)
    if x0.ndim != 2 or x0.shape[1] != 5 or len(x0) == 0 or not np.isfinite(x0).all():
        raise ValueError(f"{who}: starts must be finite rows (e, a, b, alpha, beta), got shape "
                         f"{x0.shape}")  # fmt: skip
    n = len(N)
    scale = 1.0 / n if objective == "mean" else 1.0
    tick = time.perf_counter()
    fun = parametric_objective(N, D, loss, delta, weights=np.full(n, scale))
    res = lbfgs(fun, x0, max_iter=max_iter, memory=memory)
    best = int(np.nanargmin(np.where(np.isfinite(res.f), res.f, np.inf)))
    seconds = time.perf_counter() - tick
    params = _as_params(res.x[best])
    law = LossLaw("fit", **params, source="fit_parametric")
    out: dict = {**params, "a": law.a, "b": law.b, "law": law, "objective": float(res.f[best]),
                 "starts": len(x0), "converged": int(res.converged.sum()),
                 "hits": int(np.sum(res.f <= res.f[best] + 1e-6 * max(res.f[best], 1e-12))),
                 "delta": float(delta), "objective_kind": objective,
                 "paper_grid": _is_paper_grid(x0),
                 "seconds": seconds, "x": res.x[best]}  # fmt: skip
    if bootstrap:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=bootstrap).astype(float)
        seeds = _distinct(res.x, res.f, bootstrap_starts)
        k = len(seeds)
        weights = np.repeat(counts * scale, k, axis=0)  # row r = resample r // k
        bfun = parametric_objective(N, D, loss, delta, weights=weights)
        bres = lbfgs(bfun, np.tile(seeds, (bootstrap, 1)), max_iter=max_iter, memory=memory)
        f = bres.f.reshape(bootstrap, k)
        pick = np.nanargmin(np.where(np.isfinite(f), f, np.inf), axis=1)
        xs = bres.x.reshape(bootstrap, k, 5)[np.arange(bootstrap), pick]
        draws = pd.DataFrame([_as_params(x) for x in xs])
        draws["a"] = draws.beta / (draws.alpha + draws.beta)
        draws["b"] = draws.alpha / (draws.alpha + draws.beta)
        out["draws"] = draws
        out["intervals"] = percentile_intervals(draws.to_numpy(), list(draws.columns), level)
        out["level"] = level
    return out


def compute_optimal_draws(fit: dict, C: float | Sequence[float],
                          level: float | None = None) -> pd.DataFrame:  # fmt: skip
    """N*(C), D*(C) and tokens per parameter D*/N* at each compute C, with intervals.

    One row per C: the values from the fit's own parameters and, when the fit has bootstrap
    ``draws``, percentile intervals at ``level`` (default the fit's) over the draws; draws
    with α ≤ 0 or β ≤ 0 have no compute-optimal split and are left out (their number is in
    ``table.attrs["draws_dropped"]``).
    """
    C = np.atleast_1d(np.asarray(C, dtype=float))
    if np.any(~np.isfinite(C) | (C <= 0)):
        raise ValueError(f"compute_optimal_draws: C must be positive, got {C.tolist()}")
    n_opt, d_opt = fit["law"].compute_optimal(C)
    table = pd.DataFrame({"C": C, "N_opt": n_opt, "D_opt": d_opt,
                          "tokens_per_param": d_opt / n_opt})  # fmt: skip
    draws = fit.get("draws")
    if draws is not None:
        level = fit.get("level", 0.95) if level is None else level
        check_bootstrap(0, level, "compute_optimal_draws")
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        laws = [LossLaw("draw", *row, source="bootstrap")
                for row in draws[list(PARAMETERS)].itertuples(index=False)
                if row.alpha > 0 and row.beta > 0]  # fmt: skip
        table.attrs["draws_dropped"] = len(draws) - len(laws)  # α or β ≤ 0: no optimum
        if not laws:
            raise ValueError("compute_optimal_draws: no bootstrap draw has α, β > 0")
        both = np.array([law.compute_optimal(C) for law in laws])  # (draws, 2, len(C))
        for name, values in (("N_opt", both[:, 0]), ("D_opt", both[:, 1]),
                             ("tokens_per_param", both[:, 1] / both[:, 0])):  # fmt: skip
            lo, hi = np.percentile(values, q, axis=0)
            table[f"{name}_low"], table[f"{name}_high"] = lo, hi
    return table


def residuals(fit: dict, N, D, loss) -> np.ndarray:
    """log L̂(N, D) − log L at every point: what the Huber objective sees."""
    N, D, loss = (np.asarray(v, dtype=float) for v in (N, D, loss))
    return np.log(fit["law"](N, D)) - np.log(loss)


# --------------------------------------------------------------------------- approaches 1, 2
def _budget_grid(budgets: object, who: str) -> int | None:
    """``budgets`` as a count (an int ≥ 2), or None when it lists compute values."""
    if isinstance(budgets, bool) or isinstance(budgets, float | np.floating | str):
        raise ValueError(f"{who}: budgets must be an int (how many budgets) or a sequence of "
                         f"compute values, got {budgets!r}")  # fmt: skip
    if isinstance(budgets, int | np.integer):
        if budgets < 2:
            raise ValueError(f"{who}: budgets must be ≥ 2 when it counts them, got {budgets}")
        return int(budgets)
    return None


def _flops(table: pd.DataFrame, N: str, D: str, flops: str | None, who: str) -> np.ndarray:
    if flops is not None:
        return positive_values(table[flops], flops, who)
    return 6.0 * positive_values(table[N], N, who) * positive_values(table[D], D, who)


def _exponents(points: pd.DataFrame, who: str) -> dict:
    """Power laws N_opt ∝ C^a and D_opt ∝ C^b through the per-budget optima."""
    if len(points) < 3:
        raise ValueError(f"{who}: {len(points)} compute budgets have an optimum inside the grid; "
                         "a power law in C needs at least 3")  # fmt: skip
    n_law = fit_power_law(points, "N_opt", "C", bootstrap=0)
    d_law = fit_power_law(points, "D_opt", "C", bootstrap=0)
    return {"points": points, "a": n_law.exponents["C"], "b": d_law.exponents["C"],
            "N_law": n_law, "D_law": d_law}  # fmt: skip


def _size_bootstrap(usable_points: Callable[[np.ndarray], pd.DataFrame], sizes: np.ndarray,
                    bootstrap: int, seed: int, level: float, who: str) -> dict:  # fmt: skip
    """Intervals for a and b from model sizes drawn with replacement.

    The budgets of approaches 1 and 2 are not independent observations (neighbouring budgets
    share their winning run or their interpolated runs), so resampling budgets would narrow
    the interval just by asking for more of them. The independent units are the model sizes:
    each resample redoes the whole construction from ``len(sizes)`` sizes drawn with
    replacement (``usable_points(pick)`` → the points a power law is fitted to) and refits
    both exponents by least squares in logs. Resamples with fewer than 3 usable points are
    skipped and counted (``bootstrap_failed``).

    What the interval measures: a resample holds about 63% of the distinct sizes, so it asks
    how much the answer moves with a coarser, different set of model sizes — not only how
    noise in the losses moves it. On a planted law (Chinchilla's, 10 sizes, 0.5% loss noise,
    30 datasets, 200 resamples) approach 1's median interval for a was 0.218 wide while its
    estimates scattered with a standard deviation of 0.012 (±1.96 sd: 0.048, so 4.5×
    wider), approach 2's 0.065 against 0.0098 (1.7×); both covered the truth every time.
    Read it as conservative.
    """
    rng = np.random.default_rng(seed)
    draws, failed = [], 0
    for _ in range(bootstrap):
        pts = usable_points(rng.choice(sizes, size=len(sizes), replace=True))
        if len(pts) < 3 or pts.C.nunique() < 2:
            failed += 1
            continue
        x = np.log(pts.C.to_numpy())
        draws.append((np.polyfit(x, np.log(pts.N_opt.to_numpy()), 1)[0],
                      np.polyfit(x, np.log(pts.D_opt.to_numpy()), 1)[0]))  # fmt: skip
    if len(draws) < 2:
        raise ValueError(f"{who}: the model-size bootstrap failed in {failed} of {bootstrap} "
                         "resamples: too few model sizes for an interval")  # fmt: skip
    return {"intervals": percentile_intervals(np.array(draws), ["a", "b"], level),
            "bootstrap_draws": np.array(draws), "bootstrap_failed": failed}


def envelope_fit(
    curves: pd.DataFrame,
    N: str = "params",
    D: str = "tokens",
    loss: str = "train_loss",
    run: str = "run_id",
    flops: str | None = None,
    budgets: int | Sequence[float] = 24,
    smooth: int = 1,
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Approach 1: the lower envelope of training curves → N_opt(C), D_opt(C) power laws.

    ``curves`` has one row per (run, point on its curve). Each run's loss is interpolated
    linearly in log C (C = 6·N·D, or the ``flops`` column) at every budget its curve spans;
    at each budget the run with the lowest loss gives N_opt, and D_opt = C/(6·N_opt) (or the
    run's tokens there, with ``flops``). A budget whose winner is the smallest or the largest
    model that reaches it is marked ``at_edge`` and left out of the power-law fit (the true
    optimum may lie beyond the models run). ``budgets``: how many, log-spaced over the
    compute range two or more model sizes span, or the values themselves. ``smooth`` > 1
    replaces each curve by its centred moving average over that many points (training
    losses are noisy, and a minimum over noisy curves is biased low).

    Returns a dict: ``points`` (C, N_opt, D_opt, loss, models, at_edge), ``a``, ``b``,
    ``N_law``, ``D_law`` (:class:`~optimal_scaling.fitting.PowerLaw`), and with ``bootstrap``
    ``intervals`` for a and b from resampled model sizes (``_size_bootstrap``: conservative,
    on a planted law about 4.5× wider than ±1.96 standard deviations of the estimate). Every row of
    a run must have the same ``N`` (one run, one model size).
    """
    who = "envelope_fit"
    require_columns(curves, [N, D, loss, run] + ([flops] if flops else []), who)
    count = _budget_grid(budgets, who)
    smooth = check_int(who, "smooth", smooth, low=1)
    bootstrap = check_bootstrap(bootstrap, level, who, seed)
    values = pd.to_numeric(curves[loss], errors="coerce")
    if len(curves) and not np.isfinite(values).any():
        raise ValueError(f"{who}: column {loss!r} holds no finite numbers (e.g. "
                         f"{curves[loss].head(3).tolist()})")  # fmt: skip
    table = curves[np.isfinite(values)].copy()
    table["_C"] = _flops(table, N, D, flops, who)
    table["_logC"] = np.log(table["_C"])
    runs = []
    for name, g in table.groupby(run):
        if g[N].nunique() > 1:  # one run is one model: shared ids would merge curves
            raise ValueError(f"{who}: run {name!r} has {g[N].nunique()} different {N!r} values "
                             f"({sorted(g[N].unique())[:4]}); each run must be one model size "
                             f"(are run ids reused across models?)")  # fmt: skip
        g = g.sort_values("_logC")
        if smooth > 1:
            g = g.assign(**{loss: g[loss].rolling(smooth, center=True, min_periods=1).mean()})
        runs.append((float(g[N].iloc[0]), g))
    if len({n for n, _ in runs}) < 2:
        raise ValueError(f"{who}: need curves of at least two model sizes")
    spans = np.array([(g["_logC"].iloc[0], g["_logC"].iloc[-1]) for _, g in runs])
    if count is not None:
        grid = np.sort(np.concatenate([spans[:, 0], spans[:, 1]]))
        covered = [c for c in grid
                   if len({n for (n, _), (lo, hi) in zip(runs, spans, strict=True)
                           if lo <= c <= hi}) >= 2]  # fmt: skip
        if not covered:
            raise ValueError(f"{who}: no compute value is reached by two model sizes")
        logC = np.linspace(min(covered), max(covered), count)
    else:
        logC = np.log(positive_values(pd.Series(budgets), "budgets", who))
    sizes = np.array([n for n, _ in runs])
    loss_at = np.full((len(runs), len(logC)), np.nan)  # each run's loss at each budget
    log_tokens = np.full_like(loss_at, np.nan)
    for r, ((_, g), (lo, hi)) in enumerate(zip(runs, spans, strict=True)):
        inside = (logC >= lo) & (logC <= hi)
        loss_at[r, inside] = np.interp(logC[inside], g["_logC"], g[loss])
        log_tokens[r, inside] = np.interp(logC[inside], g["_logC"], np.log(g[D]))

    def points_from(rows: np.ndarray) -> pd.DataFrame:
        return _envelope_points(sizes[rows], loss_at[rows], log_tokens[rows], logC,
                                flops is not None)  # fmt: skip

    points = points_from(np.arange(len(runs)))
    if points.empty:
        raise ValueError(f"{who}: no budget is reached by two model sizes")
    out = _exponents(points[~points.at_edge], who)
    out["points"] = points
    if bootstrap:
        by_size = {n: np.flatnonzero(sizes == n) for n in np.unique(sizes)}

        def usable(pick: np.ndarray) -> pd.DataFrame:
            pts = points_from(np.concatenate([by_size[n] for n in pick]))
            return pts[~pts.at_edge] if len(pts) else pts

        out.update(_size_bootstrap(usable, np.unique(sizes), bootstrap, seed, level, who))
    return out


def _envelope_points(sizes: np.ndarray, loss_at: np.ndarray, log_tokens: np.ndarray,
                     logC: np.ndarray, tokens_given: bool) -> pd.DataFrame:  # fmt: skip
    """Approach 1 at each budget: the run of lowest loss among the runs reaching it (two
    model sizes or more), its size, tokens, and whether it is the smallest or largest size."""
    rows = []
    for j, c in enumerate(logC):
        ok = np.flatnonzero(np.isfinite(loss_at[:, j]))
        present = np.unique(sizes[ok])
        if len(present) < 2:
            continue
        i = ok[np.argmin(loss_at[ok, j])]
        n, C = float(sizes[i]), float(np.exp(c))
        rows.append({"C": C, "N_opt": n,
                     "D_opt": float(np.exp(log_tokens[i, j])) if tokens_given else C / (6 * n),
                     "loss": float(loss_at[i, j]), "models": len(present),
                     "at_edge": n in (present.min(), present.max())})  # fmt: skip
    return pd.DataFrame(rows, columns=["C", "N_opt", "D_opt", "loss", "models", "at_edge"])


def isoflop_fit(
    table: pd.DataFrame,
    N: str = "params",
    D: str = "tokens",
    loss: str = "val_loss",
    budgets: int | Sequence[float] = 8,
    min_models: int = 4,
    interpolate: bool = True,
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Approach 2: IsoFLOP profiles → parabola minima in log N → N_opt(C), D_opt(C).

    ``table``: final losses, one row per (N, D) run (several rows per N, one per token
    budget D; the lowest loss is kept where rows repeat, e.g. over learning rates). At a
    compute budget C, each model's loss at D = C/(6N) is interpolated linearly in log D
    between its budgets (never extrapolated); with ``min_models`` or more models at that C,
    L ≈ p₂u² + p₁u + p₀ (u = log N, least squares) has its minimum at u* = −p₁/(2p₂).
    A profile counts only if it opens upwards and u* lies inside the models' range.
    ``budgets``: how many, log-spaced where ``min_models`` models overlap, or the values.
    With ``interpolate=False`` the runs already lie on IsoFLOP lines (the paper's design):
    rows whose C = 6ND agree within 5% form one profile, read as they are.

    Returns a dict: ``profiles`` (C, N, D, loss of every interpolated point), ``points``
    (C, N_opt, D_opt, loss at the vertex, valid), ``a``, ``b``, ``N_law``, ``D_law``, and with
    ``bootstrap`` ``intervals`` for a and b from resampled model sizes (``_size_bootstrap``:
    conservative, on a planted law about 1.7× wider than ±1.96 standard deviations of the
    estimate).
    """
    who = "isoflop_fit"
    require_columns(table, [N, D, loss], who)
    count = _budget_grid(budgets, who)
    bootstrap = check_bootstrap(bootstrap, level, who, seed)
    min_models = check_int(who, "min_models", min_models, low=3, note="(a parabola's points)")
    t = table[np.isfinite(pd.to_numeric(table[loss], errors="coerce"))]
    t = t.assign(_N=positive_values(t[N], N, who), _D=positive_values(t[D], D, who),
                 _L=positive_values(t[loss], loss, who))  # fmt: skip
    best = t.groupby(["_N", "_D"], as_index=False)["_L"].min()
    if best.empty:
        raise ValueError(f"{who}: no run with a finite {loss!r}")
    if not interpolate:
        return _isoflop_result(_isoflop_lines(best), min_models, bootstrap, seed, level)
    models = [(n, g.sort_values("_D")) for n, g in best.groupby("_N") if len(g) >= 2]
    if len(models) < min_models:
        raise ValueError(f"{who}: {len(models)} model sizes with ≥ 2 token budgets each; "
                         f"need {min_models}")  # fmt: skip
    spans = np.array([(np.log(6 * n * g._D.iloc[0]), np.log(6 * n * g._D.iloc[-1]))
                      for n, g in models])  # fmt: skip
    if count is not None:
        ends = np.sort(spans.ravel())
        ok = [c for c in ends if np.sum((spans[:, 0] <= c) & (c <= spans[:, 1])) >= min_models]
        if not ok:
            raise ValueError(f"{who}: no compute budget is reached by {min_models} models")
        logC = np.linspace(min(ok), max(ok), count)
    else:
        logC = np.log(positive_values(pd.Series(budgets), "budgets", who))
    profiles = []
    for c in logC:
        C = float(np.exp(c))
        pts = [(n, C / (6 * n), float(np.interp(c - np.log(6 * n), np.log(g._D), g._L)))
               for (n, g), (lo, hi) in zip(models, spans, strict=True)
               if lo - 1e-9 <= c <= hi + 1e-9]  # fmt: skip
        profiles.append((C, pts))
    return _isoflop_result(profiles, min_models, bootstrap, seed, level)


def _vertex(C: float, pts: list[tuple[float, float, float]]) -> dict:
    """The parabola in u = log N through one profile's (N, D, loss) points, and its minimum."""
    u = np.log([p[0] for p in pts])
    p2, p1, p0 = np.polyfit(u, [p[2] for p in pts], 2)
    vertex = -p1 / (2 * p2) if p2 > 0 else np.nan
    valid = bool(p2 > 0 and u.min() < vertex < u.max())
    n_opt = float(np.exp(vertex)) if valid else np.nan
    return {"C": C, "N_opt": n_opt, "D_opt": C / (6 * n_opt) if valid else np.nan,
            "loss": p0 + p1 * vertex + p2 * vertex**2 if valid else np.nan,
            "models": len(pts), "valid": valid}  # fmt: skip


def _isoflop_lines(best: pd.DataFrame) -> list[tuple[float, list]]:
    """Runs laid out on IsoFLOP lines: in order of C = 6ND, a profile starts at its smallest C
    and takes every run within 5% above it (so no profile spans more than 5%)."""
    logC = np.log(6 * best._N * best._D).to_numpy()
    order = np.argsort(logC)
    groups, current = [], [order[0]]
    for j in order[1:]:
        if logC[j] - logC[current[0]] > np.log(1.05):
            groups.append(current)
            current = []
        current.append(j)
    groups.append(current)
    return [(float(np.exp(np.mean(logC[g]))),
             list(zip(best._N.iloc[g], best._D.iloc[g], best._L.iloc[g], strict=True)))
            for g in groups]  # fmt: skip


def _isoflop_result(profiles: list[tuple[float, list]], min_models: int, bootstrap: int,
                    seed: int, level: float) -> dict:  # fmt: skip
    """Approach 2's answer from its profiles, each (C, [(N, D, loss), ...]): a vertex per
    profile with ``min_models`` or more model sizes, and the power laws through the valid
    ones; intervals from the model-size bootstrap."""

    def points_of(profs: list[tuple[float, list]]) -> pd.DataFrame:
        rows = [_vertex(C, pts) for C, pts in profs if len({p[0] for p in pts}) >= min_models]
        return pd.DataFrame(rows, columns=["C", "N_opt", "D_opt", "loss", "models", "valid"])

    points = points_of(profiles)
    if points.empty:
        raise ValueError(f"isoflop_fit: no IsoFLOP profile has {min_models} models")
    out = _exponents(points[points.valid], "isoflop_fit")
    out.update(points=points, profiles=pd.DataFrame(
        [{"C": C, "N": n, "D": d, "loss": v} for C, pts in profiles for n, d, v in pts]))
    if bootstrap:
        def usable(pick: np.ndarray) -> pd.DataFrame:
            counts = pd.Series(pick).value_counts()
            profs = [(C, [p for p in pts for _ in range(int(counts.get(p[0], 0)))])
                     for C, pts in profiles]  # fmt: skip
            pts = points_of(profs)
            return pts[pts.valid]

        sizes = np.unique([p[0] for _, pts in profiles for p in pts])
        out.update(_size_bootstrap(usable, sizes, bootstrap, seed, level, "isoflop_fit"))
    return out


# --------------------------------------------------------------------------- validation
def extrapolation_check(N, D, loss, holdout: str = "largest N", **fit_kwargs) -> dict:
    """Fit approach 3 without the largest models (or budgets) and predict them.

    ``holdout`` = "largest N" (every point of the largest model) or "largest C" (the points
    whose C = 6ND is at or above the 90th percentile of C, at least one): those points are
    left out of the fit. Returns
    the fit (``fit``), the held-out mask (``held_out``), the relative errors of the
    predictions L̂/L − 1 on them (``errors``) and their mean absolute value (``mae``).
    """
    N, D, loss = _points(N, D, loss, "extrapolation_check")
    if holdout == "largest N":
        held = N == N.max()
    elif holdout == "largest C":
        held = N * D >= min(np.percentile(N * D, 90), np.max(N * D))
    else:
        raise ValueError(f"extrapolation_check: holdout must be 'largest N' or 'largest C', "
                         f"got {holdout!r}")  # fmt: skip
    fit = fit_parametric(N[~held], D[~held], loss[~held], **fit_kwargs)
    errors = fit["law"](N[held], D[held]) / loss[held] - 1
    return {"fit": fit, "held_out": held, "errors": errors, "mae": float(np.mean(np.abs(errors)))}


def checklist(fit: dict, N, D, loss, validation: dict | None = None,
              counted: str = "all parameters") -> str:  # fmt: skip
    """A Markdown report of an approach-3 fit along the "(Mis)Fitting" checklist.

    Form, variables, parameters, objective, optimizer, initialisation, data coverage and
    validation — the choices that the survey found most papers leave out, each filled in
    from the fit and its data. ``validation``: the result of :func:`extrapolation_check`.
    """
    N, D, loss = (np.asarray(v, dtype=float) for v in (N, D, loss))
    res = residuals(fit, N, D, loss)
    lines = [
        "| checklist item | this fit |",
        "| --- | --- |",
        "| form | L(N, D) = E + A/N^α + B/D^β |",
        f"| variables | N = {counted}, D = training tokens, L = loss in nats per token |",
        "| parameters | "
        + ", ".join(
            f"{k} = {fit[k]:.4g}"
            + (
                f" [{fit['intervals'][k][0]:.3g}, {fit['intervals'][k][1]:.3g}]"
                if "intervals" in fit
                else ""
            )
            for k in PARAMETERS
        )
        + " |",
        f"| objective | {'mean' if fit.get('objective_kind') == 'mean' else 'Σ'} "
        f"Huber_δ(log L̂ − log L) over the points, δ = {fit.get('delta', 1e-3):g} |",
        f"| optimizer | L-BFGS (batched over starts), best of {fit['starts']} starts; "
        f"{fit['converged']} stopped by a tolerance; {fit['hits']} reached the best value |",
        ("| initialisation | the paper's grid: α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, …, 1}, "
         "a, b ∈ {0, 5, …, 25} |" if fit.get("paper_grid") else
         f"| initialisation | {fit['starts']} starts (not the paper's full 4 500-start grid) |"),
        f"| data coverage | {len(N)} points; N ∈ [{N.min():.3g}, {N.max():.3g}] "
        f"({len(np.unique(N))} sizes), D ∈ [{D.min():.3g}, {D.max():.3g}], "
        f"C = 6ND ∈ [{(6 * N * D).min():.3g}, {(6 * N * D).max():.3g}] |",
        f"| residuals | rms {np.sqrt(np.mean(res**2)):.4f}, max |r| {np.abs(res).max():.4f} "
        "(log L) |",
    ]
    if validation is not None:
        lines.append(f"| validation | fit without the held-out points predicts them with mean "
                     f"|error| {validation['mae']:.2%} ({int(validation['held_out'].sum())} "
                     "points) |")  # fmt: skip
    if "intervals" in fit:
        lines.append(f"| uncertainty | {len(fit['draws'])} bootstrap resamples of the points, "
                     f"{fit['level']:.0%} percentile intervals |")  # fmt: skip
    return "\n".join(lines)
