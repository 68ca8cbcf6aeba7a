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
# # 07 · Exercises: the RMS→∞ norm, the optimal norm of a slice, a power law with its interval

# %%
import numpy as np
import torch

import optimal_scaling as osc
from optimal_scaling import norm_transfer as nt
from optimal_scaling.course.checks import lecture07
from optimal_scaling.results import read_table

# %% [markdown]
# ## 1. The output layer's norm
#
# The readout W (d_out × d_in) maps RMS-sized features to logits, and what must stay bounded is
# the **largest logit**: the RMS→∞ operator norm
#
# ‖W‖_{RMS→∞} = max_{‖x‖_RMS ≤ 1} max_i |⟨row_i, x⟩| = max_i √d_in·‖row_i‖₂.
#
# Write it for a 2-D tensor and return a float.


# %%
def rms_to_inf(W: torch.Tensor) -> float:
    # BEGIN SOLUTION
    # HINT: W.norm(dim=1) gives every row's ℓ2 norm
    return (W.shape[1] ** 0.5 * W.norm(dim=1).max()).item()
    # END SOLUTION


lecture07.check_rms_to_inf(rms_to_inf)

# %% [markdown]
# The bound is attained: the input x = √d_in·row_i/‖row_i‖₂ has RMS 1 and gives logit i
# exactly the norm. Check it on a random readout:

# %%
try:
    W = torch.randn(256, 64, dtype=torch.float64)
    i = int(W.norm(dim=1).argmax())
    x = 64**0.5 * W[i] / W[i].norm()
    print(f"RMS of x = {x.pow(2).mean().sqrt().item():.3f}, largest logit "
          f"{(W @ x).abs().max().item():.4f}, norm {rms_to_inf(W):.4f}")
except NotImplementedError:
    print("write rms_to_inf() above first")

# %% [markdown]
# ## 2. The optimal norm of one (D, B) slice
#
# Across learning rates, the loss L against x = log₂‖W_out‖ has a minimum. The procedure this
# course uses (`nt.optimal_norm`, one of its variants): sort by x, take the 7 points nearest
# the lowest loss in rank (positions i with the smallest |i − i_min|), weight each by
# 1/(1 + |i − i_min|) (so both neighbours at rank distance 1 get ½), and fit a parabola
# through the untrained model's point (x₀, L₀):
#
# L − L₀ = a(x − x₀)² + b(x − x₀), vertex x* = x₀ − b/(2a).
#
# Return x*. (`x` and `loss` are 1-D arrays of the same length, in no particular order.)


# %%
def optimal_norm(x: np.ndarray, loss: np.ndarray, anchor: tuple[float, float]) -> float:
    # BEGIN SOLUTION
    # HINT: weighted least squares = ordinary least squares on rows multiplied by √w
    x, loss = np.asarray(x, float), np.asarray(loss, float)
    order = np.argsort(x)
    x, loss = x[order], loss[order]
    k = int(np.argmin(loss))
    near = np.argsort(np.abs(np.arange(len(x)) - k), kind="stable")[:7]
    w = np.sqrt(1 / (1 + np.abs(near - k)))
    x0, l0 = anchor
    A = np.column_stack([(x[near] - x0) ** 2, x[near] - x0])
    a, b = np.linalg.lstsq(A * w[:, None], (loss[near] - l0) * w, rcond=None)[0]
    return float(x0 - b / (2 * a))
    # END SOLUTION


lecture07.check_optimal_norm(optimal_norm)

# %% [markdown]
# On the lecture's grid: the slice at the longest horizon and B = 32, anchored at the
# untrained model's point (measured here by building and evaluating it).

# %%
try:
    grid, _ = read_table(osc.course.repo_root() / "results" / "norm_transfer_laptop.csv")
    t = nt.tidy(grid)
    h = t["horizon"].max()
    s = t[(t["horizon"] == h) & (t["batch_size"] == 32) & np.isfinite(t["val_loss"])]
    preset = osc.course.repo_root() / "configs" / "norm_transfer_laptop.toml"
    anchor = nt.initial_point(osc.sweep.load(preset).runs()[0].config)
    print(f"untrained point: log2 norm {anchor[0]:.2f}, loss {anchor[1]:.2f}")
    print(f"D = 2^{np.log2(h):.0f}, B = 32: optimal log2 norm "
          f"{optimal_norm(s['log2_norm'].to_numpy(), s['val_loss'].to_numpy(), anchor):.2f}")
except NotImplementedError:
    print("write optimal_norm() above first")

# %% [markdown]
# ## 3. A power law with a bootstrap interval
#
# Fit y ∝ D^a by least squares in logs and give a 95% interval for a: refit on each resampled
# index set in `resamples` (rows drawn with replacement) and take the 2.5th and 97.5th
# percentiles of the refitted exponents (`np.percentile`, its default linear interpolation).
# Return `(a, low, high)`.


# %%
def power_law(D: np.ndarray, y: np.ndarray, resamples: list[np.ndarray]) -> tuple:
    # BEGIN SOLUTION
    # HINT: np.polyfit(np.log(D), np.log(y), 1)[0] is the slope; refit it on each index set
    logd, logy = np.log(D), np.log(y)
    a = np.polyfit(logd, logy, 1)[0]
    draws = [np.polyfit(logd[i], logy[i], 1)[0] for i in resamples]
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(a), float(low), float(high)
    # END SOLUTION


lecture07.check_power_law(power_law)

# %% [markdown]
# With the lecture's per-horizon optima: how does the best learning rate move with D?

# %%
try:
    per = nt.per_horizon(grid)
    rng = np.random.default_rng(0)
    resamples = [rng.integers(0, len(per), len(per)) for _ in range(1000)]
    resamples = [i for i in resamples if len(np.unique(per["horizon"].to_numpy()[i])) > 1]
    a, low, high = power_law(per["horizon"].to_numpy(float), per["lr"].to_numpy(float),
                             resamples)
    print(f"η* ∝ D^{a:.2f}, 95% interval [{low:.2f}, {high:.2f}] "
          f"(the paper, for its models: −0.28 ± 0.07)")
except NotImplementedError:
    print("write power_law() above first")
