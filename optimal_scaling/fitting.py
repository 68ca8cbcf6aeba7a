r"""Fits shared by the data-scaling lectures (06–08): optima on grids, and power laws.

:func:`find_optimum`: for each group of a tidy table (e.g. one horizon D), the grid setting
with the lowest metric; ``method="parabola"`` refines one column by fitting

    metric ≈ p₂·u² + p₁·u + p₀,   u = log₂(value),   on the grid minimum and its neighbours,

and reports the vertex u* = −p₁/(2p₂) (when the parabola opens upwards, with a curvature
above rounding level — p₂·(range of u)² > 10⁻⁹·max|metric| — and its vertex lies among the
fitted points; otherwise the grid minimum stands, and ``refined`` says so).

Bootstrap intervals (percentile, rows resampled) are approximate with few rows: for
y = 3·x^0.5 with 10% log-normal noise at n points log-spaced over x ∈ [1, 1000], 200 planted
datasets each (so ±0.02 of sampling noise), the nominal 95% interval of the exponent covered
the truth in 0.91 of them at n = 5, 0.87 at n = 8, 0.93 at n = 12 and 0.95 at n = 30 (c's:
0.88, 0.84, 0.90, 0.94); a rerun with 1000 datasets each gave 0.89–0.92 for n = 5–30
(and the spread of x moves it by ±0.02). Read them as somewhat too narrow (about 90%
rather than 95%).

:func:`fit_power_law`: target = c · Π_i feature_iᵃⁱ, by least squares in logs,

    log y = log c + Σ_i a_i log x_i,

with R² in log space and percentile bootstrap intervals (rows resampled with replacement).

:func:`lbfgs`: many independent smooth minimizations at once, one per row of a start
matrix, by L-BFGS with a backtracking (Armijo) line search; every row keeps its own
history, step and stopping test, so the result equals running the rows one by one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from optimal_scaling._validate import check_int, check_number

__all__ = [
    "PowerLaw",
    "check_bootstrap",
    "column_names",
    "find_optimum",
    "fit_power_law",
    "lbfgs",
    "percentile_intervals",
    "positive_values",
    "require_columns",
]


def percentile_intervals(draws: Sequence[Sequence[float]], names: Sequence[str],
                         level: float) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Percentile bootstrap intervals at ``level`` (0 < level < 1): one (low, high) per column
    of ``draws`` (draws × len(names)), keyed by ``names``."""
    who = "percentile_intervals"
    level = check_number(who, "level", level, low=0, high=1, low_open=True, high_open=True)
    if len(draws) == 0:
        raise ValueError(f"{who}: no usable bootstrap draw for {list(names)} "
                         "(every resample was degenerate or rejected)")  # fmt: skip
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 2 or draws.shape[1] != len(names):
        raise ValueError(f"{who}: draws must have one column per name ({len(names)}: "
                         f"{list(names)}), got shape {draws.shape}")  # fmt: skip
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    lo, hi = np.percentile(draws, q, axis=0)
    return {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(names)}


def check_bootstrap(bootstrap: object, level: object, who: str, seed: object = 0) -> int:
    """``bootstrap`` as an int ≥ 0 (bools refused) after checking 0 < ``level`` < 1 and that
    ``seed`` is an int ≥ 0; or a ValueError naming the argument."""
    bootstrap = check_int(who, "bootstrap", bootstrap, low=0, note="(resamples; 0 skips them)")
    check_int(who, "seed", seed, low=0)
    if (isinstance(level, bool) or not isinstance(level, numbers.Real)
            or not 0 < float(level) < 1):  # fmt: skip
        raise ValueError(f"{who}: level must be a number in (0, 1), e.g. 0.95, got {level!r}")
    return int(bootstrap)


def column_names(value: object, what: str, who: str) -> list[str]:
    """``value`` (a column name or an iterable of them) as a list of names; or a TypeError
    naming ``what``."""
    if isinstance(value, str):
        return [value]
    names = list(value) if isinstance(value, Iterable) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{who}: {what} must be a column name or a list of them, got {value!r}")
    return names


def require_columns(table: pd.DataFrame, names: Sequence[str], who: str) -> None:
    """Raise a ValueError naming the columns of ``names`` that ``table`` lacks."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{who}: expected a pandas DataFrame, got {type(table).__name__}")
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise ValueError(f"{who}: missing columns {missing}; the table has {list(table.columns)}")


def positive_values(values: pd.Series, name: str, who: str) -> np.ndarray:
    """The column as floats, or a ValueError when any value is not positive and finite (a
    TypeError for a bool column: True is no quantity)."""
    if pd.api.types.is_bool_dtype(values):
        raise TypeError(f"{who}: column {name!r} must hold numbers, got dtype bool")
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(x) | (x <= 0)
    if bad.any():
        raise ValueError(
            f"{who}: column {name!r} needs positive finite values (logs are taken); "
            f"{int(bad.sum())} of {len(x)} are not, e.g. {x[bad][:3].tolist()}"
        )
    return x


# --------------------------------------------------------------------------- optima
def find_optimum(
    table: pd.DataFrame,
    over: str | Sequence[str],
    metric: str = "loss",
    by: str | Sequence[str] = (),
    method: str = "argmin",
    neighbours: int = 2,
) -> pd.DataFrame:
    """The best setting of ``over`` for each group of ``by``: one row per group.

    Columns: the ``by`` keys, the ``over`` columns at the optimum, the metric there, ``points``
    (rows in the group), ``at_edge`` (the grid minimum sits at the smallest or largest value of
    an ``over`` column among the runs that did not diverge: the optimum may lie outside the
    grid, or right next to the divergence edge) and, for ``"parabola"``,
    ``refined``. With several ``over`` columns, each is judged along the optimum's own line
    (the runs sharing the optimum's values of the other columns): a learning rate next to
    the divergence edge at the best batch size is at the edge even if other batch sizes went
    further. A metric of +inf (a diverged run) counts as worst; a group whose runs all
    diverged gets NaN settings and an infinite metric. ``"parabola"`` refines ``over[0]`` (at
    the grid minimum's values of the other ``over`` columns) with up to ``neighbours``
    distinct grid values on each side of the minimum (repeated runs at one value, e.g.
    seeds, are averaged first); that column must be positive.
    """
    who = "find_optimum"
    over, by = column_names(over, "over", who), column_names(by, "by", who)
    if not isinstance(metric, str):
        raise TypeError(f"{who}: metric must be a column name (str), got {metric!r}")
    if not over:
        raise ValueError(f"{who}: name at least one column to optimize over")
    if method not in ("argmin", "parabola"):
        raise ValueError(f"{who}: unknown method {method!r}; choose 'argmin' or 'parabola'")
    neighbours = check_int(who, "neighbours", neighbours, low=1)
    require_columns(table, [*over, metric, *by], who)
    for col in over:  # text would sort as text: '1e-05' < '0.1' is False
        if not pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
            raise TypeError(f"{who}: column {col!r} must hold numbers, got dtype "
                            f"{table[col].dtype} (convert it, e.g. pd.to_numeric)")  # fmt: skip
    values = pd.to_numeric(table[metric], errors="coerce")
    if values.isna().any():
        raise ValueError(f"{who}: column {metric!r} has {int(values.isna().sum())} NaN or "
                         "non-numeric values (a diverged run should be +inf)")  # fmt: skip
    if (values == -np.inf).any():
        raise ValueError(f"{who}: column {metric!r} has -inf values (a diverged run should be "
                         "+inf; -inf would win every comparison)")  # fmt: skip
    if method == "parabola":
        positive_values(table[over[0]], over[0], who)
    if table.empty:
        raise ValueError(f"{who}: the table is empty")
    for col in [*by, *over]:  # groupby would drop NaN keys silently; NaN settings mean nothing
        if table[col].isna().any():
            raise ValueError(f"{who}: column {col!r} has {int(table[col].isna().sum())} NaN "
                             "values")  # fmt: skip
    rows = []
    groups = table.groupby(by, sort=True) if by else [((), table)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=True))
        finite = group[np.isfinite(group[metric].astype(float))]
        row["points"] = len(group)
        if finite.empty:
            rows.append({**row, **dict.fromkeys(over, math.nan), metric: math.inf,
                         "at_edge": False, **({"refined": False} if method == "parabola"
                                              else {})})  # fmt: skip
            continue
        # by position: index labels may repeat (concatenated tables)
        best = finite.iloc[int(np.argmin(finite[metric].to_numpy(dtype=float)))]
        row.update({c: best[c] for c in over})
        row[metric] = float(best[metric])
        row["at_edge"] = any(best[c] in (line[c].min(), line[c].max())
                             for c in over for line in [_line(finite, over, c, best)])
        if method == "parabola":
            row.update(_parabola(group, over, metric, best, neighbours))
        rows.append(row)
    return pd.DataFrame(rows)


def _line(table: pd.DataFrame, over: list[str], col: str, best: pd.Series) -> pd.DataFrame:
    """The rows of ``table`` that share ``best``'s values of every ``over`` column but ``col``."""
    for other in over:
        if other != col:
            table = table[table[other] == best[other]]
    return table


def _parabola(group: pd.DataFrame, over: list[str], metric: str, best: pd.Series,
              neighbours: int) -> dict:  # fmt: skip
    col = over[0]
    line = _line(group, over, col, best)
    values = pd.to_numeric(line[metric], errors="coerce").astype(float)
    finite = np.isfinite(values)
    means = values[finite].groupby(line.loc[finite, col]).mean()  # per distinct value, sorted
    xs = means.index.to_numpy(dtype=float)
    k = int(np.flatnonzero(xs == float(best[col]))[0])
    lo, hi = max(0, k - neighbours), min(len(xs), k + neighbours + 1)
    u = np.log2(xs[lo:hi])
    y = means.to_numpy(dtype=float)[lo:hi]
    if len(u) < 3:
        return {"refined": False}
    p2, p1, p0 = np.polyfit(u, y, 2)
    # a curvature at rounding level (a flat metric) locates nothing
    if p2 <= 1e-9 * max(np.abs(y).max(), 1e-300) / np.ptp(u) ** 2:
        return {"refined": False}
    vertex = -p1 / (2 * p2)
    if not u.min() <= vertex <= u.max():
        return {"refined": False}
    return {col: float(2.0**vertex), metric: float(p0 - p1 * p1 / (4 * p2)), "refined": True}


# --------------------------------------------------------------------------- power laws
@dataclass
class PowerLaw:
    """target = c · Π features^exponents, with R² (in logs) and bootstrap intervals."""

    target: str
    c: float
    exponents: dict[str, float]
    r2: float
    n: int
    level: float = 0.95
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __call__(self, **features: float | np.ndarray) -> np.ndarray:
        """The fitted law at the given feature values (keywords by feature name; positive and
        finite, as in the fit, which took their logs)."""
        missing = set(self.exponents) - set(features)
        if missing:
            raise ValueError(f"PowerLaw: give values for {sorted(missing)}")
        out = np.asarray(self.c, dtype=float)
        for name, a in self.exponents.items():
            x = np.asarray(features[name], dtype=float)
            if not np.all(np.isfinite(x) & (x > 0)):  # NaN fails too
                raise ValueError(f"PowerLaw: {name} must be positive and finite, got {x}")
            out = out * x**a
        return out

    def __str__(self) -> str:
        terms = " · ".join(f"{f}^{a:.3g}" for f, a in self.exponents.items())
        ci = ", ".join(f"{k} ∈ [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in self.intervals.items())
        return f"{self.target} = {self.c:.3g} · {terms}  (R² {self.r2:.3f}, n = {self.n}" + (
            f"; {self.level:.0%} intervals: {ci})" if ci else ")"
        )


def _lstsq(logx: np.ndarray, logy: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones(len(logy)), logx])
    return np.linalg.lstsq(design, logy, rcond=None)[0]


def fit_power_law(
    table: pd.DataFrame,
    target: str,
    features: str | Sequence[str],
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PowerLaw:
    """Fit target = c · Π_i feature_iᵃⁱ by least squares in logs (module docstring).

    Returns a :class:`PowerLaw` with ``c``, ``exponents`` by feature name, R² of the log fit
    (1 for a constant target, which the fit matches exactly), and percentile bootstrap
    intervals at ``level`` for ``c`` and every exponent (``bootstrap`` resamples of the rows;
    0 skips them; ``seed``, an int ≥ 0, seeds them). Needs positive finite numbers (not bools)
    and at least one more row than there are parameters.
    """
    who = "fit_power_law"
    features = column_names(features, "features", who)
    if not isinstance(target, str):
        raise TypeError(f"{who}: target must be a column name (str), got {target!r}")
    if not features:
        raise ValueError(f"{who}: name at least one feature column")
    bootstrap = check_bootstrap(bootstrap, level, who, seed)
    require_columns(table, [target, *features], who)
    n, k = len(table), len(features) + 1
    if n < k + 1:
        raise ValueError(f"{who}: {n} rows cannot fit {k} parameters with a residual; "
                         f"need at least {k + 1}")  # fmt: skip
    logy = np.log(positive_values(table[target], target, who))
    logx = np.column_stack([np.log(positive_values(table[f], f, who)) for f in features])
    if np.linalg.matrix_rank(np.column_stack([np.ones(n), logx])) < k:
        raise ValueError(f"{who}: the features {features} do not vary independently (a column "
                         "is constant or two are proportional in logs)")  # fmt: skip
    coef = _lstsq(logx, logy)
    resid = logy - coef[0] - logx @ coef[1:]
    total = np.sum((logy - logy.mean()) ** 2)
    r2 = 1.0 - float(np.sum(resid**2) / total) if total > 0 else 1.0
    law = PowerLaw(target, float(np.exp(coef[0])), dict(zip(features, map(float, coef[1:]),
                   strict=True)), r2, n, level)  # fmt: skip
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(bootstrap):
            idx = rng.integers(0, n, n)
            design = np.column_stack([np.ones(n), logx[idx]])
            if np.linalg.matrix_rank(design) < k:  # a degenerate resample: skip it
                continue
            draws.append(_lstsq(logx[idx], logy[idx]))
        ci = percentile_intervals(draws, ["log_c", *features], level)
        law.intervals["c"] = tuple(float(np.exp(v)) for v in ci.pop("log_c"))
        law.intervals.update(ci)
    return law


# --------------------------------------------------------------------------- batched L-BFGS
@dataclass
class LBFGSResult:
    """The end of :func:`lbfgs` for every row: point, value, gradient, iterations, status."""

    x: np.ndarray  # (S, P)
    f: np.ndarray  # (S,)
    grad: np.ndarray  # (S, P)
    iterations: np.ndarray  # (S,) iterations each row took
    converged: np.ndarray  # (S,) bool: stopped by a tolerance, not by max_iter


def _evaluate(fun, x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fun(x, rows)`` as fresh float arrays (k,) and (k, P); or an error naming the shapes."""
    out = fun(x, rows)
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise TypeError(f"lbfgs: fun must return a pair (f, grad), got {type(out).__name__}")
    f, g = np.array(out[0], dtype=float), np.array(out[1], dtype=float)
    if f.shape != (len(x),) or g.shape != x.shape:
        raise ValueError(f"lbfgs: fun must return f of shape {(len(x),)} and grad of shape "
                         f"{x.shape} for x of shape {x.shape}, got {f.shape} and {g.shape}")
    return f, g


def lbfgs(
    fun,
    x0: np.ndarray,
    max_iter: int = 500,
    memory: int = 10,
    gtol: float = 1e-10,
    ftol: float = 1e-10,
    max_halvings: int = 30,
) -> LBFGSResult:
    """Minimize S independent functions at once: row s of ``x0`` starts minimization s.

    ``fun(x, rows)`` takes points ``x`` of shape (k, P) and the indices ``rows`` (k,) of the
    problems they belong to, and returns (f, grad) of shapes (k,) and (k, P). Each row runs
    plain L-BFGS: the two-loop recursion over its last ``memory`` pairs (s, y) with s·y > 0
    gives a direction d (steepest descent when d is not a descent direction); the step t
    starts at 1 (at min(1, 1/‖g‖_∞) on a row's first iteration) and is halved until the Armijo
    condition f(x + t·d) ≤ f(x) + 10⁻⁴·t·g·d holds. A row stops when ‖g‖_∞ ≤ ``gtol``, when
    an accepted step lowers f by at most ``ftol``·|f| (relative, so the test does not depend
    on the objective's scale), or when ``max_halvings`` halvings find no step that lowers f.
    Rows are independent: the vectorized loop only saves Python overhead. ``x0`` needs at
    least one row and one column; ``gtol`` and ``ftol`` are numbers ≥ 0.
    """
    x = np.array(x0, dtype=float, copy=True)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"lbfgs: x0 must be (starts, parameters), at least 1 × 1, got shape "
                         f"{x.shape}")  # fmt: skip
    for name, value in (("max_iter", max_iter), ("memory", memory),
                        ("max_halvings", max_halvings)):  # fmt: skip
        check_int("lbfgs", name, value, low=1)
    gtol, ftol = check_number("lbfgs", "gtol", gtol, 0), check_number("lbfgs", "ftol", ftol, 0)
    S, P = x.shape
    rows = np.arange(S)
    f, g = _evaluate(fun, x, rows)
    S_hist = np.zeros((memory, S, P))
    Y_hist = np.zeros((memory, S, P))
    rho = np.zeros((memory, S))
    count = np.zeros(S, dtype=int)  # pairs stored per row (its newest at (count-1) % memory)
    iters = np.zeros(S, dtype=int)
    active = np.isfinite(f) & (np.abs(g).max(axis=1) > gtol)
    converged = np.isfinite(f) & ~active  # a start whose value is not finite never converged
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        q = g[idx].copy()
        alphas = np.zeros((memory, idx.size))
        n = count[idx]
        for j in range(memory):  # newest pair first
            slot = (n - 1 - j) % memory
            use = j < n
            s_j, y_j = S_hist[slot, idx], Y_hist[slot, idx]
            a = np.where(use, rho[slot, idx] * np.einsum("kp,kp->k", s_j, q), 0.0)
            alphas[j] = a
            q -= a[:, None] * y_j
        newest = (n - 1) % memory
        s_n, y_n = S_hist[newest, idx], Y_hist[newest, idx]
        yy = np.einsum("kp,kp->k", y_n, y_n)
        gamma = np.where(
            (n > 0) & (yy > 0), np.einsum("kp,kp->k", s_n, y_n) / np.where(yy > 0, yy, 1.0), 1.0
        )
        r = gamma[:, None] * q
        for j in reversed(range(memory)):  # oldest pair first
            slot = (n - 1 - j) % memory
            use = j < n
            s_j, y_j = S_hist[slot, idx], Y_hist[slot, idx]
            beta = np.where(use, rho[slot, idx] * np.einsum("kp,kp->k", y_j, r), 0.0)
            r += (np.where(use, alphas[j] - beta, 0.0))[:, None] * s_j
        d = -r
        gd = np.einsum("kp,kp->k", g[idx], d)
        bad = ~(gd < 0) | ~np.isfinite(gd)
        d[bad] = -g[idx][bad]
        gd[bad] = -np.einsum("kp,kp->k", g[idx][bad], g[idx][bad])
        t = np.where(n == 0, 1.0 / np.maximum(np.abs(g[idx]).max(axis=1), 1e-300), 1.0)
        t = np.minimum(t, 1.0)
        # backtracking, vectorized: rows that satisfied Armijo drop out of the loop
        f_new = np.full(idx.size, np.inf)
        g_new = np.zeros((idx.size, P))
        pending = np.arange(idx.size)
        for _ in range(max_halvings):
            if pending.size == 0:
                break
            trial = x[idx[pending]] + t[pending, None] * d[pending]
            ft, gt = _evaluate(fun, trial, idx[pending])
            ok = np.isfinite(ft) & (ft <= f[idx[pending]] + 1e-4 * t[pending] * gd[pending])
            f_new[pending[ok]], g_new[pending[ok]] = ft[ok], gt[ok]
            pending = pending[~ok]
            t[pending] *= 0.5
        moved = np.isfinite(f_new)
        stuck = idx[~moved]  # no step lowered f: a (numerical) minimum along d
        active[stuck] = False
        converged[stuck] = True
        k = idx[moved]
        step = t[moved, None] * d[moved]
        y = g_new[moved] - g[k]
        sy = np.einsum("kp,kp->k", step, y)
        drop = f[k] - f_new[moved]
        x[k] += step
        f[k], g[k] = f_new[moved], g_new[moved]
        iters[idx] += 1
        store = sy > 1e-300
        ks = k[store]
        slot = count[ks] % memory
        S_hist[slot, ks], Y_hist[slot, ks] = step[store], y[store]
        rho[slot, ks] = 1.0 / sy[store]
        count[ks] += 1
        done = (np.abs(g[k]).max(axis=1) <= gtol) | (drop <= ftol * np.abs(f[k]))
        active[k[done]] = False
        converged[k[done]] = True
    return LBFGSResult(x, f, g, iters, converged)
