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
# # 06 · Exercises: the noise-scale estimator, B_crit from runs, a falling fit, Adam's surge

# %%
import numpy as np
import plotly.graph_objects as go
import torch

import optimal_scaling as osc
from optimal_scaling import batch_size as bs
from optimal_scaling.course.checks import lecture06
from optimal_scaling.results import read_table

# %% [markdown]
# ## 1. The two-batch gradient noise scale
#
# A batch of B examples gives a gradient G_B with E‖G_B‖² = ‖G‖² + tr Σ/B. You measured
# ‖G_s‖² at a small batch size B_s and ‖G_b‖² at a big one B_b. Solve the two equations for
# unbiased estimates of ‖G‖² and tr Σ and return them as a pair `(g2, trace)`.


# %%
def noise_terms(g2_small: float, g2_big: float, b_small: int, b_big: int) -> tuple[float, float]:
    # BEGIN SOLUTION
    # HINT: subtract the two equations to get tr Σ, then put it back into either one for ‖G‖²
    trace = (g2_small - g2_big) / (1 / b_small - 1 / b_big)
    g2 = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
    return g2, trace
    # END SOLUTION


lecture06.check_noise_terms(noise_terms)

# %% [markdown]
# Try it where the answer is known. Linear regression x ~ N(0, I_d), y = x·w* + ε with noise
# variance s², at w = w* + e: the per-example gradient is x(xᵀe − ε), so G = e and
# tr Σ = (d + 1)‖e‖² + d·s². Draw 8 micro-batches of 8 examples per step, average the
# estimates over 300 steps, and compare B_simple with the formula.

# %%
try:
    d, s, micro, k = 16, 0.5, 8, 8
    gen = torch.Generator().manual_seed(0)
    e = 0.3 * torch.randn(d, generator=gen, dtype=torch.float64)
    truth = ((d + 1) * e.pow(2).sum() + d * s**2) / e.pow(2).sum()
    g2s, traces = [], []
    for _ in range(300):
        x = torch.randn(k, micro, d, generator=gen, dtype=torch.float64)
        eps = s * torch.randn(k, micro, generator=gen, dtype=torch.float64)
        grads = (x * ((x @ e) - eps)[..., None]).mean(1)  # (k, d): one gradient per micro-batch
        small = grads.pow(2).sum(1).mean().item()
        big = grads.mean(0).pow(2).sum().item()
        g2, trace = noise_terms(small, big, micro, micro * k)
        g2s.append(g2)
        traces.append(trace)
    print(f"B_simple estimated {np.mean(traces) / np.mean(g2s):.1f}, "
          f"analytic {truth.item():.1f}")
except NotImplementedError:
    print("write noise_terms() above first")

# %% [markdown]
# ## 2. B_crit from (steps, batch size) pairs
#
# To reach one target loss, runs at batch sizes B needed S steps. Fit
# S = S_min(1 + B_crit/B) = S_min + E_min/B (a straight line in 1/B) by least squares on
# **relative** residuals, Σ((S − S_min − E_min/B)/S)², as `bs.fit_critical_batch` does: the
# step where a noisy loss crosses a target is uncertain in proportion to the step, so plain
# least squares would let the small batches' long runs decide. Return `(S_min, E_min,
# B_crit)` with B_crit = E_min/S_min.


# %%
def fit_b_crit(B: np.ndarray, S: np.ndarray) -> tuple[float, float, float]:
    # BEGIN SOLUTION
    # HINT: np.polyfit(1 / B, S, 1, w=1 / S) returns (slope, intercept) = (E_min, S_min)
    B, S = np.asarray(B, float), np.asarray(S, float)
    e_min, s_min = np.polyfit(1 / B, S, 1, w=1 / S)  # w multiplies each residual
    return float(s_min), float(e_min), float(e_min / s_min)
    # END SOLUTION


lecture06.check_fit_b_crit(fit_b_crit)

# %% [markdown]
# ## 3. Reading a crossing off a noisy log
#
# The steps S come from training logs: the first step where the loss reaches the target. A
# log is noisy, and its running minimum is the minimum of the noise too, so it crosses early.
# The lecture reads the crossing off the least-squares **non-increasing** fit instead
# (isotonic regression): minimize Σ(y_i − f_i)² subject to f_1 ≥ f_2 ≥ … ≥ f_n. It is found
# by **pooling adjacent violators**: go left to right; each value starts a block; whenever a
# block's mean is above the mean of the block before it (the fit would rise), merge the two
# into one block at their common mean, and check the block before again. Write
# `falling_fit(y)`, which returns f as an array as long as y.


# %%
def falling_fit(y: np.ndarray) -> np.ndarray:
    # BEGIN SOLUTION
    # HINT: keep two lists, block sums and block counts; compare means as sums[-1]/counts[-1]
    sums: list[float] = []
    counts: list[int] = []
    for v in np.asarray(y, dtype=float):
        s, c = float(v), 1
        while sums and sums[-1] / counts[-1] < s / c:  # the fit would rise: pool
            s, c = s + sums.pop(), c + counts.pop()
        sums.append(s)
        counts.append(c)
    return np.repeat(np.array(sums) / np.array(counts), counts)
    # END SOLUTION


lecture06.check_falling_fit(falling_fit)

# %% [markdown]
# One noisy curve, 1 + 4/√step plus noise: the running minimum sits below the curve it should
# follow, the falling fit on it.

# %%
try:
    rng = np.random.default_rng(0)
    steps = np.arange(1, 401)
    truth = 1 + 4 / np.sqrt(steps)
    y = truth + 0.15 * rng.standard_normal(steps.size)
    fit = falling_fit(y)
    go.Figure([go.Scatter(x=steps, y=y, mode="markers", name="log", marker=dict(size=3)),
               go.Scatter(x=steps, y=truth, name="the curve"),
               go.Scatter(x=steps, y=np.minimum.accumulate(y), name="running minimum"),
               go.Scatter(x=steps, y=fit, name="falling fit")]).update_layout(
        height=350, xaxis_title="step", yaxis_title="loss").show()
    late = slice(200, None)
    print(f"mean of (curve − truth) over steps 201–400: running minimum "
          f"{np.mean((np.minimum.accumulate(y) - truth)[late]):+.3f}, falling fit "
          f"{np.mean((fit - truth)[late]):+.3f}")
except NotImplementedError:
    print("write falling_fit() above first")

# %% [markdown]
# Now on the lecture's runs: the steps each batch size needed (at its best learning rate) to
# reach a training loss of 2.5, from the committed training logs (read off the package's
# falling fit, `bs.steps_to_target`).

# %%
try:
    log, _ = read_table(osc.course.repo_root() / "results" / "batch_size_laptop_log.csv")
    reach = bs.steps_to_target(log, [2.5]).dropna(subset=["steps"])
    best = reach.groupby("batch_size")["steps"].min().reset_index()
    s_min, e_min, b_crit = fit_b_crit(best["batch_size"].to_numpy(), best["steps"].to_numpy())
    print(best.to_string(index=False))
    print(f"S_min = {s_min:.0f} steps, E_min = {e_min:.0f} sequences, B_crit = {b_crit:.1f}")
except NotImplementedError:
    print("write fit_b_crit() above first")

# %% [markdown]
# ## 4. Adam's surge
#
# Write η*(B) = η_crit/(√(B/B_crit) + √(B_crit/B)) for an array of batch sizes, and then the
# location and height of its peak, `(B_peak, η_peak)`.


# %%
def eta_surge(B: np.ndarray, eta_crit: float, b_crit: float) -> np.ndarray:
    # BEGIN SOLUTION
    # HINT: r = B / b_crit elementwise (B may be a list: np.asarray first), then the formula
    r = np.asarray(B, dtype=float) / b_crit
    return eta_crit / (np.sqrt(r) + 1 / np.sqrt(r))
    # END SOLUTION


def surge_peak(eta_crit: float, b_crit: float) -> tuple[float, float]:
    # BEGIN SOLUTION
    # HINT: minimize √r + 1/√r over r = B/B_crit
    return b_crit, eta_crit / 2
    # END SOLUTION


lecture06.check_eta_surge(eta_surge)
lecture06.check_surge_peak(surge_peak)

# %% [markdown]
# Compare the shapes: SGD's η* saturates at η_crit, Adam's peaks at B_crit and falls as
# 1/√B beyond it, so past the critical batch size Adam wants a *smaller* learning rate.

# %%
try:
    B = np.geomspace(1, 4096, 200)
    fig = go.Figure()
    for b_crit in (16, 128, 1024):
        fig.add_trace(go.Scatter(x=B, y=eta_surge(B, 0.01, b_crit), name=f"Adam, B_crit={b_crit}"))
        fig.add_trace(go.Scatter(x=B, y=bs.eta_sgd(B, 0.01, b_crit), name=f"SGD, B_crit={b_crit}",
                                 line=dict(dash="dot")))
        peak_b, peak_eta = surge_peak(0.01, b_crit)
        fig.add_trace(go.Scatter(x=[peak_b], y=[peak_eta], mode="markers", showlegend=False,
                                 marker=dict(symbol="star", size=12, color="black")))
    fig.update_xaxes(type="log", title_text="B")
    fig.update_yaxes(type="log", title_text="η*")
    fig.update_layout(title="η*(B): SGD saturates, Adam surges (★: the peak)")
    fig.show()
except NotImplementedError:
    print("write eta_surge() and surge_peak() above first")
