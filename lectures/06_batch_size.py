# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Data scaling and the critical batch size
#
# μP (lecture 01) and the norm-aware optimizers (lecture 05) make the optimal learning rate
# stop moving with **width**. This lecture asks what happens along the other axis, the amount
# of **data** D (tokens) a model trains on, and brings the second hyperparameter in: the
# batch size B. Scaling is "i.i.d." here: more tokens from the same distribution, no
# curriculum, no data-quality effects.
#
# 1. the optimal (η, B) at one token horizon is not optimal at another (a grid, read at eight
#    horizons);
# 2. the SDE view: the noise temperature ηD/(B(1 − m)), the rules it implies, where they break;
# 3. the **gradient noise scale** B_simple = tr Σ/‖G‖², measured while training, growing as
#    the loss falls;
# 4. the **steps–data trade-off** from real runs and the critical batch size B_crit it defines,
#    for several target losses;
# 5. η*(B) for SGD and for Adam (the "surge"), fitted to the grid; whether B_crit grows with D;
# 6. the published η*/B* laws side by side, and how much they disagree;
# 7. the recipe: measure it yourself with a sweep preset.
#
# Everything below is computed from runs: the long grid (153 runs, 97 minutes on 2 cores) is
# committed under `results/` with the command that regenerates it, and a seconds-long
# version of each experiment runs live.

# %%
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from ipywidgets import Dropdown, FloatLogSlider, interact
from plotly.subplots import make_subplots

import optimal_scaling as osc
from optimal_scaling import batch_size as bs
from optimal_scaling import fitting, scaling_laws
from optimal_scaling.results import read_table

osc.config.seed_everything(0)
ROOT = osc.course.repo_root()
RESULTS, CONFIGS = ROOT / "results", ROOT / "configs"
BOOT = osc.config.choose(fast=200, full=1000)  # bootstrap resamples for every interval
print(f"device: {osc.config.device()}, fast mode: {osc.config.fast_mode()}")

# %% [markdown]
# ## 1. The optimum moves with the horizon
#
# The experiment (`configs/batch_size_laptop.toml`): a 2-block GPT of width 64 on the bytes of
# the Python standard library's sources (context 64), AdamW (β = 0.9, 0.95, no weight decay)
# at a **constant** learning rate, on a grid of 17 learning rates (2⁻¹² … 2⁻⁴, √2 apart) × 9
# batch sizes (1 … 256 sequences). A constant-LR run is one run for all horizons: it is read
# at D = 2¹⁴, 2¹⁵, …, 2²¹ tokens (validation loss on fixed batches). Every run sees fresh
# data, so each point is one sample of "train on D tokens with (η, B)".

# %%
grid, meta = read_table(RESULTS / "batch_size_laptop.csv")
print("\n".join(f"{k}: {v}" for k, v in meta.items()))
grid = grid.drop(columns="lr").rename(columns={"optimizer.lr": "lr"})  # lr: the one set
grid["steps"] = grid["horizon"] // (grid["batch_size"] * grid["context"])
horizons = sorted(grid["horizon"].unique())
print(f"{grid['run_id'].nunique()} runs × {len(horizons)} horizons; "
      f"{int(grid.groupby('run_id')['diverged'].first().sum())} runs diverged")

# %% [markdown]
# The loss landscape over (log₂ η, B) at a short and at the longest horizon. Colours are
# clipped at 0.5 nats above each panel's best; a diverged run would be a white cell.

# %%
short, long_ = horizons[2], horizons[-1]
fig = make_subplots(rows=1, cols=2, subplot_titles=[f"D = 2^{math.log2(h):.0f} tokens"
                                                     for h in (short, long_)])
for col, h in enumerate((short, long_), start=1):
    table = grid[grid["horizon"] == h].pivot_table(index="batch_size", columns="lr",
                                                   values="val_loss", aggfunc="first")
    z = table.to_numpy()
    z = np.where(np.isfinite(z), z, np.nan)
    best = np.nanmin(z)
    fig.add_trace(go.Heatmap(z=np.minimum(z, best + 0.5), x=np.log2(table.columns),
                             y=[str(b) for b in table.index], coloraxis="coloraxis"), 1, col)
    i, j = np.unravel_index(np.nanargmin(z), z.shape)
    fig.add_trace(go.Scatter(x=[np.log2(table.columns[j])], y=[str(table.index[i])],
                             mode="markers", marker=dict(symbol="x", size=14, color="white"),
                             showlegend=False), 1, col)
fig.update_layout(coloraxis=dict(colorscale="Viridis", colorbar_title="val loss"),
                  title="validation loss over the (η, B) grid; × marks the best cell")
fig.update_xaxes(title_text="log₂ η")
fig.update_yaxes(title_text="batch size (sequences)", type="category")
fig.show()

# %% [markdown]
# The best cell at every horizon. `at_edge` says when the optimum sits on the border of the
# grid (then the true optimum may lie outside it).

# %%
best = fitting.find_optimum(grid, over=["lr", "batch_size"], metric="val_loss", by="horizon")
best["log2_lr"] = np.log2(best["lr"])
best["B_tokens"] = best["batch_size"] * int(grid["context"].iloc[0])
best[["horizon", "log2_lr", "batch_size", "B_tokens", "val_loss", "at_edge"]]

# %% [markdown]
# Grid cells are a factor √2 (η) and 2 (B) apart, so refine: for each (D, B), a parabola in
# log₂ η through the grid minimum and its neighbours gives η*(B, D) and the loss there; then
# the same in log₂ B over those losses gives B*(D).

# %%
per_b = fitting.find_optimum(grid, over="lr", metric="val_loss", by=["horizon", "batch_size"],
                             method="parabola")
per_b["steps"] = per_b["horizon"] // (per_b["batch_size"] * int(grid["context"].iloc[0]))
star = fitting.find_optimum(per_b[np.isfinite(per_b["val_loss"])], over="batch_size",
                            metric="val_loss", by="horizon", method="parabola")
star = star.merge(per_b.loc[per_b.groupby("horizon")["val_loss"].idxmin(), ["horizon", "lr"]],
                  on="horizon")
star[["horizon", "batch_size", "refined", "at_edge", "lr", "val_loss"]]

# %% [markdown]
# How B* and η* move with D, as power laws fitted in logs (bootstrap intervals). Only the
# horizons whose optimum B is interior to the grid enter the B* fit; η*(D) uses every
# horizon, including those where B* sits at the grid's edge (η* is then read at a boundary
# B). The horizons are readings of the same constant-LR runs, not independent samples: the
# intervals are conditional on those runs and understate the uncertainty, and on three
# points a bootstrap has only a handful of distinct resamples.

# %%
inner = star[~star["at_edge"] & star["refined"]]
if len(inner) >= 3:
    b_law = fitting.fit_power_law(inner, "batch_size", ["horizon"], bootstrap=BOOT)
    print("B*(D):", b_law)
else:
    b_law = None
    print(f"only {len(inner)} horizons have an interior B*: no fit (the optimum is at the "
          "grid's edge elsewhere)")
eta_law = fitting.fit_power_law(star, "lr", ["horizon"], bootstrap=BOOT)
print("η*(D) at B*:", eta_law)
print("edge horizons:", star.loc[star["at_edge"], "horizon"].tolist())

# %% [markdown]
# ## 2. The SDE view: a noise temperature
#
# Treat SGD with learning rate η, momentum m, batch B over D examples as a stochastic
# differential equation: the gradient noise it injects has a scale
#
# $$T = \frac{\eta D}{B(1-m)}$$
#
# (up to constants; Smith & Le). If the outcome depends only on T, keeping T fixed gives
# scaling rules: **η ∝ B** at fixed D, and **η ∝ 1/D** at fixed B. Two caveats. The SDE is a
# continuous-time limit: it breaks when the steps are large (η too big, B above the critical
# batch size, where the noise is no longer what limits progress). And it is SGD's: Adam's
# normalization changes the rule (the square-root rule η ∝ √B is the usual Adam analogue).
#
# The measured η*(B) at each horizon, with lines of slope 1 (SGD's rule) and ½ (Adam's) for
# reference:

# %%
fig = px.line(per_b[np.isfinite(per_b["val_loss"])], x="batch_size", y="lr", color="horizon",
              markers=True, log_x=True, log_y=True,
              title="η*(B) at each horizon D (parabola-refined; open circles: the grid "
                    "minimum kept, at an edge or without a valley), slope-1 and slope-½ guides",
              labels={"lr": "η*", "batch_size": "B (sequences)"})
edge = per_b[np.isfinite(per_b["val_loss"]) & ~per_b["refined"]]
fig.add_trace(go.Scatter(x=edge["batch_size"], y=edge["lr"], mode="markers",
                         marker=dict(symbol="circle-open", size=14, color="black"),
                         name="not refined"))
b0, b1, e0 = per_b["batch_size"].min(), per_b["batch_size"].max(), per_b["lr"].min()
for slope, dash in ((1.0, "dash"), (0.5, "dot")):
    fig.add_trace(go.Scatter(x=[b0, b1], y=[e0, e0 * (b1 / b0) ** slope], mode="lines",
                             line=dict(color="grey", dash=dash), name=f"∝ B^{slope:g}"))
fig.show()
measured = per_b[np.isfinite(per_b["val_loss"])]
for part, rows in (("B ≤ 32", measured.batch_size <= 32), ("B ≥ 32", measured.batch_size >= 32)):
    slopes = [np.polyfit(np.log(g.batch_size), np.log(g.lr), 1)[0]
              for _, g in measured[rows].groupby("horizon") if g.batch_size.nunique() >= 2]
    print(f"log-log slope of η*(B) for {part}, per horizon: {np.round(slopes, 2).tolist()}")

# %% [markdown]
# The temperature at the optimum, η*·D/(B(1 − β₁)), should be one number if the SDE rule
# held. Its spread across B (at fixed D) and across D (at fixed B), in octaves:

# %%
ok = per_b[np.isfinite(per_b["val_loss"])].copy()
ok["log2_T"] = np.log2(bs.noise_temperature(ok["lr"], ok["horizon"] / 64, ok["batch_size"],
                                            momentum=0.9))  # D in sequences of 64 tokens
spread_b = ok.groupby("horizon")["log2_T"].agg(lambda x: x.max() - x.min())
spread_d = ok.groupby("batch_size")["log2_T"].agg(lambda x: x.max() - x.min())
print("spread of log2 T* across batch sizes, per horizon:", spread_b.round(1).tolist())
print("spread of log2 T* across horizons, per batch size:", spread_d.round(1).tolist())
print(f"for comparison, the grid spans {np.log2(ok['horizon'].max() / ok['horizon'].min()):.0f} "
      f"octaves in D and {np.log2(ok['batch_size'].max() / ok['batch_size'].min()):.0f} in B")

# %% [markdown]
# A temperature constant within a few octaves over a 128× range in D would be the rule
# working; a spread close to the range of D itself means η* hardly moves with D and the rule
# fails along that axis. The printout says which one happens here; section 5 explains the
# shape of η*(B) with a model that has the breakdown built in.

# %% [markdown]
# ## 3. The gradient noise scale, measured while training
#
# A minibatch gradient G_B of B examples has E‖G_B‖² = ‖G‖² + tr Σ / B, Σ the per-example
# gradient covariance. McCandlish et al. define the **simple noise scale**
#
# $$B_\text{simple} = \frac{\operatorname{tr}\Sigma}{\lVert G\rVert^2}$$
#
# — the batch size at which the noise in the gradient is as large as the gradient itself.
# Two batch sizes B_s < B_b give unbiased estimates of both terms:
#
# $$\lVert G\rVert^2 \approx \frac{B_b\lVert G_b\rVert^2 - B_s\lVert G_s\rVert^2}{B_b-B_s},
# \qquad \operatorname{tr}\Sigma \approx
# \frac{\lVert G_s\rVert^2 - \lVert G_b\rVert^2}{1/B_s - 1/B_b}.$$
#
# Gradient accumulation gives both for free: each micro-batch gradient is a small batch, their
# mean the big one (`bs.GradientNoiseProbe`, switched on in a sweep by `noise_scale = true`).
# Per-step estimates are noisy, so the two terms are smoothed (EMA) and the ratio taken of the
# smoothed terms, never the mean of per-step ratios.
#
# The committed run (`configs/batch_size_noise_laptop.toml`): the model of section 1 at
# B = 64 in 8 micro-batches of 8, at two learning rates, logging every step.

# %%
noise, noise_meta = read_table(RESULTS / "batch_size_noise_laptop_log.csv")
print(noise_meta["command"])
noise = noise.rename(columns={"optimizer.lr": "lr"})
curves = []
for _, g in noise.groupby("lr"):
    g = g.sort_values("step").copy()
    g["B_simple"] = bs.b_simple_curve(g["gns_g2"], g["gns_trace"], decay=0.95)
    g["loss (EMA)"] = g["train_loss"].ewm(alpha=0.05).mean()
    curves.append(g)
curves = pd.concat(curves)
fig = make_subplots(rows=1, cols=2, subplot_titles=["B_simple (sequences) over training",
                                                    "B_simple against the training loss"])
for k, (lr, g) in enumerate(curves.groupby("lr")):
    color = px.colors.qualitative.Plotly[k]
    fig.add_trace(go.Scatter(x=g["tokens"], y=g["B_simple"], name=f"η = 2^{np.log2(lr):.0f}",
                             line=dict(color=color)), 1, 1)
    fig.add_trace(go.Scatter(x=g["loss (EMA)"], y=g["B_simple"], showlegend=False,
                             line=dict(color=color)), 1, 2)
fig.update_xaxes(type="log", title_text="tokens", row=1, col=1)
fig.update_xaxes(title_text="training loss (EMA)", autorange="reversed", row=1, col=2)
fig.update_yaxes(type="log", title_text="B_simple")
fig.show()
for lr, g in curves.groupby("lr"):
    q = g.iloc[[len(g) // 10, len(g) // 2, -1]]
    print(f"η = 2^{np.log2(lr):.0f}: B_simple " + " → ".join(
        f"{b:.0f} at loss {l:.2f}" for b, l in zip(q["B_simple"], q["loss (EMA)"], strict=True)))

# %% [markdown]
# B_simple grows as the loss falls: early on the gradient is large and consistent across
# examples, so small batches already estimate it well; later the remaining signal is small
# compared with the per-example disagreement, and averaging more examples pays. That is the
# mechanism behind "the critical batch size grows during training".
#
# The same probe, live: a tiny run with 4 micro-batches of 4 sequences per step.

# %%
live_dir = Path(tempfile.mkdtemp(prefix="lecture06_"))
probe_sweep = osc.sweep.load(CONFIGS / "batch_size_ci.toml", [
    "batch_size=16", "micro_batch_size=4", "noise_scale=true", "log_every=1",
    "optimizer.lr=0.004", f"horizons=[8192, {osc.config.choose(32768, 131072)}]"])
osc.sweep.run(probe_sweep, live_dir / "noise", progress=False)
live_log = osc.sweep.collect_log(live_dir / "noise")
live_b = bs.b_simple_curve(live_log["gns_g2"], live_log["gns_trace"], decay=0.9)
n = len(live_b)
loss = live_log["train_loss"]
print(f"{n} steps; B_simple (EMA): {live_b[n // 10]:.1f} → {live_b[n // 2]:.1f} → "
      f"{live_b[-1]:.1f} sequences while the loss went {loss.iloc[:5].mean():.2f} → "
      f"{loss.iloc[-5:].mean():.2f}")

# %% [markdown]
# ## 4. Steps versus data: the critical batch size
#
# To reach a given loss, a run at batch size B needs S steps and E = S·B examples. McCandlish
# et al. found the trade-off
#
# $$\Big(\frac{S}{S_\min} - 1\Big)\Big(\frac{E}{E_\min} - 1\Big) = 1,
# \qquad S = S_\min\Big(1 + \frac{B_\text{crit}}{B}\Big),\quad
# E = E_\min\Big(1 + \frac{B}{B_\text{crit}}\Big),\quad B_\text{crit} = \frac{E_\min}{S_\min}.$$
#
# Far below B_crit, doubling B halves the steps for free (perfect data parallelism); far above,
# it doubles the data for no saving in steps. At B = B_crit both cost twice their minimum.
# Since S = S_min + E_min/B is a line in 1/B, the fit is least squares
# (`bs.fit_critical_batch`), on relative residuals (S − Ŝ)/S: the step at which a noisy loss
# crosses a target is uncertain in proportion to the step, and plain least squares would let
# the small batches' long runs decide alone.
#
# From the grid's training logs: for every run, the first step where its training loss reaches
# the target; for every B, the best learning rate's steps (each batch size gets its own tuned η,
# as in the paper).
#
# "The first step where the loss is ≤ the target" needs care, because a logged loss is noisy:
# an entry at B = 1 is a mean over 8 sequences, at B = 256 over 2,048. The **running minimum** of
# the log, the obvious choice, is the minimum of the noise as well, several standard deviations
# below the curve, and it gets there earliest in the noisiest runs: the small batches. Instead we
# fit the least-squares **non-increasing** curve to each run's log (isotonic regression: adjacent
# entries that go the wrong way are pooled into their mean) and read the crossing off that fit.
# A run whose loss turns up late (too high an η) is first cut where a fall-then-rise fit turns
# (`bs.falling_curve`). Each fitted value is a mean over a block of entries, so the noise
# averages out instead of being selected.
#
# How noisy are the logs? The spread of successive differences in the second half of each run
# (where the trend between two entries is negligible) gives the noise per entry, by B. Then a
# planted curve, 1.5 + 30/√step logged every 8 steps to 2¹⁵ with the B = 1 logs' noise, in 20
# copies: where does each reading put the crossings whose true steps are (30/(t − 1.5))²?

# %%
log, log_meta = read_table(RESULTS / "batch_size_laptop_log.csv")
log = log.rename(columns={"optimizer.lr": "lr"})
noise = log.sort_values("step").groupby(["batch_size", "lr"])["train_loss"].agg(
    lambda y: np.std(np.diff(y.to_numpy()[len(y) // 2:])) / np.sqrt(2))
noise = noise.groupby(level="batch_size").median()
print("noise per log entry (median over the learning rates), by B: "
      + ", ".join(f"{b:g}: {v:.3f}" for b, v in noise.items()))
rng = np.random.default_rng(0)
step = np.arange(8, 2**15 + 1, 8)
planted = pd.concat([pd.DataFrame({"run_id": r, "step": step, "train_loss": 1.5 + 30 / np.sqrt(step)
                                   + noise.loc[1] * rng.normal(size=step.size)})
                     for r in range(20)])
truth = {t: (30 / (t - 1.5)) ** 2 for t in (2.5, 2.0, 1.8)}
for curve in ("falling", "running-min"):
    got = bs.steps_to_target(planted, list(truth), curve=curve).groupby("target")["steps"]
    print(f"planted curve, {curve}: median crossing / true step: " + ", ".join(
        f"{t:g}: {got.median()[t] / true:.2f}" for t, true in truth.items()))

# %% [markdown]
# On the planted curve the running minimum reaches the targets at a sixth to two thirds of the
# true step, the later targets (where the curve is flatter) worst; the falling fit is within
# 4%. The noise shrinks about as 1/√B, so the bias is the small batches'. On the grid's logs:

# %%
targets = [3.0, 2.7, 2.5, 2.3, 2.1, 2.0, 1.9, 1.8]
reach = bs.steps_to_target(log, targets)  # the falling fit of the raw log entries
reach = reach.dropna(subset=["steps"])
fastest = reach.loc[reach.groupby(["target", "batch_size"])["steps"].idxmin()].copy()
fastest["examples"] = fastest["steps"] * fastest["batch_size"]
fits = {}
for t, g in fastest.groupby("target"):
    try:
        fits[t] = bs.fit_critical_batch(g, bootstrap=BOOT)
    except ValueError as err:
        print(f"target {t}: {err}")
crit = pd.DataFrame([{"target": t, "batch sizes": f.n, "S_min": f.s_min, "E_min": f.e_min,
                      "B_crit": f.b_crit, "B_crit 95% interval": f.intervals.get("b_crit")}
                     for t, f in fits.items()])
crit

# %% [markdown]
# How a crossing is read off a log is part of the measurement, and the bootstrap intervals
# above do not include it. B_crit read three ways (no bootstrap): from the falling fit of the
# raw entries (as above), of entries first averaged over a trailing window of 3 or 5 (which
# delays every crossing a little), and of the log thinned to entries at least 3% apart in step
# (as `sweep collect --spacing 0.03` writes it to save space); and, for comparison, from the
# running minimum at the same three smoothings, which is how this lecture read the logs before.
# The last two lines print, by batch size, how much earlier the running minimum reaches the
# targets than the falling fit, and how much a 5-entry window delays the falling fit.

# %%
def fastest_steps(curve: str, smooth: int, runs_log: pd.DataFrame = log) -> pd.Series:
    """Steps to each target at each batch size, at its fastest learning rate."""
    r = bs.steps_to_target(runs_log, targets, smooth=smooth, curve=curve)
    return r.dropna(subset=["steps"]).groupby(["target", "batch_size"])["steps"].min()


def b_crit_by_target(steps: pd.Series) -> dict[float, float]:
    out = {}
    for t, g in steps.reset_index().groupby("target"):
        try:
            out[t] = bs.fit_critical_batch(g, bootstrap=0).b_crit
        except ValueError:
            out[t] = np.nan
    return out


steps_by = {(curve, k): fastest_steps(curve, k) for curve in ("falling", "running-min")
            for k in (1, 3, 5)}
readings = pd.DataFrame({f"{curve}, smooth={k}": b_crit_by_target(v)
                         for (curve, k), v in steps_by.items()})
readings["falling, thinned 3%"] = b_crit_by_target(
    fastest_steps("falling", 1, osc.sweep.thin_log(log, 0.03)))
readings.index.name = "target"
for curve in ("falling", "running-min"):
    cols = [c for c in readings if c.startswith(curve)]
    spread = readings[cols].max(axis=1) / readings[cols].min(axis=1)
    print(f"{curve}: largest / smallest B_crit across its readings, by target loss: "
          + ", ".join(f"{t:g}: {r:.1f}×" for t, r in spread.sort_index(ascending=False).items()))
same = (readings[[f"falling, smooth={k}" for k in (1, 3, 5)]].to_numpy()
        / readings[[f"running-min, smooth={k}" for k in (1, 3, 5)]].to_numpy())
low = (readings.index <= 2.5)[:, None] & np.ones_like(same, dtype=bool)
print(f"B_crit, falling fit / running minimum at the same smoothing: {np.nanmin(same):.1f}× to "
      f"{np.nanmax(same):.1f}× ({np.nanmin(same[low]):.1f}× to {np.nanmax(same[low]):.1f}× "
      "from a loss of 2.5 down)")
early = (steps_by["running-min", 1] / steps_by["falling", 1]).groupby(level="batch_size")
print("steps to a target, running minimum / falling fit (median over targets), by B: "
      + ", ".join(f"{b:g}: {v:.2f}" for b, v in early.median().items()))
lag = (steps_by["falling", 5] / steps_by["falling", 1]).groupby(level="batch_size").median()
print("steps to a target, falling fit of 5-entry means / of raw entries (median), by B: "
      + ", ".join(f"{b:g}: {v:.2f}" for b, v in lag.items()))
readings.round(1)

# %% [markdown]
# What the two readings do to one run's log: the raw entries (grey), their running minimum and
# the falling fit, for the run at B = 1 that reaches a loss of 2.0 first under the falling fit.
# The dotted verticals mark where each curve crosses the target.

# %%
lrs = sorted(log["lr"].unique())


def show_crossing(batch_size: int, lr: float, target: float) -> go.Figure:
    run = log[(log["batch_size"] == batch_size) & np.isclose(log["lr"], lr)].sort_values("step")
    step, y = run["step"].to_numpy(), run["train_loss"].to_numpy()
    fall = bs.falling_curve(y)
    fig = go.Figure([
        go.Scattergl(x=step, y=y, mode="markers", name="log entries",
                     marker=dict(size=3, color="lightgray")),
        go.Scatter(x=step, y=np.minimum.accumulate(y), name="running minimum"),
        go.Scatter(x=step[: len(fall)], y=fall, name="falling fit"),
    ])
    fig.add_hline(y=target, line_dash="dot", line_color="black")
    said = []
    for curve, color in (("running-min", px.colors.qualitative.Plotly[1]),
                         ("falling", px.colors.qualitative.Plotly[2])):
        at = bs.steps_to_target(run, target, curve=curve)["steps"].iloc[0]
        said.append(f"{curve} at step {at:.0f}" if np.isfinite(at) else f"{curve} never")
        if np.isfinite(at):
            fig.add_vline(x=at, line_dash="dot", line_color=color)
    fig.update_xaxes(type="log", title_text="step")
    fig.update_yaxes(title_text="training loss (mean over 8 steps)", range=[1.5, 4])
    fig.update_layout(height=380, title=f"B = {batch_size}, η = 2^{np.log2(lr):.1f}, loss "
                      f"{target} reached: " + ", ".join(said))
    return fig


first = reach[(reach["batch_size"] == 1) & (reach["target"] == 2.0)].nsmallest(1, "steps")
show_crossing(1, float(first["lr"].iloc[0]), 2.0).show()

# %% [markdown]
# Any run: how far apart the two readings are depends on the batch size (the noise) and on how
# flat the curve is at the target.

# %%
interact(lambda batch_size, lr, target: show_crossing(batch_size, lr, target).show(),
         batch_size=Dropdown(options=sorted(log["batch_size"].unique()), value=1),
         lr=Dropdown(options=[(f"2^{np.log2(v):.1f}", v) for v in lrs],
                     value=float(first["lr"].iloc[0])),
         target=Dropdown(options=targets, value=2.0));

# %%
fig = go.Figure()
for k, (t, g) in enumerate(fastest.groupby("target")):
    color = px.colors.qualitative.Plotly[k % 10]
    fig.add_trace(go.Scatter(x=g["steps"], y=g["examples"], mode="markers+text",
                             text=g["batch_size"].astype(str), textposition="top right",
                             marker=dict(color=color), name=f"loss {t}"))
    if t in fits:
        f = fits[t]
        B = np.geomspace(1, 4096, 200)
        fig.add_trace(go.Scatter(x=f.steps(B), y=f.examples(B), mode="lines", showlegend=False,
                                 line=dict(color=color, dash="dot")))
        fig.add_trace(go.Scatter(x=[2 * f.s_min], y=[2 * f.e_min], mode="markers",
                                 marker=dict(symbol="star", size=13, color=color),
                                 showlegend=False))
fig.update_xaxes(type="log", title_text="steps S to reach the target")
fig.update_yaxes(type="log", title_text="examples E = S·B (sequences)")
fig.update_layout(title="the steps–data trade-off (labels: B; ★: B = B_crit, twice S_min and "
                  "twice E_min; dotted: the fitted hyperbola)")
fig.show()

# %% [markdown]
# How B_crit moves as the target loss falls, beside the noise scale B_simple the probe
# measured at the same loss (section 3; McCandlish et al. predict B_crit ≈ B_simple up to a
# factor that depends on the optimizer and the loss surface):

# %%
probes = []
for lr, ref in curves.groupby("lr"):  # B_simple at the same loss, from each probe run
    ref = ref.sort_values("loss (EMA)")
    name = f"B_simple (probe η=2^{np.log2(lr):.0f})"
    crit[name] = np.interp(crit["target"], ref["loss (EMA)"], ref["B_simple"],
                           left=np.nan, right=np.nan)  # nan: the probe never reached that loss
    probes.append(name)
print(crit[["target", "B_crit", "B_crit 95% interval", *probes]]
      .to_string(index=False, float_format=lambda v: f"{v:.3g}"))
simple_over_crit = crit[probes].div(crit["B_crit"], axis=0)
print("B_simple / B_crit by target loss (range over the probe runs): " + ", ".join(
    f"{t:g}: {lo:.1f}–{hi:.1f}×" for t, lo, hi in
    zip(crit["target"], simple_over_crit.min(axis=1), simple_over_crit.max(axis=1),
        strict=True)))
if len(crit) >= 2:
    down = crit.sort_values("target", ascending=False)
    print(f"B_crit from a loss of {down.target.iloc[0]:g} to {down.target.iloc[-1]:g}:",
          down["B_crit"].round(1).tolist(), f"({down.B_crit.iloc[-1] / down.B_crit.iloc[0]:.0f}×;"
          " compare neighbours with their intervals)")

# %% [markdown]
# The **"20% overhead" definition** beside it: where does the hyperbola cost 20% more than its
# minimum? In data, E/E_min − 1 = B/B_crit, so B = 0.2·B_crit; in steps, S/S_min − 1 =
# B_crit/B, so B = 5·B_crit. Which one is "the" critical batch size depends on what one pays
# for: data (pre-training on a fixed corpus) or wall-clock steps (a fixed deadline).

# %%
pd.DataFrame([{"target": t, "B_crit": f.b_crit, **{f"20% more {k}": v for k, v in
                                                    bs.overhead_batch(f.b_crit, 0.2).items()}}
              for t, f in fits.items()]).round(1)

# %% [markdown]
# ## 5. η*(B): SGD's saturation and Adam's surge
#
# The same analysis gives the optimal learning rate as a function of B. For **SGD**, the
# largest useful step grows linearly with B until the gradient is noiseless, then saturates:
#
# $$\eta^*_\text{SGD}(B) = \frac{\eta_\text{crit}}{1 + B_\text{crit}/B}.$$
#
# For **Adam** the normalization by the second moment changes the picture ("surge", Li et al.
# 2024): η* rises as √B for small B, **peaks at B = B_crit**, then falls:
#
# $$\eta^*_\text{Adam}(B) =
# \frac{\eta_\text{crit}}{\sqrt{B/B_\text{crit}} + \sqrt{B_\text{crit}/B}}.$$
#
# The paper writes η_max/[½(√(B_noise/B) + √(B/B_noise))]: the same curve with
# η_crit = 2·η_max; the peak value is η_crit/2 = η_max.
#
# To see both shapes, the grid of section 1 was run a second time with **SGD** (momentum 0.9,
# 10 learning rates a factor 2 apart, horizons to 2²⁰; `configs/batch_size_sgd_laptop.toml`).
# Both models are fitted to η*(B) of both optimizers at each horizon, in logs, with bootstrap
# intervals (`bs.fit_eta_of_b`); only (D, B) cells with at least 8 steps and an interior,
# parabola-refined optimum enter.

# %%
sgd_grid, sgd_meta = read_table(RESULTS / "batch_size_sgd_laptop.csv")
print(sgd_meta["command"])
sgd_grid = sgd_grid.drop(columns="lr").rename(columns={"optimizer.lr": "lr"})


def optima_per_batch(table: pd.DataFrame) -> pd.DataFrame:
    """η*(B, D) refined by a parabola in log₂ η; the cells a fit of η*(B) can use."""
    out = fitting.find_optimum(table, over="lr", metric="val_loss",
                               by=["horizon", "batch_size"], method="parabola")
    out["steps"] = out["horizon"] // (out["batch_size"] * int(table["context"].iloc[0]))
    interior = out["refined"] & ~out["at_edge"]  # a refined vertex can still sit at the edge
    return out[np.isfinite(out["val_loss"]) & interior & (out["steps"] >= 8)]


usable = {"AdamW": optima_per_batch(grid), "SGD": optima_per_batch(sgd_grid)}
eta_fits = []
for optimizer, cells in usable.items():
    for h, g in cells.groupby("horizon"):
        if g["batch_size"].nunique() < 4:
            continue
        for model in ("sgd", "surge"):
            f = bs.fit_eta_of_b(g, model=model, lr="lr", bootstrap=BOOT)
            resid = np.log(g["lr"]) - np.log(f(g["batch_size"]))
            eta_fits.append({"optimizer": optimizer, "horizon": h, "model": model,
                             "eta_crit": f.eta_crit, "B_crit": f.b_crit,
                             "B_crit interval": f.intervals.get("b_crit"),
                             "B_crit inside the Bs": f.b_crit_inside,
                             "rms log error": float(np.sqrt(np.mean(resid**2))), "fit": f,
                             "batch sizes": g["batch_size"].nunique(),
                             "largest B": g["batch_size"].max()})
eta_fits = pd.DataFrame(eta_fits, columns=["optimizer", "horizon", "model", "eta_crit",
                                           "B_crit", "B_crit interval", "B_crit inside the Bs",
                                           "rms log error", "fit", "batch sizes", "largest B"])
eta_fits.drop(columns="fit").round(4)

# %%
fig = make_subplots(rows=2, cols=2, shared_xaxes=True, vertical_spacing=0.08,
                    subplot_titles=["AdamW · SGD model", "AdamW · surge model",
                                    "SGD · SGD model", "SGD · surge model"])
for row, (optimizer, cells) in enumerate(usable.items(), start=1):
    for k, (h, g) in enumerate(cells.groupby("horizon")):
        color = px.colors.sequential.Viridis[min(k, 9)]
        for col, model in enumerate(("sgd", "surge"), start=1):
            fig.add_trace(go.Scatter(x=g["batch_size"], y=g["lr"], mode="markers",
                                     marker=dict(color=color), name=f"D = 2^{math.log2(h):.0f}",
                                     showlegend=row == 1 and col == 1), row, col)
            fit = eta_fits[(eta_fits["optimizer"] == optimizer) & (eta_fits["horizon"] == h)
                           & (eta_fits["model"] == model)]
            if len(fit):
                B = np.geomspace(1, 512, 100)
                fig.add_trace(go.Scatter(x=B, y=fit["fit"].iloc[0](B), mode="lines",
                                         line=dict(color=color), showlegend=False), row, col)
fig.update_xaxes(type="log")
fig.update_xaxes(title_text="B (sequences)", row=2)
fig.update_yaxes(type="log", title_text="η*")
fig.update_layout(height=650, title="η*(B) at each horizon: optima (dots), fitted models (lines)")
fig.show()

# %% [markdown]
# Which model fits each optimizer better (RMS error of log η* per horizon; lower is better),
# and how B_crit moves with D under each model. Theory assigns the surge to Adam and the
# saturation to SGD, but the fits decide nothing by themselves, so both are shown. The
# shortest horizons allow fewer batch sizes (at least 8 steps), so the B_crit(D) fit is also
# repeated on the horizons that share the whole batch range. For comparison: the
# Time-Transfer paper finds B_crit ∝ T^(1.0 ± 0.2) in training time; Power Lines finds
# B_crit ∝ D^0.46–0.47 (it reports its fit and an earlier one agreeing: 0.47 vs. 0.462).

# %%
bcrit_laws = {}
if len(eta_fits):
    errors = eta_fits.pivot_table(index=["optimizer", "horizon"], columns="model",
                                  values="rms log error")
    print(errors.round(3).to_string())
    for optimizer, e in errors.groupby(level="optimizer"):
        print(f"{optimizer}: SGD's model fits better at {int((e['sgd'] < e['surge']).sum())} of "
              f"{len(e)} horizons (mean RMS {e['sgd'].mean():.3f} vs the surge's "
              f"{e['surge'].mean():.3f})")
    for optimizer in usable:
        for model in ("surge", "sgd"):
            chosen = eta_fits[(eta_fits["optimizer"] == optimizer)
                              & (eta_fits["model"] == model)]
            inside = chosen[chosen["B_crit inside the Bs"]]  # within the batch sizes fitted
            print(f"{optimizer}, {model} model: B_crit inside the measured B range at "
                  f"{len(inside)} of {len(chosen)} horizons: " + ", ".join(
                      f"D=2^{math.log2(h):.0f}: {b:.1f} (largest B {m:g})" for h, b, m in
                      zip(chosen["horizon"], chosen["B_crit"], chosen["largest B"], strict=True)))
            full = inside[inside["largest B"] == usable[optimizer]["batch_size"].max()]
            for name, rows in (("", inside), (", horizons with the whole B range", full)):
                if len(rows) >= 3:
                    law = fitting.fit_power_law(rows.rename(columns={"B_crit": "b_crit"}),
                                                "b_crit", ["horizon"], bootstrap=BOOT)
                    bcrit_laws[optimizer, model, name] = law
                    print(f"    B_crit(D){name}: {law}")

# %% [markdown]
# Play with the two models against the optima at one horizon:

# %%
def explore(optimizer: str, horizon: int, eta_crit: float, b_crit: float) -> None:
    g = usable[optimizer][usable[optimizer]["horizon"] == horizon]
    B = np.geomspace(1, 1024, 200)
    fig = go.Figure([
        go.Scatter(x=g["batch_size"], y=g["lr"], mode="markers", name=f"{optimizer}: η*"),
        go.Scatter(x=B, y=bs.eta_sgd(B, eta_crit, b_crit), name="SGD: η_c/(1 + B_c/B)"),
        go.Scatter(x=B, y=bs.eta_surge(B, eta_crit, b_crit),
                   name="Adam: η_c/(√(B/B_c) + √(B_c/B))"),
    ])
    fig.add_vline(x=b_crit, line_dash="dot")
    fig.update_xaxes(type="log", title_text="B")
    fig.update_yaxes(type="log", title_text="η*", range=[-4.5, 1])
    fig.update_layout(title=f"{optimizer}, D = 2^{math.log2(horizon):.0f} tokens", height=380)
    fig.show()


shown = sorted(set(usable["AdamW"]["horizon"]) | set(usable["SGD"]["horizon"]))
interact(explore, optimizer=Dropdown(options=list(usable)),
         horizon=Dropdown(options=shown, value=2**20 if 2**20 in shown else shown[-1]),
         eta_crit=FloatLogSlider(value=0.02, base=10, min=-4, max=1, step=0.05),
         b_crit=FloatLogSlider(value=32, base=2, min=0, max=10, step=0.25));

# %% [markdown]
# ## 6. The published laws, side by side
#
# Large labs fit η* and B* as power laws in compute C, parameters N and data D. They do not
# agree, and their units differ (tokens or sequences; parameters with or without embeddings),
# so `osc.scaling_laws` keeps each law with its units and source:

# %%
scaling_laws.catalogue()[["name", "formula", "units", "source", "note"]]

# %% [markdown]
# In common units, at N = 10⁸ parameters and D = 2·10⁹ tokens (C = 6ND; batches in tokens,
# sequences of 4096 tokens for the norm-transfer paper), with each law's exponent in D at fixed
# N (a C exponent counts, since C ∝ D at fixed N). The value is NaN for laws published as
# proportionalities and for Bjorck et al.'s, whose printed prefactor gives ~10⁻¹⁰ here: its
# units are not the raw counts, so only its exponents compare:

# %%
common = scaling_laws.common_units(1e8, 2e9, context=4096)
common.round({"d_exponent": 3}).assign(value=common["value"].map(lambda v: f"{v:.3g}"))

# %%
D = np.geomspace(1e9, 1e12, 50)
rows = []
for d in D:
    t = scaling_laws.common_units(1e8, d, anchor_D=1e9)
    rows.append(t.assign(D=d))
rel = pd.concat(rows)
rel = rel[rel["d_exponent"] != 0]
order = [q for q in ("lr", "batch", "b_crit") if q in set(rel["quantity"])]
fig = px.line(rel, x="D", y="relative", color="name", facet_col="quantity", log_x=True,
              log_y=True, category_orders={"quantity": order},
              title="each law's η* and B* relative to its value at D = 10⁹ (fixed N): the "
              "exponents in D; dashed: this lecture's grid")
for quantity, law in [("lr", eta_law), ("batch", b_law)]:
    if law is None or quantity not in order:
        continue
    a = law.exponents["horizon"]
    fig.add_trace(go.Scatter(x=D, y=(D / 1e9) ** a, mode="lines", name=f"this grid ∝ D^{a:.2f}",
                             line=dict(color="black", dash="dash")),
                  row=1, col=order.index(quantity) + 1)
fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
fig.show()

# %% [markdown]
# The disagreement is not in the third digit. For η*, Step Law's exponent in D is **positive**
# (+0.31 at fixed N) while Bjorck et al., HyperP and the norm-transfer paper find −0.28 to −0.32
# and DeepSeek's compute law gives −0.125; for B*, the exponents range from 0.33 (DeepSeek, via
# C) to 0.57 (Step Law), with Power Lines' B_crit at 0.46–0.47 and the norm-transfer B* at 0.45.
# Part of it is setup: SP or μP, with or without weight decay (Power Lines ties η to the EMA
# timescale B/(ηλD)), schedules, and whether η* is read at the tuned B or at a fixed one. A law
# fitted to one recipe does not transfer to another, which is why the slides end with:
#
# ## 7. Measure it yourself
#
# 1. take a small proxy model in μP or with a norm-aware optimizer (so width transfers);
# 2. run a grid over (D, B, η) as far as compute allows, with B large enough to go above
#    B_crit;
# 3. fit η*, B* and B_crit as functions of D;
# 4. check the fits on a held-out larger run.
#
# With this package that is a preset and three commands (`optimal-scaling sweep run` /
# `collect`, then the fits above); `configs/batch_size_gpu.toml` is the same learning-rate
# axis for one GPU with a 4× wider, 2× deeper model, context 256 instead of 64 (so 4× the
# tokens per sequence), batch sizes 1–512 sequences instead of 1–256, and horizons from 2^18
# instead of 2^14, 8× longer at the top (not yet run by the course). Here is the whole
# pipeline live on the CI-sized preset (15 runs, seconds):

# %%
small = osc.sweep.load(CONFIGS / "batch_size_ci.toml")
print(osc.sweep.run(small, live_dir / "grid", progress=False))
live = osc.sweep.collect(live_dir / "grid").drop(columns="lr")
live = live.rename(columns={"optimizer.lr": "lr"})
fitting.find_optimum(live, over=["lr", "batch_size"], metric="val_loss", by="horizon")

# %% [markdown]
# ## What the runs showed, and what they did not
#
# Read off by code from the committed results (the printout below), and what we make of it:
#
# * **Shown.** The gradient noise scale grows during training (from about 15 to about 100 sequences
#   in each probe run, item 3), and so does the critical batch size of the steps–data trade-off:
#   from 1–2 sequences for a loss of 3.0 to about 70 for 1.8 (item 4). Read off a least-squares
#   falling fit of each run's log, B_crit changes by at most 1.5× from a loss of 2.5 down (up to 2×
#   above) between raw, averaged and thinned logs (section 4). The running minimum of the logs,
#   which this lecture used before, gives a B_crit 1.1–8.5× smaller from a loss of 2.5 down (section
#   4), and one that moves by up to 3× with the smoothing: the smallest batches' losses are the
#   noisiest, and the minimum of their noise reaches a target 2–4× early at B = 1 and 2. From a loss
#   of 2.5 down, B_crit comes within 0.7–3.3× of the noise scale B_simple that the probe runs
#   measure at the same loss (about 1× at 1.9 and 1.8), as McCandlish et al. predict (section 4
#   prints the ratios; above 2.5, B_simple is 2–10× larger). A step between two neighbouring targets
#   (2.5 and 2.3 go the wrong way) is not a finding; the growth over the whole range is. The η*(B)
#   fits agree that AdamW's B_crit grows with D, under either model, on the five horizons that have
#   the whole batch range, with exponents of about 0.3–0.4 whose intervals exclude zero and include
#   Power Lines' 0.46–0.47; over all eight horizons the exponents are a little smaller and the
#   interval of the SGD-model fit starts near zero (item 5; the horizons are readings of the same
#   runs, so all these intervals understate the uncertainty). SGD's B_crit grows with D under both
#   models too: about D^0.3 under its own, whose B_crit of one to a few sequences sits inside the
#   batch range at five of seven horizons, and faster (D^0.4–0.55) under the surge (item 5). SGD's
#   η* has its model's saturating shape: it rises by 1.3 octaves from B = 1 to 4 and by about half
#   an octave over the six doublings after that (medians over horizons, item 6), and SGD's model
#   fits it better at five of seven horizons (section 5's table). AdamW's best batch at a fixed
#   token budget is tiny: 1 or 2 sequences (64–128 tokens) at every horizon up to 2²⁰ tokens, 8 at
#   2²¹ (item 1).
# * **Not shown at this scale.** AdamW's B* does not grow steadily with D: the best cell is B = 1,
#   1, 2, 2, 1, 1, 2, 8 across the horizons and sits on B = 1 at four of them (item 1). One sequence
#   is the smallest batch this context allows (fewer tokens per step would need a shorter context,
#   another experiment), so at those four horizons the optimum may lie below any batch this setup
#   can run. The refined B* of the four interior horizons gives an exponent whose interval spans
#   negative and positive values alike (item 2): no B*(D) law follows. AdamW's η* does not fall with
#   D: its fitted exponent is compatible with zero, unlike the negative exponents of the published
#   laws (but those use decayed schedules, larger models and horizons 10³–10⁵× longer; with a
#   constant rate and a loss still falling fast, the short-horizon optimum need not move). The SDE
#   rule η ∝ B fails: η* moves far less than B (for AdamW a log-log slope of 0.21–0.50 up to B = 32,
#   at most ½, and at most 0.18 beyond except at the shortest horizon, where the largest batches
#   take a handful of steps: section 2). The fits do not pick Adam's surge: for AdamW the two models
#   fit η*(B) about equally well (section 5's table), and η* flattens past B = 32 rather than
#   falling. For SGD, η* moves little with B (at most 2.7 octaves across a horizon's batch sizes,
#   where η ∝ B would move 8) and sits 1.7–4.4 octaves below the learning rate where every batch
#   size diverges (item 6). SGD's best batch is one sequence, the grid's smallest, at every horizon
#   (item 6), so its B* is out of this setup's reach as well.

# %%
print("1. best (η, B) by horizon: " + "; ".join(
    f"D=2^{math.log2(r.horizon):.0f}: η=2^{np.log2(r.lr):.1f}, B={r.batch_size:g}"
    + (" (edge)" if r.at_edge else "") for r in best.itertuples()))
def interval(law, name="horizon") -> str:
    lo, hi = law.intervals.get(name, (math.nan, math.nan))
    return f"[{lo:+.2f}, {hi:+.2f}]"


print(f"2. η*(D) at B*: exponent {eta_law.exponents['horizon']:+.2f} {interval(eta_law)}")
if b_law is not None:
    print(f"   B*(D) over {b_law.n} interior horizons: exponent "
          f"{b_law.exponents['horizon']:+.2f} {interval(b_law)}")
for lr, g in curves.groupby("lr"):
    print(f"3. B_simple at η=2^{np.log2(lr):.0f}: {g['B_simple'].iloc[len(g) // 10]:.0f} → "
          f"{g['B_simple'].iloc[-1]:.0f} sequences")
print("4. B_crit by target loss: " + ", ".join(
    f"{t}: {f.b_crit:.1f} [{f.intervals['b_crit'][0]:.1f}, {f.intervals['b_crit'][1]:.1f}]"
    for t, f in fits.items()))
for (optimizer, model, rows), law in bcrit_laws.items():
    print(f"5. {optimizer}, {model} model{rows}: B_crit(D) ∝ D^{law.exponents['horizon']:+.2f} "
          f"{interval(law)} ({law.n} horizons)")
sgd_star = usable["SGD"]
span = sgd_star.groupby("horizon")["lr"].agg(lambda x: np.log2(x.max() / x.min()))
runs_at = sgd_grid.groupby("lr")["batch_size"].nunique()
diverging = sgd_grid[sgd_grid["diverged"]].groupby("lr")["batch_size"].nunique()
all_diverge = diverging[diverging == runs_at[diverging.index]].index.min()
below = np.log2(all_diverge / sgd_star["lr"])
print(f"6. SGD: η* spans {span.min():.2f}–{span.max():.2f} octaves across the batch sizes of a "
      f"horizon ({np.log2(sgd_star.batch_size.max() / sgd_star.batch_size.min()):.0f} octaves "
      f"of B); every batch size diverged from η = {all_diverge:g}, {below.min():.1f}–"
      f"{below.max():.1f} octaves above η*")
sgd_best = fitting.find_optimum(sgd_grid, over=["lr", "batch_size"], metric="val_loss",
                                by="horizon")
eta_by_b = np.log2(sgd_star.groupby(["batch_size", "horizon"])["lr"].first()
                   .groupby(level="batch_size").median())
print("   SGD's log2 η* by B (median over horizons): "
      + ", ".join(f"{b:g}: {v:.1f}" for b, v in eta_by_b.items()))
print(f"   SGD's best B by horizon: {sgd_best['batch_size'].astype(int).tolist()} (grid "
      f"B = {sgd_grid['batch_size'].min()}…{sgd_grid['batch_size'].max()}); the best cell is "
      f"on the grid's edge at {int(sgd_best['at_edge'].sum())} of {len(sgd_best)} horizons")
