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
# # 01 · Hyperparameters and μP
#
# A training recipe has dozens of hyperparameters: learning rate, initialization scale,
# momentum, ε, weight decay, warmup, batch size. Their best values depend on the model's
# size. Tuning them directly on the model you care about means many full-size runs; tuning
# them on a small proxy is only useful if the optimum **transfers** to the large model.
#
# The *Maximal Update Parametrization* (μP, Tensor Programs V) is a rule for how
# initialization, per-layer multipliers and per-layer learning rates must change with width
# so that the optimum does transfer. This lecture builds it from the package and measures it.

# %%
import math

import numpy as np
import pandas as pd
import plotly.express as px
import torch
from IPython.display import display
from ipywidgets import Dropdown, IntRangeSlider, interact

import optimal_scaling as osc
from optimal_scaling.coord_check import fit_slopes, mlp_coord_check, plot_coords
from optimal_scaling.models import MLP
from optimal_scaling.parametrization import Parametrization

print(f"device: {osc.config.device()}, fast mode: {osc.config.fast_mode()}")

# %% [markdown]
# ## Why tuning at scale is expensive
#
# A grid with `k` values for each of `h` hyperparameters costs `k^h` runs. With the
# `C ≈ 6·N·D` rule of lecture 00, here is what a modest grid would cost at three model sizes
# (20 tokens per parameter, the compute-optimal ratio of lecture 08):

# %%
grid_runs = 5**3  # five values each of learning rate, init scale and batch size
cost = pd.DataFrame(
    [{"params N": n, "tokens D": 20 * n, "FLOPs per run": 6 * n * 20 * n,
      f"FLOPs for {grid_runs} runs": grid_runs * 6 * n * 20 * n} for n in (1e8, 1e9, 1e10)]
)
cost.style.format("{:.2e}")

# %% [markdown]
# ## abc-parametrizations
#
# Give every weight matrix three width exponents: a **multiplier** $n^{-a}$ in the forward
# pass, an **init** $W \sim \mathcal{N}(0, n^{-2b})$, and a **learning rate** $\eta\, n^{-c}$.
# The package writes every rule relative to a *base width* `n₀` (where you tune), with the
# width ratios
# `r_in = fan_in/fan_in₀` and `r_out = fan_out/fan_out₀`, so that a preset reproduces the base
# model exactly at `n = n₀`.
#
# The μP table (Tensor Programs V, **Table 3 form**; `form="table8"` gives the equivalent form
# used by the microsoft/mup library, which moves the readout's `1/n` into a multiplier):
#
# |             | input weights & biases | output weights | hidden weights |
# |---|---|---|---|
# | init variance | 1/fan_in | 1/fan_in² | 1/fan_in |
# | SGD LR | fan_out | 1/fan_in | 1 |
# | Adam LR | 1 | 1/fan_in | 1/fan_in |
#
# Here is the package's version of it for an MLP at base width 64 and width 256 (so every
# ratio that involves the width is 4; the input's fan_in and the readout's fan_out stay put):

# %%
mlp = MLP(16, 256, 10, depth=3)
for optimizer in ("adam", "sgd"):
    table = Parametrization("mup", base_width=64, optimizer=optimizer).table(mlp)
    print(f"μP for {optimizer}:")
    display(table[["role", "fan_in", "fan_out", "init_std", "multiplier", "lr_mult", "eps_mult"]])

# %% [markdown]
# Read `init_std` as *relative to the base model*: at the base width every matrix starts with
# the standard std $1/\sqrt{\text{fan\_in}_0}$, and the table's exponent multiplies it by the
# width ratio. The readout here has $\text{fan\_in}_0 = 64$ and $r_{in} = 4$, so its std is
# $\frac{1}{\sqrt{64}} \cdot \frac{1}{4} = 0.03125$, not $1/\text{fan\_in} = 1/256$: the
# variance $1/\text{fan\_in}^2$ of the table holds up to the constant fixed at the base width.

# %% [markdown]
# The exponents themselves can be *measured* from the package: compute each rule at widths
# 256 and 1024 and take `−log(ratio)/log(4)`. This reproduces the table above, and shows how
# the other presets differ: SP changes nothing but the init, NTK puts `1/√n` in the
# multiplier, and the spectral parametrization has μP's exponents (lecture 02 explains why).


# %%
def exponents(name: str, optimizer: str = "adam") -> pd.DataFrame:
    """Width exponents (a, b, c) of each layer, measured between widths 256 and 1024."""
    small, big = (Parametrization(name, base_width=64, optimizer=optimizer).rules(MLP(16, w, 10))
                  for w in (256, 1024))

    def exponent(at_256: float, at_1024: float) -> float:
        return round(-math.log(at_1024 / at_256) / math.log(4), 3) + 0.0

    return pd.DataFrame([
        {"preset": name, "layer": s.role,
         "a (multiplier)": exponent(s.multiplier, b.multiplier),
         "b (init std)": exponent(s.init_std, b.init_std),
         "c (LR)": exponent(s.lr_mult, b.lr_mult)}
        for s, b in zip(small, big, strict=True) if s.init_std is not None
    ])


pd.concat([exponents(p) for p in ("sp", "mup", "ntk", "spectral")]).set_index(["preset", "layer"])

# %% [markdown]
# ## Coordinate checks: SP vs μP
#
# The cheapest test of a parametrization (microsoft/mup's convention): build the model at
# several widths, take a few optimizer steps on **one batch reused at every step**, and record
# each layer's `mean |h|` (and the change `mean |h − h₀|` since initialization). Step 1 is
# measured before any update. If the parametrization is right, every curve is flat in width.
#
# An MLP with Adam at learning rate 10⁻², widths from 128 up by factors of 2 (to 1024 in fast
# mode, to 4096 in full mode):

# %%
widths = osc.config.choose(fast=[128, 256, 512, 1024], full=[128, 256, 512, 1024, 2048, 4096])
seeds = osc.config.choose(fast=range(2), full=range(4))
coords = {p: mlp_coord_check(p, "adam", widths=widths, seeds=seeds) for p in ("sp", "mup")}
plot_coords(coords["sp"], "out", "SP + Adam: mean |h| of each layer vs width").show()
plot_coords(coords["mup"], "out", "μP + Adam: mean |h| of each layer vs width").show()

# %% [markdown]
# The slopes on log–log axes, beside what theory predicts. Under SP with Adam the first update
# moves every weight by `±lr` along its gradient's sign, and a hidden unit sums `n` such
# changes: the hidden layer's change grows like `n` (slope 1). The readout adds its own `±lr`
# updates (another `n`) and reads that hidden change through weights of size `1/√n` that it is
# aligned with ($n^{3/2}$), so once its update dominates its slope should lie between 1 and
# 1.5; the measured values sit near that range and can fall below 1 at some steps, as they
# do in fast mode (the next cells print every slope beside the theory). Under μP every
# slope should be 0, except the readout's output *at initialization*, which the Table 3 init
# $1/\text{fan\_in}^2$ makes vanish like $n^{-1/2}$.

# %%
slopes = pd.concat([fit_slopes(df).assign(parametrization=p) for p in ("sp", "mup")
                    for df in [coords[p]]])
mup, sp = slopes.parametrization == "mup", slopes.parametrization == "sp"
table = slopes.pivot_table(index=["parametrization", "layer", "stat"], columns="step",
                           values="slope").round(2)
theory = {("mup", "output", "out"): "−0.5 at step 1, then 0",
          ("sp", "hidden.0", "delta"): "1 (from step 2)",
          ("sp", "output", "delta"): "1 to 1.5 (once its update dominates)"}
table["theory"] = [theory.get(k, "0" if k[0] == "mup" else "") for k in table.index]
table

# %%
mup_later = slopes[(slopes.parametrization == "mup") & (slopes.step >= 2)]
sp_hidden = slopes.query("parametrization == 'sp' and layer == 'hidden.0' and stat == 'delta'")
sp_readout = slopes.query("parametrization == 'sp' and layer == 'output' and stat == 'delta'")
print(f"μP: largest |slope| after the first update: {mup_later.slope.abs().max():.2f}")
print(f"SP: slope of the hidden layer's change, steps 2–4: {sp_hidden.slope.round(2).tolist()}")
print(f"SP: slope of the readout's change, steps 2–4: {sp_readout.slope.round(2).tolist()}")
first = slopes.query("parametrization == 'mup' and layer == 'output' and stat == 'out'")
step1 = first.step.min()
# how precise is one such slope? fit each seed alone: the spread is the noise of one fit
per_seed = pd.concat([fit_slopes(coords["mup"][coords["mup"].seed == s]) for s in seeds])
alone = per_seed.query("layer == 'output' and stat == 'out' and step == @step1")["slope"]
print(f"μP: slope of the readout's output at step {step1}: "
      f"{first.loc[first.step.idxmin(), 'slope']:.2f} (theory −0.5; fitted to the mean of "
      f"{len(seeds)} seeds over {len(widths)} widths; each seed alone gives {alone.min():.2f} "
      f"to {alone.max():.2f}, so read it as a rough value)")

# %% [markdown]
# ### Play with it
#
# Pick the parametrization, the optimizer and the width range; the check re-runs live (a few
# seconds). Try SGD under SP: the activations blow up within a few steps at large width.


# %%
def explore(parametrization: str, optimizer: str, log2_widths: tuple[int, int], stat: str):
    ws = [2**k for k in range(log2_widths[0], log2_widths[1] + 1)]
    df = mlp_coord_check(parametrization, optimizer, widths=ws, seeds=range(2))
    plot_coords(df, stat, f"{parametrization} + {optimizer}").show()


interact(explore, parametrization=Dropdown(options=["sp", "mup", "ntk", "spectral"], value="mup"),
         optimizer=Dropdown(options=["adam", "sgd"]),
         log2_widths=IntRangeSlider(value=(7, 10), min=5, max=12, description="log2 width"),
         stat=Dropdown(options=["out", "delta"]));

# %% [markdown]
# ## "Wider is better" under μP
#
# With μP, a model trained at a fixed learning rate should not get worse as it gets wider,
# and tends to get better: every width follows the same feature-learning dynamics, only with
# less finite-width noise. Under SP the same learning rate is too large for the widest models.
# A teacher-student task like lecture 00's (a smaller teacher: 16 inputs, width 64), at one
# learning rate for every width; every run
# trains to the end (no early stop), and the printout records its worst spike, the largest
# training loss over the first one:

# %%
task = osc.data.TeacherTask(d_in=16, width=64, seed=0)
val = [task.batch(2048, torch.Generator().manual_seed(5))]
steps = osc.config.choose(fast=60, full=400)
wider_widths = osc.config.choose(fast=[128, 256, 512, 1024], full=[128, 256, 512, 1024, 2048])


def run_at_width(name: str, width: int, lr: float, seed: int) -> dict:
    par = Parametrization(name, base_width=128)
    model = par.apply(MLP(16, width, 1, depth=3), torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(par.param_groups(model, lr=lr))
    gen = torch.Generator().manual_seed(100)  # the same data at every width
    result = osc.train.train(model, opt, lambda: task.batch(32, gen), steps, val_batches=val,
                             loss_fn=osc.train.mse, blowup=math.inf, progress=False)
    loss = result.history["loss"]
    return {"loss": result.final_val_loss, "spike": loss.max() / loss.iloc[0],
            "spike_step": int(result.history["step"][loss.idxmax()])}


wider = pd.DataFrame([{"parametrization": p, "width": w, "seed": s,
                       **run_at_width(p, w, 3e-3, s)}
                      for p in ("sp", "mup") for w in wider_widths for s in seeds])
wider_mean = wider.groupby(["parametrization", "width"], as_index=False).agg(
    loss=("loss", "mean"), spike=("spike", "max"))
# the step of each width's worst spike (over its seeds)
wider_mean["spike_step"] = wider.loc[wider.groupby(["parametrization", "width"])["spike"]
                                     .idxmax(), "spike_step"].to_numpy()
fig = px.line(wider_mean[np.isfinite(wider_mean["loss"])], x="width", y="loss",
              color="parametrization", markers=True, log_x=True,
              title=f"validation loss after {steps} Adam steps at lr 3e-3 (✕: diverged)")
finite = wider_mean.loc[np.isfinite(wider_mean["loss"]), "loss"]
for p, g in wider_mean[~np.isfinite(wider_mean["loss"])].groupby("parametrization"):
    fig.add_scatter(x=g["width"], y=[finite.max()] * len(g), mode="markers+text",
                    marker={"symbol": "x", "size": 12, "color": "red"}, text=["diverged"] * len(g),
                    textposition="top center", name=f"{p}: diverged")
fig.update_xaxes(tickvals=wider_widths, ticktext=[str(w) for w in wider_widths])
fig.show()
for p, g in wider_mean.groupby("parametrization"):
    losses = g["loss"].tolist()
    holds = all(b <= a * 1.01 for a, b in zip(losses, losses[1:], strict=False))
    print(f"{p}: {' → '.join(f'{v:.4f}' for v in losses)}  ({losses[-1] / losses[0] - 1:+.1%} "
          f"from width {wider_widths[0]} to {wider_widths[-1]}; "
          + ("no increase from one width to the next beyond 1%" if holds
             else "an increase beyond 1% somewhere") + ")")
    print(f"    worst spike over the first loss ({steps} steps): " + ", ".join(
        f"{w}: {s:.1f}× at step {t}" for w, s, t in zip(g["width"], g["spike"], g["spike_step"],
                                                        strict=True)))
sp_m, mup_m = (wider_mean[wider_mean.parametrization == p] for p in ("sp", "mup"))
print(f"at width {wider_widths[-1]}: SP's loss is "
      f"{sp_m.loss.iloc[-1] / mup_m.loss.iloc[-1]:.2f}× μP's")

# %% [markdown]
# ## Learning-rate transfer
#
# The real test: sweep the learning rate at each width and see whether the optimum moves.
# Small MLPs over short runs barely show SP's optimum moving, so this uses what published
# demonstrations use: a **transformer with Adam over a 16× width range**, whole loss-vs-LR
# curves. A 2-layer GPT (4 heads, context 64) is trained on the bytes of the Python standard
# library's sources, widths 32 → 512, learning rates 2⁻¹² … 2⁻¹ (a factor 2 apart), 200
# AdamW steps of 16 × 64 tokens with warmup and cosine decay, base width 32. Under μP the
# attention logits are scaled by $1/d_{head}$ instead of $1/\sqrt{d_{head}}$ (queries and keys
# become correlated during training, so their dot product grows like $d_{head}$, not its
# square root); the package's μP sets that scale (`√d_head₀ / d_head`, equal to the usual one
# at the base width).
#
# That grid is 120 runs, too long to run in class on a CPU, so the result is committed with
# the command that regenerates it; below, a seconds-long version of the same code runs live.

# %%
grid, meta = osc.results.read_table(osc.course.repo_root() / "results" / "lr_transfer_gpt.csv")
print("\n".join(f"{k}: {v}" for k, v in meta.items() if k != "config"))
fig = osc.coord_check.plot_lr_transfer(grid, "GPT on bytes: final validation loss vs LR",
                                       facet="parametrization")
fig.update_yaxes(range=[grid["loss"][np.isfinite(grid["loss"])].min() - 0.05, 3.5])
fig.show()

# %% [markdown]
# Each width's optimum, and two edges to its right: `edge_lr`, the first learning rate whose
# loss is more than 0.5 nats above that width's best (where the curve's right wall starts),
# and `divergence_lr`, the first one whose run failed: it blew up (NaN, or a loss 4× its
# first) or ended no lower than it started.

# %%
summary = osc.coord_check.optima(grid, by=["parametrization", "width"], margin=0.5)
summary["log2_edge_lr"] = np.log2(summary["edge_lr"])
summary["log2_divergence_lr"] = np.log2(summary["divergence_lr"])
summary[["parametrization", "width", "log2_best_lr", "best_loss", "log2_edge_lr",
         "log2_divergence_lr"]]

# %% [markdown]
# What the table says, read off by code (so that the sentences cannot disagree with the data):

# %%
for p, g in summary.groupby("parametrization"):
    w0, w1 = g["width"].iloc[0], g["width"].iloc[-1]
    shift = g["log2_best_lr"].iloc[-1] - g["log2_best_lr"].iloc[0]
    spread = g["log2_best_lr"].max() - g["log2_best_lr"].min()
    print(f"{p}: optimum log2(lr) by width {g['log2_best_lr'].tolist()}: moved {shift:+g} octaves "
          f"from width {w0} to {w1} (1/width would be {-math.log2(w1 / w0):+g}); "
          f"range {spread:g} octaves")
    print(f"    right wall (loss > best + 0.5) at log2(lr) {g['log2_edge_lr'].tolist()}; "
          f"blow-ups at {g['log2_divergence_lr'].dropna().tolist() or 'none in the grid'}")
    print(f"    best loss {' → '.join(f'{v:.3f}' for v in g['best_loss'])}")

# %% [markdown]
# The same code, live and tiny (two widths, three learning rates, a few steps). It shows the
# mechanics, not the result: at this size the curves are noisy.

# %%
cfg = osc.experiments.LRTransferConfig.fast()
live = osc.experiments.gpt_lr_transfer(cfg, progress=False)
live[["parametrization", "width", "lr", "loss", "diverged"]]

# %% [markdown]
# ## What μP does not transfer
#
# μP fixes how *optimization* hyperparameters (init, multipliers, learning rates) scale with
# width. **Regularization** is not covered: weight decay, dropout and data augmentation
# control generalization, and their optimum is not guaranteed to stay put. One concrete
# reason for decoupled weight decay (AdamW, `w ← w − lr·λ·w`): the decay per step is `lr·λ`,
# and μP divides the hidden learning rate by the width ratio, so the same `λ` decays hidden
# weights more slowly in a wider model. The half-life in steps, read off the parameter groups:

# %%
rows = []
for w in (64, 256, 1024, 4096):
    model = MLP(16, w, 10, depth=3)
    for g in Parametrization("mup", base_width=64).param_groups(model, lr=1e-3, weight_decay=0.1):
        if g["role"] in ("input", "hidden", "output"):
            rows.append({"width": w, "layer": g["role"],
                         "half-life (steps)": math.log(2) / (g["lr"] * g["weight_decay"])})
pd.DataFrame(rows).pivot(index="width", columns="layer", values="half-life (steps)").round(0)

# %% [markdown]
# ## Adam's ε must scale too
#
# Adam divides by `√v + ε`. Under μP the gradient entries of most tensors shrink like `1/n`
# (they scale like the backpropagated signal at the layer's output), so a fixed ε eventually
# dominates `√v` and quietly shrinks the update: the learning rate no longer means the same
# thing at every width. The package scales ε per tensor (`eps_mult` above). Measured here: the
# size of Adam's first update to the hidden matrix, relative to the ideal `lr` (Adam's first
# step is `±lr` per entry when ε is negligible), with ε = 10⁻⁵ fixed or scaled:

# %%
def first_step_ratio(width: int, scale_eps: bool, eps: float = 1e-5, lr: float = 1e-3) -> float:
    par = Parametrization("mup", base_width=64)
    model = par.apply(MLP(16, width, 1, depth=3), torch.Generator().manual_seed(0))
    groups = par.param_groups(model, lr=lr, eps=eps)
    if not scale_eps:
        for g in groups:
            g["eps"] = eps
    opt = torch.optim.Adam(groups)
    before = model.hidden[0].weight.detach().clone()
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(1))
    model(x).pow(2).mean().backward()
    opt.step()
    hidden_lr = next(g["lr"] for g in groups if g["name"] == "hidden.0.weight")
    return ((model.hidden[0].weight - before).abs().mean() / hidden_lr).item()


eps_table = pd.DataFrame([{"width": w, "ε fixed": first_step_ratio(w, False),
                           "ε scaled (μP)": first_step_ratio(w, True)}
                          for w in (64, 256, 1024, 4096)]).set_index("width")
eps_table.round(3)

# %% [markdown]
# ## Summary
#
# * An abc-parametrization sets, per layer, how the multiplier, init and learning rate scale
#   with width. μP is the one where every layer keeps learning features at every width.
# * Coordinate checks test it in seconds: under μP every layer's statistics are flat in width;
#   under SP with Adam the readout's change grows roughly like width (slope 1 to 1.5).
# * Under μP a wider model is no worse at a fixed learning rate (and tends to be better), while
#   SP's widest models spike early and end worse; the optimal learning rate transfers across
#   width (see the printouts and the table above for what our runs actually show).
# * μP does not cover regularization, and Adam's ε has to scale with the gradients.
# * Exercise: [`exercises/01_mup.ipynb`](../exercises/01_mup.ipynb): write the μP multipliers,
#   the coordinate-check statistic, and predict a slope before measuring it.
# * Next: lecture 02, the spectral condition, where μP falls out of one statement about
#   operator norms.
