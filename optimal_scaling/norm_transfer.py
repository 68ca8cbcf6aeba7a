r"""Norm transfer: the output layer's norm at the optimal (η, B), read from a collected sweep.

"Optimal Scaling Needs Optimal Norm" (arXiv 2510.03871) trains with Scion over a grid of
learning rates η, batch sizes B and token horizons D and finds that the best (η*, B*) at every
D leaves the output layer at the same operator norm, log₂‖W_out‖_{RMS→∞} ≈ 7. The table this
module reads is :func:`optimal_scaling.sweep.collect`'s: one row per run × horizon with ``lr``
(or ``optimizer.lr``), ``batch_size``, ``horizon``, ``val_loss`` and ``norm[output]``.

**The optimal norm of one (D, B) slice** (:func:`optimal_norm`): across learning rates, the loss
L against x = log₂‖W_out‖. Near its minimum the curve is a parabola; the procedure takes the
``points`` rows nearest the grid minimum (in order of x) and fits, by weighted least squares
(weight 1/(1 + k) for the k-th neighbour of the minimum),

    fixed intercept:  L − L₀ = a·(x − x₀)² + b·(x − x₀)     through the initial point (x₀, L₀)
    free intercept:   L = a·x² + b·x + c

with vertex x* = x₀ − b/2a or −b/2a (a > 0, else the variant gives nothing). (x₀, L₀) is the
output norm and the loss of the untrained model (:func:`initial_point`). Each fit also runs on
the loss smoothed by a 3-point running mean along x, and the grid minimum itself is a variant;
the estimate is the median over variants and the **spread** (max − min) its uncertainty.

**Necessary, not sufficient** (:func:`first_reaching`): at each (D, B), the smallest η whose run
reaches a norm level (interpolated in log₂ η); many (η, B) reach the optimal norm, one is best.
**Scaling**: log₂η* = α·log₂B + β·log₂D + γ over the per-slice optima (:func:`joint_fit`), and
η*(D), B*(D) from each horizon's best cell, as power laws with bootstrap intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from optimal_scaling._validate import check_int
from optimal_scaling.fitting import (
    PowerLaw,
    find_optimum,
    fit_power_law,
    positive_values,
    require_columns,
)

__all__ = [
    "NORM",
    "PAPER",
    "band",
    "first_reaching",
    "initial_point",
    "joint_fit",
    "leave_one_out",
    "optimal_norm",
    "optimal_norms",
    "per_horizon",
    "plot_band",
    "plot_loss_vs_norm",
    "plot_norm_growth",
    "plot_scaling",
    "scaling_fits",
    "tidy",
]

NORM = "norm[output]"

#: The paper's numbers (labelled as theirs wherever they are shown).
PAPER = {
    "log2_norm": (7.0, 0.2),  # across horizons; 7.4 ± 0.2 across width and depth
    "eta_exponent": (-0.28, 0.07),
    "batch_exponent": (0.45, 0.07),
    "joint": {"batch_size": 0.62, "horizon": -0.56},  # log2 η* = 0.62·log2 B − 0.56·log2 D + γ
    "layer_lr": "η_hidden = η_input/8 = η_output/8 helps by up to 6%",
}


def tidy(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep table with ``lr`` the configured rate and ``log2_norm`` = log₂ norm[output].

    A diverged run's NaN or inf norm stays NaN or inf, and a zero norm (a layer that is all
    zeros) gives −inf: the fits and figures below use only finite rows. A negative norm cannot
    be measured and is refused."""
    out = table.copy()
    if "optimizer.lr" in out:
        out = out.drop(columns=[c for c in ("lr",) if c in out]).rename(
            columns={"optimizer.lr": "lr"})
    require_columns(out, ["lr", "batch_size", "horizon", "val_loss", NORM], "norm_transfer")
    norm = out[NORM].astype(float)
    if (norm < 0).any():
        raise ValueError(f"norm_transfer: {int((norm < 0).sum())} rows have a negative {NORM}, "
                         f"e.g. {norm[norm < 0].iloc[0]}: a norm is ≥ 0")  # fmt: skip
    with np.errstate(divide="ignore"):
        out["log2_norm"] = np.log2(norm)
    return out


# --------------------------------------------------------------------------- one slice
def _weighted_parabola(x: np.ndarray, y: np.ndarray, w: np.ndarray,
                       anchor: tuple[float, float] | None) -> float:  # fmt: skip
    if anchor is None:
        design = np.column_stack([x**2, x, np.ones_like(x)])
        target = y
    else:
        x0, l0 = anchor
        design = np.column_stack([(x - x0) ** 2, x - x0])
        target = y - l0
    sw = np.sqrt(w)
    coef = np.linalg.lstsq(design * sw[:, None], target * sw, rcond=None)[0]
    a, b = coef[0], coef[1]
    if not a > 0:
        return math.nan
    return float(-b / (2 * a) + (0.0 if anchor is None else anchor[0]))


def optimal_norm(
    x: Sequence[float],
    loss: Sequence[float],
    anchor: tuple[float, float] | None = None,
    points: int = 7,
) -> dict[str, float]:
    """The optimal log₂ norm of one slice from (x = log₂ norm, loss) pairs (module docstring).

    Returns ``{"grid", "free", "free_smooth", ["fixed", "fixed_smooth"], "log2_norm",
    "spread", "variants", "norm_at_edge"}``: each variant's vertex (NaN when its parabola opens
    downward or lies more than 0.5 beyond the points used), their median and max − min, and
    whether the lowest loss sits at the smallest or largest norm of the slice: then the
    optimum is censored (it may lie beyond the points), and with the parabolas refused the
    estimate is the grid value alone with a spread of 0 that does not mean precision.
    Diverged rows (non-finite loss or norm) are dropped; at least 3 finite points are needed.
    """
    x, loss = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    if x.shape != loss.shape or x.ndim != 1:
        raise ValueError(f"optimal_norm: x and loss must be 1-d of one length, got {x.shape} "
                         f"and {loss.shape}")  # fmt: skip
    points = check_int("optimal_norm", "points", points, low=3, note="(a parabola's)")
    if anchor is not None:
        a = np.asarray(anchor, dtype=float)
        if a.shape != (2,) or not np.isfinite(a).all():
            raise ValueError(f"optimal_norm: anchor must be a finite pair (log2 norm, loss) of "
                             f"the untrained model, got {anchor!r}")  # fmt: skip
    ok = np.isfinite(x) & np.isfinite(loss)
    x, loss = x[ok], loss[ok]
    if len(x) < 3:
        raise ValueError(f"optimal_norm: need at least 3 finite points, got {len(x)}")
    order = np.argsort(x)
    x, loss = x[order], loss[order]
    smooth = np.convolve(np.pad(loss, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    out: dict[str, float] = {"grid": float(x[np.argmin(loss)])}
    for name, y in (("", loss), ("_smooth", smooth)):
        k = int(np.argmin(y))
        near = np.argsort(np.abs(np.arange(len(x)) - k), kind="stable")[:points]
        w = 1.0 / (1.0 + np.abs(near - k))
        xs, ys = x[near], y[near]
        fits = {"free": None, "fixed": anchor} if anchor is not None else {"free": None}
        for kind, a in fits.items():
            v = _weighted_parabola(xs, ys, w, a)
            inside = xs.min() - 0.5 <= v <= xs.max() + 0.5 if math.isfinite(v) else False
            out[kind + name] = v if inside else math.nan
    values = [v for v in out.values() if math.isfinite(v)]
    out["log2_norm"] = float(np.median(values))
    out["norm_at_edge"] = bool(np.argmin(loss) in (0, len(x) - 1))
    out["spread"] = float(max(values) - min(values))
    out["variants"] = len(values)
    return out


def optimal_norms(table: pd.DataFrame, anchor: tuple[float, float] | None = None,
                  points: int = 7) -> pd.DataFrame:  # fmt: skip
    """:func:`optimal_norm` for every (horizon, batch_size) slice, with the slice's best lr
    and loss (grid minimum) beside it. Slices with fewer than 3 finite rows are left out; an
    empty table, or one whose every slice is left out, is an error."""
    t = tidy(table)
    if t.empty:
        raise ValueError("optimal_norms: the table is empty")
    rows = []
    for (h, b), g in t.groupby(["horizon", "batch_size"]):
        fin = g[np.isfinite(g["val_loss"]) & np.isfinite(g["log2_norm"])]
        if len(fin) < 3:
            continue
        best = fin.iloc[int(np.argmin(fin["val_loss"].to_numpy(dtype=float)))]
        est = optimal_norm(fin["log2_norm"], fin["val_loss"], anchor, points)
        rows.append({"horizon": h, "batch_size": b, "lr": best["lr"],
                     "val_loss": best["val_loss"], "lr_at_edge": best["lr"] in
                     (fin["lr"].min(), fin["lr"].max()), **est})  # fmt: skip
    if not rows:
        raise ValueError("optimal_norms: no (horizon, batch_size) slice has 3 rows with a finite "
                         "loss and norm")  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- across slices
def per_horizon(table: pd.DataFrame, slices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each horizon's best cell (η*, B*), the log₂ norm its run reached (the mean over the
    cell's runs when it has several, e.g. seeds), and the optimal norm (with spread) of its
    (D, B*) slice."""
    t = tidy(table)
    best = find_optimum(t, over=["lr", "batch_size"], metric="val_loss", by="horizon")
    norm_at = t.groupby(["horizon", "lr", "batch_size"])["log2_norm"].mean()
    best["log2_norm_at_best"] = [norm_at.get((r.horizon, r.lr, r.batch_size), math.nan)
                                 for r in best.itertuples()]  # fmt: skip
    if slices is not None and len(slices):
        s = slices.set_index(["horizon", "batch_size"])
        best["log2_norm"] = [s["log2_norm"].get((r.horizon, r.batch_size), math.nan)
                             for r in best.itertuples()]  # fmt: skip
        best["spread"] = [s["spread"].get((r.horizon, r.batch_size), math.nan)
                          for r in best.itertuples()]  # fmt: skip
    return best


def band(horizons: pd.DataFrame, column: str = "log2_norm") -> dict[str, float]:
    """The optimal-norm band across horizons: mean, standard deviation (population, ddof 0:
    a description of these horizons, not an estimate), min, max, and the largest within-slice
    spread (the procedure's own uncertainty).

    ``column`` ``"log2_norm"`` (the slices' optimal norms) is in :func:`per_horizon`'s table
    only when it was given ``slices``; ``"log2_norm_at_best"`` always is."""
    if isinstance(horizons, pd.DataFrame) and column not in horizons:
        hint = (" (per_horizon adds it only when given slices=optimal_norms(...); "
                "or pass column='log2_norm_at_best')") if column == "log2_norm" else ""
        raise ValueError(f"band: the table has no column {column!r}{hint}; it has "
                         f"{list(horizons.columns)}")  # fmt: skip
    require_columns(horizons, [column], "band")
    v = pd.to_numeric(horizons[column], errors="coerce").astype(float)
    v = v[np.isfinite(v)]
    if v.empty:
        raise ValueError(f"band: no finite {column!r} values")
    spread = horizons["spread"].max() if "spread" in horizons else math.nan
    return {"mean": float(v.mean()), "std": float(v.std(ddof=0)), "min": float(v.min()),
            "max": float(v.max()), "n": len(v), "procedure_spread": float(spread)}  # fmt: skip


def first_reaching(table: pd.DataFrame, level: float) -> pd.DataFrame:
    """At each (D, B): the smallest η whose output norm reaches log₂ norm ≥ ``level``,
    interpolated linearly in (log₂ η, log₂ norm) between the grid points around the crossing.
    Slices that never reach it are left out. Columns: horizon, batch_size, lr_reach, and
    ``censored``: the grid's smallest η already reaches the level, so ``lr_reach`` is only an
    upper bound (leave such slices out of a fit)."""
    t = tidy(table)
    rows = []
    for (h, b), g in t.groupby(["horizon", "batch_size"]):
        g = g[np.isfinite(g["log2_norm"])].sort_values("lr")
        u = np.log2(positive_values(g["lr"], "lr", "first_reaching"))
        x = g["log2_norm"].to_numpy(float)
        hit = np.flatnonzero(x >= level)
        if not len(hit):
            continue
        i = hit[0]
        if i == 0:
            u_reach = u[0]
        else:
            u_reach = u[i - 1] + (u[i] - u[i - 1]) * (level - x[i - 1]) / (x[i] - x[i - 1])
        rows.append({"horizon": h, "batch_size": b, "lr_reach": float(2.0**u_reach),
                     "censored": bool(i == 0)})  # fmt: skip
    return pd.DataFrame(rows, columns=["horizon", "batch_size", "lr_reach", "censored"])


def joint_fit(slices: pd.DataFrame, lr: str = "lr", bootstrap: int = 1000,
              seed: int = 0) -> PowerLaw:  # fmt: skip
    """log₂η = α·log₂B + β·log₂D + γ, i.e. η = c·B^α·D^β (least squares in logs)."""
    return fit_power_law(slices, lr, ["batch_size", "horizon"], bootstrap=bootstrap, seed=seed)


def scaling_fits(horizons: pd.DataFrame, bootstrap: int = 1000,
                 seed: int = 0) -> dict[str, PowerLaw]:  # fmt: skip
    """η*(D) and B*(D) as power laws in the horizon, over each horizon's best cell.

    The bootstrap resamples horizons as if independent. They are not: one constant-LR run is
    read at every horizon, so a few runs supply all the optima, and each optimum is rounded to
    the grid. Read the intervals as conditional on those runs; :func:`leave_one_out` gives a
    second, cruder measure (how far one horizon moves the exponent).
    """
    return {"lr": fit_power_law(horizons, "lr", "horizon", bootstrap=bootstrap, seed=seed),
            "batch_size": fit_power_law(horizons, "batch_size", "horizon", bootstrap=bootstrap,
                                        seed=seed)}  # fmt: skip


def leave_one_out(horizons: pd.DataFrame, target: str) -> tuple[float, float]:
    """The range of the exponent of ``target`` ∝ D^β refitted without each horizon in turn
    (least squares in logs); needs at least 4 horizons."""
    who = "leave_one_out"
    require_columns(horizons, ["horizon", target], who)
    if len(horizons) < 4:
        raise ValueError(f"{who}: need at least 4 horizons, got {len(horizons)}")
    x = np.log(positive_values(horizons["horizon"], "horizon", who))
    y = np.log(positive_values(horizons[target], target, who))
    if len(np.unique(x)) < len(x):
        raise ValueError(f"{who}: horizons repeat; give one row per horizon")
    betas = [np.polyfit(np.delete(x, i), np.delete(y, i), 1)[0] for i in range(len(x))]
    return float(min(betas)), float(max(betas))


def initial_point(run: dict) -> tuple[float, float]:
    """(log₂‖W_out‖_{RMS→∞}, validation loss) of a sweep run's model before training: the
    fixed point every learning rate starts from. ``run`` is a resolved run config
    (``sweep.Run.config``)."""
    import torch

    from optimal_scaling import norms
    from optimal_scaling.sweep.runner import (
        _loss,
        build_data,
        build_model,
        build_optimizer,
        val_batches,
    )

    data = build_data(run["data"])
    model = build_model(run, data.vocab_size)
    build_optimizer(run, model)  # its init, where the optimizer re-initializes
    model.eval()
    with torch.no_grad():
        loss = sum(_loss(model(x), y).item() for x, y in val_batches(run, data))
    head = model.head.weight.detach()
    return float(math.log2(norms.operator_norm(head, "rms->inf").item())), loss / run[
        "eval_batches"]


# --------------------------------------------------------------------------- figures
def plot_norm_growth(table: pd.DataFrame, role: str = "output"):
    """Each run's ``norm[role]`` against tokens (log–log), colour = η, one panel per B;
    ``role`` is a layer whose ``norm[role]`` column the table has."""
    import plotly.express as px

    t = tidy(table)
    if f"norm[{role}]" not in t:
        roles = [c[5:-1] for c in t.columns if c.startswith("norm[") and c.endswith("]")]
        raise ValueError(f"plot_norm_growth: no column 'norm[{role}]'; the roles the table has "
                         f"are {roles}")  # fmt: skip
    t = t[np.isfinite(t[f"norm[{role}]"].astype(float))].copy()
    t["log2 η"] = np.log2(t["lr"]).round(2).astype(str)
    fig = px.line(t.sort_values("horizon"), x="horizon", y=f"norm[{role}]", color="log2 η",
                  facet_col="batch_size", log_x=True, log_y=True, markers=True,
                  title=f"{role} layer norm growth (natural norm) against tokens",
                  labels={"horizon": "tokens D"})  # fmt: skip
    return fig


def plot_loss_vs_norm(table: pd.DataFrame, horizon: int, center: float | None = None,
                      width: float | None = None):  # fmt: skip
    """Loss against log₂ output norm across η, one line per B, at one horizon; the band
    ``center ± width`` shaded. ``horizon`` must be one of the table's horizons."""
    import plotly.express as px

    t = tidy(table)
    if not (t["horizon"] == horizon).any():
        raise ValueError(f"plot_loss_vs_norm: no runs at horizon {horizon!r}; the table has "
                         f"{sorted(t['horizon'].unique().tolist())}")  # fmt: skip
    t = t[(t["horizon"] == horizon) & np.isfinite(t["val_loss"]) & np.isfinite(t["log2_norm"])]
    fig = px.line(t.sort_values("log2_norm"), x="log2_norm", y="val_loss", color="batch_size",
                  markers=True, hover_data=["lr"],
                  title=f"loss against log₂‖W_out‖_RMS→∞ across learning rates, D = "
                  f"2^{math.log2(horizon):.0f}",
                  labels={"log2_norm": "log₂ output norm"})  # fmt: skip
    if center is not None and width is not None:
        fig.add_vrect(x0=center - width, x1=center + width, fillcolor="grey", opacity=0.2,
                      line_width=0)  # fmt: skip
    return fig


def plot_band(horizons: pd.DataFrame):
    """The optimal log₂ norm at each horizon (± half its procedure spread) and the norm the
    best cell reached, against the paper's band (labelled as theirs)."""
    import plotly.graph_objects as go

    center, half = PAPER["log2_norm"]
    fig = go.Figure()
    if "log2_norm" in horizons:
        fig.add_trace(go.Scatter(x=horizons["horizon"], y=horizons["log2_norm"],
                                 mode="markers+lines", name="optimal log₂ norm (± half spread)",
                                 error_y=dict(type="data", array=horizons["spread"] / 2)))
    fig.add_trace(go.Scatter(x=horizons["horizon"], y=horizons["log2_norm_at_best"],
                             mode="markers", name="norm of the best cell"))
    fig.add_hrect(y0=center - half, y1=center + half, fillcolor="orange", opacity=0.2,
                  line_width=0, annotation_text=f"the paper: {center} ± {half}")
    fig.update_xaxes(type="log", title_text="tokens D")
    fig.update_yaxes(title_text="log₂‖W_out‖_RMS→∞")
    fig.update_layout(title="the optimal output norm across horizons")
    return fig


def plot_scaling(horizons: pd.DataFrame, fits: dict[str, PowerLaw]):
    """η* and B* against D at each horizon's best cell, with the fitted power laws."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=["η*(D)", "B*(D)"])
    D = np.geomspace(horizons["horizon"].min(), horizons["horizon"].max(), 50)
    for col, name in enumerate(("lr", "batch_size"), start=1):
        fig.add_trace(go.Scatter(x=horizons["horizon"], y=horizons[name], mode="markers",
                                 name=f"best {name}", showlegend=False), 1, col)
        if name in fits:
            law = fits[name]
            lo, hi = law.intervals.get("horizon", (math.nan, math.nan))
            fig.add_trace(go.Scatter(x=D, y=law(horizon=D), mode="lines", showlegend=False,
                                     line=dict(dash="dash", color="black")), 1, col)
            fig.layout.annotations[col - 1].text += (
                f": ∝ D^{law.exponents['horizon']:.2f} [{lo:.2f}, {hi:.2f}]")
    fig.update_xaxes(type="log", title_text="tokens D")
    fig.update_yaxes(type="log")
    fig.update_layout(title="the best (η, B) against the horizon, with power-law fits")
    return fig

