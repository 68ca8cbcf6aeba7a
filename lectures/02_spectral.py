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
# # 02 · The spectral condition
#
# μP's table of exponents looks like a list of special cases: input, hidden and output layers
# each get their own rule. Yang, Simon & Bernstein showed that it all follows from one
# statement about the **spectral norm** of each weight matrix and of its update. This lecture
# states the condition, measures it during training under three parametrizations, and
# recovers μP from it.

# %%
import math

import numpy as np
import pandas as pd
import plotly.express as px
import torch
from ipywidgets import Dropdown, interact

import optimal_scaling as osc
from optimal_scaling import measure, norms
from optimal_scaling.models import MLP
from optimal_scaling.parametrization import Parametrization

# %% [markdown]
# ## The spectral norm
#
# $$\|A\|_* = \max_{v \ne 0} \frac{\|A v\|_2}{\|v\|_2} = \sigma_{\max}(A),$$
#
# the most a matrix can stretch a vector. For a random `m × n` matrix with entries of
# variance σ², random-matrix theory gives `‖A‖_* ≈ σ(√m + √n)`. Measured:

# %%
g = torch.Generator().manual_seed(0)
rows = []
for m, n in [(64, 64), (256, 256), (1024, 1024), (256, 1024), (1024, 64)]:
    A = torch.randn(m, n, generator=g)
    rows.append({"m": m, "n": n, "‖A‖_* (SVD)": norms.spectral(A).item(),
                 "σ(√m + √n)": math.sqrt(m) + math.sqrt(n),
                 "brute force: best of 2000 random v, rows, basis": norms.induced_norm_bruteforce(
                     A, "l2", "l2", samples=2000, generator=g).item()})
pd.DataFrame(rows).round(2)

# %% [markdown]
# Random directions (even with the matrix's rows and the basis vectors added) fall short of
# the maximum (the printout says by how much): the top singular direction is one of `n`
# dimensions. That is why the package
# computes the norm exactly (SVD) or with power iteration, which converges to that direction
# (slowly when the top singular values are close, as for a square Gaussian matrix) and,
# warm-started from the previous step's vector, tracks it cheaply during training:

# %%
A = torch.randn(512, 512, generator=g)
exact = norms.spectral(A).item()
for iters in (1, 2, 5, 10, 20):
    estimate = norms.spectral_estimate(A, iters=iters, generator=torch.Generator().manual_seed(1))
    print(f"power iteration, {iters:2d} steps: {estimate.item():.3f}  (SVD {exact:.3f})")

# %% [markdown]
# ## The condition, and natural norms
#
# For a layer `W_ℓ` of shape `n_ℓ × n_{ℓ−1}` and its update `ΔW_ℓ`:
#
# $$\|W_\ell\|_* = \Theta\!\left(\sqrt{n_\ell / n_{\ell-1}}\right), \qquad
#   \|\Delta W_\ell\|_* = \Theta\!\left(\sqrt{n_\ell / n_{\ell-1}}\right).$$
#
# Why: if the input `h_{ℓ−1}` has entries of size Θ(1), its `ℓ2` norm is `√n_{ℓ−1}`, and we
# want the output's to be `√n_ℓ`. The factor `√(n_ℓ/n_{ℓ−1})` is exactly the conversion, so
# the condition reads more simply in the **RMS→RMS** norm, where vectors are measured per
# coordinate:
#
# $$\|W\|_{RMS\to RMS} = \sqrt{n_{in}/n_{out}}\;\|W\|_* = \Theta(1).$$
#
# The package's `norms.rms_to_rms` is that "natural" norm; every other induced norm of lecture
# 03 has the same closed-form-versus-definition check in the tests.

# %% [markdown]
# ## Measured: ‖W‖ and ‖ΔW‖ across width under SP, μP and the spectral parametrization
#
# An MLP (16 → n → n → 1) trained with Adam on a teacher task like lecture 00's (a smaller
# teacher: 16 inputs, width 64), widths 64 to
# 1024 (fast mode) or 2048 (full mode: 32×, and the exact spectral norms of 4096² matrices
# would take minutes on a laptop CPU). At each width we record the RMS→RMS norm of every
# weight matrix and of its change since initialization, then fit the slope against width.

# %%
widths = osc.config.choose(fast=[64, 128, 256, 512, 1024],
                           full=[64, 128, 256, 512, 1024, 2048])
steps = osc.config.choose(fast=10, full=50)
sweep = pd.concat([measure.norm_sweep(p, widths, steps=steps, lr=3e-3, record_every=steps)
                   for p in ("sp", "mup", "spectral")], ignore_index=True)
measure.plot_norms(sweep, title=f"RMS→RMS norms after {steps} Adam steps").show()

# %% [markdown]
# The fitted slopes, beside the theory. Under SP with Adam each update entry is `±lr`, so a
# *rank-one* update (every row the same sign pattern) has spectral norm `lr·√(n_out·n_in)`
# and RMS→RMS norm `lr·n_in`: slope 1 for the hidden and output layers (whose fan-in grows),
# slope 0 for the input layer (fan-in 16 at every width).
# For a square hidden layer, an update of random signs would have slope ½ instead; the readout
# has a single row, so any ±lr update of it is rank one and has slope 1. Whether the update
# is also aligned with the layer's *input*, so that ‖ΔW h‖ reaches that norm, is a separate
# question (next section). SP's readout also starts too large: init std `1/√n` gives
# RMS→RMS norm `√(n/n_out)`, slope ½. μP and the spectral parametrization are built to make
# every slope 0. (A Gaussian input layer with 16 columns has RMS→RMS norm `1 + O(√(16/n))`,
# a small negative slope at these widths that vanishes as `n` grows.) A slope fitted over a
# handful of widths is a summary: the local slopes, width to width, say whether one power law
# fits at all — printed below for SP's hidden layer and for its input layer, whose fitted
# update slope strays from the theory's 0.

# %%
at_init = measure.width_slopes(sweep[sweep.step == 0]).set_index(["parametrization", "layer"])
trained = measure.width_slopes(sweep[sweep.step == steps]).set_index(["parametrization", "layer"])
slopes = pd.DataFrame({"‖W‖ at init": at_init["norm_W"], f"‖W‖ at step {steps}": trained["norm_W"],
                       f"‖ΔW‖ at step {steps}": trained["norm_dW"]})
theory = {("sp", "input"): (0, 0), ("sp", "hidden.0"): (0, 1), ("sp", "output"): (0.5, 1)}
slopes["theory ‖W‖ at init"] = [theory.get(k, (0, 0))[0] for k in slopes.index]
slopes["theory ‖ΔW‖ (aligned)"] = [theory.get(k, (0, 0))[1] for k in slopes.index]
slopes.round(2)

# %%
gap = (slopes[["‖W‖ at init", f"‖ΔW‖ at step {steps}"]].to_numpy()
       - slopes[["theory ‖W‖ at init", "theory ‖ΔW‖ (aligned)"]].to_numpy())
slopes["worst gap"] = np.abs(gap).max(axis=1)
for p, g_ in slopes.groupby(level="parametrization"):
    print(f"{p}: largest |measured − theory| slope gap {g_['worst gap'].max():.2f}")
sp_dw = slopes.loc["sp", f"‖ΔW‖ at step {steps}"]
print(f"SP update slopes: hidden {sp_dw['hidden.0']:.2f}, readout {sp_dw['output']:.2f} "
      "(1 for a rank-one update; ½ for random signs in the square hidden layer)")
# a fitted slope averages the local ones, width to width; a power law keeps them alike
for layer, name in (("hidden.0", "hidden"), ("input", "input (theory 0)")):
    sp_layer = sweep[(sweep.parametrization == "sp") & (sweep.layer == layer)
                     & (sweep.step == steps)].sort_values("width")
    local = np.diff(np.log(sp_layer.norm_dW)) / np.diff(np.log(sp_layer.width))
    print(f"SP {name} ‖ΔW‖, local slopes between neighbouring widths:", np.round(local, 2),
          "(one power law)" if np.ptp(local) < 0.5 else "(not one power law at these widths)")
w_init, w_now = slopes.loc[("sp", "output")].iloc[0], slopes.loc[("sp", "output")].iloc[1]
print(f"SP ‖W‖ slopes after {steps} steps: hidden {slopes.loc[('sp', 'hidden.0')].iloc[1]:.2f}, "
      f"readout {w_now:.2f} (at init {w_init:.2f}): "
      + ("the growing updates take over" if w_now > w_init + 0.1
         else "training shrank the oversized wide readouts" if w_now < w_init - 0.1
         else "the updates have not yet changed the readout's scaling at this length"))

# %% [markdown]
# ## Alignment during training
#
# The step from "each entry moves by `lr`" to "the norm moves by `lr·n_in`" assumed the
# update is **aligned** with the layer's input. Everett et al. measure this with the log
# alignment ratio
#
# $$A = \log_{\text{fan-in}} \frac{\|W z\|_{RMS}}{\|W\|_{RMS}\,\|z\|_{RMS}},$$
#
# where the RMS norms are entrywise: $\|z\|_{RMS} = \|z\|_2/\sqrt{n}$ for a vector and
# $\|W\|_{RMS} = \|W\|_F/\sqrt{n_{out}\,n_{in}}$ (the root mean square of the entries) for a
# matrix. This is about ½ for a matrix independent of its input (random signs add like `√n`)
# and 1 for full alignment (they add like `n`). Measured over training under μP, for the
# weights `W` and for the update `ΔW`:

# %%
align = measure.norm_sweep("mup", osc.config.choose(fast=[64, 256], full=[64, 256, 1024]),
                           steps=osc.config.choose(fast=20, full=100), lr=3e-3,
                           record_every=osc.config.choose(fast=2, full=5))
measure.plot_alignment(align, "align_dW", "log alignment ratio of the update ΔW").show()
last = align[align.step == align.step.max()]
last.groupby(["width", "layer"])[["align_W", "align_dW"]].mean().round(2)

# %%
# the hidden and readout updates: where A ended, and how far below its peak during training
upd = align[(align.step > 0) & (align.layer != "input")].sort_values("step")
per = upd.groupby(["layer", "width"])["align_dW"]
summary = pd.DataFrame({"peak": per.max(), "last": per.last()})
summary["fell by"] = summary["peak"] - summary["last"]
print(f"update alignment at the last step: {summary['last'].min():.2f} to "
      f"{summary['last'].max():.2f} (½: unaligned, 1: fully aligned); fell by more than 0.05 "
      f"from its peak in {int((summary['fell by'] > 0.05).sum())} of {len(summary)} "
      "(layer, width) pairs")
summary.round(2)

# %% [markdown]
# ### Tracking a norm cheaply
#
# An exact spectral norm is an SVD, too expensive at every step of a real run. Weights change
# a little per step, so the top singular vector of the last step is an excellent start:
# `norms.PowerIteration` keeps it and refines it with a few matrix–vector products per call
# (two iterations of two products each, and one more for the estimate: five).
# Here a 512×512 matrix drifts as weights do in training (a small random update each step),
# and the warm-started two-iteration estimate follows the exact value:

# %%
gen = torch.Generator().manual_seed(3)
W = torch.randn(512, 512, generator=gen) / 512**0.5
tracker = norms.PowerIteration(iters=2, seed=0)
rows = []
for t in range(40):
    W = W + 0.02 * torch.randn(512, 512, generator=gen) / 512**0.5 + 0.01 * W  # drift and growth
    rows.append({"step": t, "exact (SVD)": norms.spectral(W).item(),
                 "2 warm-started iterations": tracker(W, key="W").item()})
track = pd.DataFrame(rows)
px.line(track, x="step", y=["exact (SVD)", "2 warm-started iterations"],
        labels={"value": "spectral norm", "variable": ""},
        title="power iteration, warm-started, against the exact norm").show()
rel = (1 - track["2 warm-started iterations"] / track["exact (SVD)"]).abs()
print(f"relative error: first step {rel.iloc[0]:.1e}, after 10 steps at most "
      f"{rel.iloc[10:].max():.1e} (an estimate from below: Rayleigh quotients never exceed σ_max)")

# %% [markdown]
# ### Play with it
#
# Choose a parametrization and a quantity; the figure shows it against width at the last step.


# %%
def explore(parametrization: str, quantity: str):
    data = sweep[(sweep.parametrization == parametrization) & (sweep.step == steps)]
    fig = px.line(data, x="width", y=quantity, color="layer", markers=True, log_x=True,
                  log_y=quantity.startswith("norm"), title=f"{parametrization}: {quantity}")
    widths_ = sorted(data["width"].unique())
    fig.update_xaxes(tickvals=widths_, ticktext=[str(w) for w in widths_]).show()


interact(explore, parametrization=Dropdown(options=["sp", "mup", "spectral"], value="sp"),
         quantity=Dropdown(options=["norm_W", "norm_dW", "align_W", "align_dW"]));

# %% [markdown]
# ## μP falls out of the condition
#
# Take the condition as the design rule and solve for the learning rate. With Adam the update
# is sign-like: entries `±η`, aligned (A ≈ 1 at worst; the ratios measured above lie between ½
# and 1), so
# `‖ΔW‖_{RMS→RMS} ≈ η·n_in`. Setting it to
# Θ(1) gives `η ∝ 1/n_in`: Θ(1) for the input layer (fixed fan-in), `1/n` for hidden and
# output layers. For init, a Gaussian matrix has `‖W‖_* ≈ σ(√n_out + √n_in)`; setting it to
# `√(n_out/n_in)` gives `σ = (1/√n_in)·min(1, √(n_out/n_in))`: `1/√n` for hidden layers and
# `1/n` for a readout with a fixed number of outputs. Below, the package's spectral
# parametrization (written from these two formulas) and its μP (written from Tensor Programs
# V's table) are compared exponent by exponent:


# %%
def exponent_table(name: str) -> pd.DataFrame:
    small, big = (Parametrization(name, base_width=64).rules(MLP(16, w, 1)) for w in (256, 1024))
    return pd.DataFrame([
        {"layer": s.role, "parametrization": name,
         "init exponent": -math.log(b.init_std / s.init_std) / math.log(4),
         "LR exponent": -math.log(b.lr_mult / s.lr_mult) / math.log(4)}
        for s, b in zip(small, big, strict=True) if s.init_std is not None
    ])


both = pd.concat([exponent_table("mup"), exponent_table("spectral")])
both.pivot(index="layer", columns="parametrization",
           values=["init exponent", "LR exponent"]).round(3)

# %% [markdown]
# The exponents agree (only the constants differ): μP is the spectral condition applied layer
# by layer, with `n_0 = n_L = 1` (fixed input and output sizes). From the spectral view no
# layer is special; input, hidden and output layers differ only in which of their two
# dimensions grows.
#
# ## Summary
#
# * The spectral condition: `‖W‖_*` and `‖ΔW‖_*` both Θ(√(n_out/n_in)); equivalently, RMS→RMS
#   norms Θ(1).
# * Measured during training: SP breaks it (its update slopes, printed above, are well above
#   0: n would be a slope of 1); μP and the spectral parametrization keep every slope near 0.
# * Hidden and readout updates are aligned with their inputs (their log alignment ratios,
#   printed above, end above the ½ of unaligned sums, some by little, and below the 1 of full
#   alignment; some fall from an early peak during training, others stay level; the input
#   layer's update sits near ½), which is why the sizes must be set for aligned sums rather
#   than random ones.
# * μP's exponents are the condition's solution.
# * Exercise: [`exercises/02_spectral.ipynb`](../exercises/02_spectral.ipynb): the RMS→RMS norm
#   and the alignment ratio. Next: [lecture 03](03_duality.ipynb), norms for every layer.
