r"""Measurements during training: weight norms in natural units, and alignment ratios.

**Natural norms.** The spectral condition (Yang, Simon & Bernstein) asks that every weight
matrix and its update satisfy

    ‖W‖_* = Θ(√(n_out/n_in))  and  ‖ΔW‖_* = Θ(√(n_out/n_in)),

which is the same as asking that their RMS→RMS operator norms,
‖W‖_{RMS→RMS} = √(n_in/n_out)·‖W‖_*, stay Θ(1) as width grows. :func:`norm_sweep` trains a
model at several widths and records ‖W‖ and ‖ΔW‖ = ‖W_t − W_0‖ in that norm for every layer.

**Alignment.** Everett et al. define the log alignment ratio of a layer with input z,

    A = log_{fan_in} ( ‖W z‖_RMS / (‖W‖_RMS · ‖z‖_RMS) ),

with ‖W‖_RMS the entrywise RMS. For W independent of z the ratio is about √fan_in (A ≈ ½);
when W's rows line up with z it reaches fan_in (A ≈ 1). Training aligns the updates ΔW with
the layer's inputs, which is why update sizes must be set with A ≈ 1 in mind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import torch
from torch import nn

from optimal_scaling._validate import check_int
from optimal_scaling.fitting import require_columns
from optimal_scaling.norms import rms, rms_to_rms


def log_alignment_ratio(W: torch.Tensor, z: torch.Tensor) -> float:
    """A = log_fan_in(‖W z‖_RMS / (‖W‖_RMS ‖z‖_RMS)) for W (d_out, d_in) and inputs z (..., d_in).

    The RMS of ``W z`` and of ``z`` run over every entry (batch and features together).
    −inf when W z = 0 (the inputs lie in W's null space); NaN when W or z is all zeros.
    """
    if W.ndim != 2:
        raise ValueError(f"log_alignment_ratio: expected a matrix (d_out, d_in), got shape "
                         f"{tuple(W.shape)}")  # fmt: skip
    if z.shape[-1] != W.shape[1]:
        raise ValueError(f"log_alignment_ratio: inputs of width {z.shape[-1]} do not match W of "
                         f"shape {tuple(W.shape)}")  # fmt: skip
    fan_in = W.shape[1]
    if fan_in < 2:
        raise ValueError("log_alignment_ratio: needs fan_in ≥ 2 (it is a log base fan_in)")
    W, z = W.detach().float(), z.detach().float()
    ratio = (rms(z @ W.T) / (rms(W) * rms(z))).item()
    if not ratio > 0:  # W·z = 0 (z in W's null space), or W or z all zeros: no log
        return -math.inf if ratio == 0 else math.nan
    return math.log(ratio) / math.log(fan_in)


def linear_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` and return the input of every module with a 2-D ``weight`` (embeddings
    excepted: their input is token ids)."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, n=n: inputs.__setitem__(n, args[0].detach()))
        for n, m in model.named_modules()
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim == 2
        and not isinstance(m, nn.Embedding)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return inputs


def layer_measurements(
    model: nn.Module, initial: dict[str, torch.Tensor], x: torch.Tensor
) -> list[dict]:
    """Per linear layer: ‖W‖ and ‖ΔW‖ (RMS→RMS), and the alignment of W and ΔW with its input.

    ``initial`` maps parameter names (``layer.weight``) to their values at initialization.
    Forward multipliers are folded in, so the norms are those of the map the layer computes.
    """
    rows = []
    for name, z in linear_inputs(model, x).items():
        key = f"{name}.weight" if name else "weight"  # the model itself may be the layer
        if key not in initial:
            raise KeyError(f"layer_measurements: initial has no {key!r}; pass "
                           "{n: p.detach().clone() for n, p in model.named_parameters()}")
        module = model.get_submodule(name)
        mult = float(getattr(module, "multiplier", 1.0))
        W = module.weight.detach().float() * mult
        start = initial[key]
        if not isinstance(start, torch.Tensor) or start.shape != W.shape:
            got = tuple(start.shape) if isinstance(start, torch.Tensor) else type(start).__name__
            raise ValueError(f"layer_measurements: initial[{key!r}] has shape {got}, the "
                             f"layer's weight {tuple(W.shape)}")  # fmt: skip
        dW = W - start.to(W.device).float() * mult
        z2 = z.reshape(-1, z.shape[-1])
        has_update = bool(dW.abs().max() > 0)
        rows.append({
            "layer": name or type(model).__name__,
            "fan_in": W.shape[1],
            "fan_out": W.shape[0],
            "norm_W": rms_to_rms(W).item(),
            "norm_dW": rms_to_rms(dW).item(),
            "align_W": log_alignment_ratio(W, z2),
            "align_dW": log_alignment_ratio(dW, z2) if has_update else math.nan,
        })
    return rows


def norm_sweep(
    parametrization: str,
    widths: Sequence[int],
    steps: int = 20,
    lr: float = 1e-2,
    optimizer: str = "adam",
    seeds: Iterable[int] = (0,),
    record_every: int = 1,
    d_in: int = 16,
    depth: int = 3,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Train an MLP on a teacher task at each width; measure every layer along the way.

    ``widths`` and ``seeds`` are non-empty lists of ints, ``steps`` an int ≥ 0. Returns a tidy
    DataFrame: parametrization, width, seed, step, layer, fan_in, fan_out, norm_W, norm_dW,
    align_W, align_dW (step 0 is the initialization).
    """
    from optimal_scaling.data import TeacherTask
    from optimal_scaling.models import MLP
    from optimal_scaling.parametrization import Parametrization
    from optimal_scaling.train import mse

    for name, values in (("widths", widths), ("seeds", seeds)):
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise TypeError(f"norm_sweep: {name} must be a list of ints, got {values!r}")
    widths = sorted(check_int("norm_sweep", "each width", w, low=1) for w in widths)
    # a list: iterated once per width, a generator would run dry
    seeds = [check_int("norm_sweep", "each seed", s) for s in seeds]
    if not widths or not seeds:
        raise ValueError(f"norm_sweep: needs at least one width and one seed, got widths="
                         f"{widths}, seeds={seeds}")  # fmt: skip
    steps = check_int("norm_sweep", "steps", steps)
    record_every = check_int("norm_sweep", "record_every", record_every, low=1)
    par = Parametrization(parametrization, base_width=widths[0], optimizer=optimizer)
    task = TeacherTask(d_in=d_in, width=64, seed=0)
    x_probe, _ = task.batch(256, torch.Generator().manual_seed(7))
    # the parametrization's optimizer ("mup_sgd" means SGD whatever `optimizer` says)
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[par.optimizer]
    rows = []
    for width in widths:
        for seed in seeds:
            model = par.apply(MLP(d_in, width, 1, depth=depth), torch.Generator().manual_seed(seed))
            initial = {n: p.detach().clone() for n, p in model.named_parameters()}
            opt = opt_cls(par.param_groups(model, lr=lr))
            gen = torch.Generator().manual_seed(1000 + seed)
            for step in range(steps + 1):
                if step % record_every == 0 or step == steps:
                    for row in layer_measurements(model, initial, x_probe):
                        rows.append({"parametrization": parametrization, "width": width,
                                     "seed": seed, "step": step, **row})
                if step == steps:
                    break
                x, y = task.batch(batch_size, gen)
                loss = mse(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return pd.DataFrame(rows)


def width_slopes(df: pd.DataFrame, columns: Sequence[str] = ("norm_W", "norm_dW")) -> pd.DataFrame:
    """Log–log slope against width of each column, per parametrization, layer and step.
    ``df`` (a :func:`norm_sweep` table) must not be empty."""
    keys = ["parametrization", "layer", "step"]
    require_columns(df, [*keys, "width", *columns], "width_slopes")
    if df.empty:
        raise ValueError("width_slopes: the table is empty")
    mean = df.groupby([*keys, "width"], as_index=False)[list(columns)].mean()
    rows = []
    for key, g in mean.groupby(keys):
        row = dict(zip(keys, key, strict=True))
        for col in columns:
            ok = g[col] > 0
            row[col] = (float(np.polyfit(np.log(g["width"][ok]), np.log(g[col][ok]), 1)[0])
                        if ok.sum() >= 2 else math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_norms(df: pd.DataFrame, step: int | None = None, title: str = ""):
    """‖W‖ and ‖ΔW‖ (RMS→RMS) against width at one step of the table (default: the last),
    per layer."""
    require_columns(df, ["parametrization", "width", "layer", "seed", "step", "norm_W",
                         "norm_dW"], "plot_norms")  # fmt: skip
    steps = sorted(df["step"].unique().tolist())
    if not steps:
        raise ValueError("plot_norms: the table is empty")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise ValueError(f"plot_norms: no rows at step {step!r}; the table has steps {steps}")
    data = df[df["step"] == step].melt(
        id_vars=["parametrization", "width", "layer", "seed"], value_vars=["norm_W", "norm_dW"],
        var_name="quantity", value_name="RMS→RMS norm")
    data = data.groupby(["parametrization", "width", "layer", "quantity"], as_index=False).mean(
        numeric_only=True)
    return px.line(data, x="width", y="RMS→RMS norm", color="layer", line_dash="quantity",
                   facet_col="parametrization", markers=True, log_x=True, log_y=True,
                   title=title or f"natural norms at step {step}")


def plot_alignment(df: pd.DataFrame, column: str = "align_dW", title: str = ""):
    """Log alignment ratio over training, one line per layer, one facet per width."""
    if column not in ("align_W", "align_dW"):
        raise ValueError(f"plot_alignment: unknown column {column!r}; choose 'align_W' or "
                         "'align_dW'")  # fmt: skip
    data = df.groupby(["parametrization", "width", "layer", "step"], as_index=False)[column].mean()
    return px.line(data, x="step", y=column, color="layer", facet_col="width",
                   facet_row="parametrization", title=title or f"log alignment ratio ({column})")
