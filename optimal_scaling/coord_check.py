"""Coordinate checks and learning-rate transfer: do activations and optima stay put as width grows?

**Coordinate check** (the convention of microsoft/mup): build the model at several widths,
train each for a few steps on *one fixed batch* (reused at every step), and record for each
layer the mean absolute value of its output coordinates,

    out_ℓ(t) = mean_i |h_ℓ,i(t)|,        delta_ℓ(t) = mean_i |h_ℓ,i(t) − h_ℓ,i(1)|,

where step 1 is measured *before* any update. A parametrization is healthy when every curve
is flat in width: on log–log axes the slope of each statistic against width is ≈ 0. Under
the standard parametrization with Adam the output logits' change grows like width.

**LR transfer**: train at every (width, learning rate) of a grid and find each width's
optimum; under μP the optimum (and the divergence edge) stays put across width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import torch
from torch import nn

from optimal_scaling._validate import check_int, check_number
from optimal_scaling.fitting import require_columns
from optimal_scaling.train import TrainResult

STATS = ("out", "delta")
_STEPS_NOTE = "(a coordinate check needs at least 2 steps)"


def _layers(model: nn.Module, names: Sequence[str] | None) -> dict[str, nn.Module]:
    """Modules to watch: the given names, else every module that owns a weight matrix."""
    if names is not None:
        return {n: model.get_submodule(n) for n in names}
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim == 2
    }


def record_coords(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int = 4,
    layers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Coordinate statistics of one model over ``steps`` steps on one reused ``batch``.

    Rows: ``step`` (1 = before any update), ``layer``, ``stat`` ("out" or "delta"),
    ``value``, plus ``loss`` (the loss at that step, before its update). ``steps``: an int ≥ 2.
    """
    steps = check_int("record_coords", "steps", steps, low=2, note=_STEPS_NOTE)
    watched = _layers(model, layers)
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, n=n: outputs.__setitem__(n, out.detach()))
        for n, m in watched.items()
    ]
    x, y = batch
    first: dict[str, torch.Tensor] = {}
    rows = []
    try:
        for step in range(1, steps + 1):
            loss = loss_fn(model(x), y)
            for name, out in outputs.items():
                out = out.float()
                if step == 1:
                    first[name] = out.clone()
                rows.append(
                    {
                        "step": step,
                        "layer": name,
                        "stat": "out",
                        "value": out.abs().mean().item(),
                        "loss": loss.item(),
                    }
                )
                rows.append(
                    {
                        "step": step,
                        "layer": name,
                        "stat": "delta",
                        "value": (out - first[name]).abs().mean().item(),
                        "loss": loss.item(),
                    }
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        for h in hooks:
            h.remove()
    return pd.DataFrame(rows)


def coord_check(
    make_model: Callable[[int], nn.Module],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batch: tuple[torch.Tensor, torch.Tensor],
    widths: Iterable[int],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int = 4,
    seeds: Iterable[int] = (0,),
    layers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Coordinate statistics across widths and seeds: a tidy DataFrame, one row per
    width × seed × step × layer × stat (:func:`fit_slopes` and :func:`plot_coords` average the
    seeds).

    ``make_model(width)`` returns a model on the batch's device, already parametrized;
    ``make_optimizer(model)`` its optimizer. Columns: width, seed, step, layer, stat, value,
    loss (the training loss at that step).
    """
    steps = check_int("coord_check", "steps", steps, low=2, note=_STEPS_NOTE)
    widths, seeds = list(widths), list(seeds)
    if not widths or not seeds:
        raise ValueError("coord_check: need at least one width and one seed")
    frames = []
    for width in widths:
        for seed in seeds:
            torch.manual_seed(seed)
            model = make_model(width)
            df = record_coords(model, make_optimizer(model), batch, loss_fn, steps, layers)
            frames.append(df.assign(width=width, seed=seed))
    return pd.concat(frames, ignore_index=True)


def mlp_coord_check(
    parametrization: str = "mup",
    optimizer: str = "adam",
    widths: Sequence[int] = (128, 256, 512, 1024, 2048),
    lr: float | None = None,
    steps: int = 4,
    seeds: Iterable[int] = range(4),
    depth: int = 3,
    d_in: int = 16,
    batch_size: int = 4,
) -> pd.DataFrame:
    """The course's standard coordinate check: an MLP regressor at several widths.

    Base width = the smallest width; one random batch of ``batch_size`` inputs reused at every
    step; Adam at lr 1e-2 or SGD at lr 0.05 unless ``lr`` is given.
    """
    from optimal_scaling.models import MLP
    from optimal_scaling.parametrization import Parametrization
    from optimal_scaling.train import mse

    who = "mlp_coord_check"
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"{who}: unknown optimizer {optimizer!r}; choose 'adam' or 'sgd'")
    steps = check_int(who, "steps", steps, low=2, note=_STEPS_NOTE)
    widths = sorted(widths)
    if not widths:
        raise ValueError(f"{who}: need at least one width")
    par = Parametrization(parametrization, base_width=widths[0], optimizer=optimizer)
    optimizer = par.optimizer  # "mup_sgd" means SGD whatever `optimizer` says
    lr = lr if lr is not None else (1e-2 if optimizer == "adam" else 0.05)
    g = torch.Generator().manual_seed(0)
    batch = torch.randn(batch_size, d_in, generator=g), torch.randn(batch_size, 1, generator=g)
    opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD

    def make_model(width: int) -> nn.Module:
        gen = torch.Generator().manual_seed(torch.initial_seed())
        return par.apply(MLP(d_in, width, 1, depth=depth), gen)

    def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return opt_cls(par.param_groups(model, lr=lr))

    return coord_check(make_model, make_optimizer, batch, widths, mse, steps=steps, seeds=seeds)


def fit_slopes(df: pd.DataFrame) -> pd.DataFrame:
    """Least-squares slope of log(value) against log(width), per layer, step and statistic.

    Seeds are averaged first. Steps where a statistic is zero at some width (``delta`` at
    step 1) get no slope.
    """
    mean = df.groupby(["layer", "stat", "step", "width"], as_index=False)["value"].mean()
    rows = []
    for (layer, stat, step), g in mean.groupby(["layer", "stat", "step"]):
        if (g["value"] <= 0).any() or g["width"].nunique() < 2:
            continue
        slope = np.polyfit(np.log(g["width"]), np.log(g["value"]), 1)[0]
        rows.append({"layer": layer, "stat": stat, "step": step, "slope": float(slope)})
    return pd.DataFrame(rows, columns=["layer", "stat", "step", "slope"])


def plot_coords(df: pd.DataFrame, stat: str = "out", title: str = ""):
    """Plotly figure: the statistic against width (log–log), one line per layer, one facet
    per step."""
    if stat not in STATS:
        raise ValueError(f"plot_coords: unknown statistic {stat!r}; choose from {STATS}")
    data = df[df["stat"] == stat].groupby(["step", "layer", "width"], as_index=False)["value"]
    data = data.mean()
    if stat == "delta":
        data = data[data["step"] > 1]
    label = "mean |h|" if stat == "out" else "mean |h − h₀|"
    fig = px.line(
        data,
        x="width",
        y="value",
        color="layer",
        facet_col="step",
        markers=True,
        log_x=True,
        log_y=True,
        labels={"value": label},
        title=title,
    )
    widths = sorted(data["width"].unique())
    fig.update_xaxes(tickvals=widths, ticktext=[str(w) for w in widths])  # not "2 3 4 … 1000"
    return fig


# ---------------------------------------------------------------------- learning-rate transfer
def lr_transfer(
    run: Callable[[int, float], TrainResult],
    widths: Iterable[int],
    lrs: Iterable[float],
    progress: bool = False,
) -> pd.DataFrame:
    """Train at every (width, lr) and return the loss grid.

    ``run(width, lr)`` trains one model and returns its :class:`TrainResult`. Columns: width,
    lr, log2_lr, loss (final validation loss, ``inf`` for a diverged run), train_loss,
    initial_loss (the first step's loss), diverged, reason, seconds.
    """
    import time

    from tqdm.auto import tqdm

    lrs = list(lrs)  # iterated once per width: a generator would run dry
    if not lrs or not all(math.isfinite(lr) and lr > 0 for lr in lrs):
        raise ValueError(f"lr_transfer needs positive, finite learning rates, got {lrs}")
    grid = [(w, lr) for w in widths for lr in lrs]
    rows = []
    for width, lr in tqdm(grid, disable=not progress, desc="lr transfer"):
        start = time.perf_counter()
        result = run(width, lr)
        rows.append(
            {
                "width": width,
                "lr": lr,
                "log2_lr": math.log2(lr),
                "loss": result.final_val_loss,
                "train_loss": result.final_loss,
                "initial_loss": float(result.history["loss"].iloc[0]),
                "diverged": result.diverged,
                "reason": result.reason,
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    return pd.DataFrame(rows)


def optima(
    grid: pd.DataFrame, by: str | Sequence[str] = ("width",), margin: float = 0.5
) -> pd.DataFrame:
    """Per group: the best learning rate, its loss, and two edges above it.

    A run *fails* when it diverged, its loss is not finite, or it ended no better than it
    started (``loss ≥ initial_loss``). ``divergence_lr`` is the smallest failing learning rate
    above the optimum; ``edge_lr`` the smallest one whose loss exceeds the best by more than
    ``margin`` (nats), failed runs included: where the loss curve's right wall begins. Both are
    NaN when the grid holds no such learning rate. ``by`` is one column name or several; an
    empty grid is an error.
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in (*by, "lr", "loss", "diverged") if c not in grid.columns]
    if missing:
        raise ValueError(f"optima: the grid has no column {missing}; it has {list(grid.columns)}")
    if grid.empty:
        raise ValueError("optima: the grid is empty (no runs)")
    for col in ("lr", "loss", "initial_loss"):
        if col in grid and (not pd.api.types.is_numeric_dtype(grid[col])
                            or pd.api.types.is_bool_dtype(grid[col])):  # fmt: skip
            raise TypeError(f"optima: column {col!r} must hold numbers, got dtype "
                            f"{grid[col].dtype}")  # fmt: skip
    margin = check_number("optima", "margin", margin, low=0)
    rows = []
    for key, g in grid.reset_index(drop=True).groupby(by):  # concatenated grids repeat
        failed = g["diverged"] | ~np.isfinite(g["loss"])  # index labels: make them unique
        if "initial_loss" in g:
            failed |= g["loss"] >= g["initial_loss"]
        ok = g[~failed]
        if ok.empty:
            best_lr, best = math.nan, math.nan
        else:
            top = ok.iloc[int(np.argmin(ok["loss"].to_numpy(dtype=float)))]
            best_lr, best = top["lr"], top["loss"]
        above = g["lr"] > (0.0 if ok.empty else best_lr)
        diverged = g[above & failed]
        wall = g[above & (failed | (g["loss"] > best + margin))]
        key = key if isinstance(key, tuple) else (key,)
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "best_lr": best_lr,
                "log2_best_lr": math.log2(best_lr) if best_lr == best_lr else math.nan,
                "best_loss": best,
                "edge_lr": wall["lr"].min() if len(wall) else math.nan,
                "divergence_lr": diverged["lr"].min() if len(diverged) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def plot_lr_transfer(grid: pd.DataFrame, title: str = "", facet: str | None = None):
    """Loss against learning rate, one curve per width, each optimum marked with a star;
    ``facet``: a column of ``grid`` to split the panels by."""
    require_columns(grid, ["width", "lr", "loss", "diverged", *([facet] if facet else [])],
                    "plot_lr_transfer")  # fmt: skip
    by = ["width"] + ([facet] if facet else [])
    best = optima(grid, by)  # first: it checks the columns' types
    data = grid[np.isfinite(grid["loss"])].copy()
    data["width"] = data["width"].astype(str)
    # One explicit panel order, used both by plotly and for the stars below (plotly's own
    # default, order of appearance, is not the sorted order).
    panels = list(dict.fromkeys(data[facet])) if facet else [None]
    fig = px.line(
        data,
        x="lr",
        y="loss",
        color="width",
        facet_col=facet,
        category_orders={facet: panels} if facet else None,
        markers=True,
        log_x=True,
        title=title,
    )
    best = best[np.isfinite(best["best_loss"])]
    for i, name in enumerate(panels):
        sub = best if facet is None else best[best[facet] == name]
        fig.add_scatter(
            x=sub["best_lr"],
            y=sub["best_loss"],
            mode="markers",
            marker={"symbol": "star", "size": 14, "color": "black"},
            name="optimum",
            showlegend=i == 0,
            row=1,
            col=i + 1,
        )
    return fig
