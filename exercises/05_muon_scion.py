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
# *Exercise notebook, generated from `solutions/05_muon_scion.py` by `make exercises`.*
# Fill in every function that raises `NotImplementedError`, then run its self-check;
# keep the functions' parameter names (the self-checks pass arguments by name), and
# compare with the solution notebook when you are done.

# %% [markdown]
# # 05 · Exercises: a Scion step, each layer's norm, norm tracking

# %%
import torch

from optimal_scaling import duality
from optimal_scaling.course.checks import lecture05

# %% [markdown]
# ## 1. One Scion step
#
# With momentum weight α, learning rate γ and radius ρ, Scion does
#
# `d ← (1 − α)·d + α·g`, then `x ← x + γρ·lmo(d)` (unconstrained) or
# `x ← (1 − γ)·x + γρ·lmo(d)` (constrained),
#
# where `lmo(d) = argmin_{‖s‖≤1} ⟨d, s⟩ = −dualize(d)`. Use the package's duality maps for
# `dualize`: `duality.get_map(norm).dualize(d)`. Return the new `x` and the new `d`.


# %%
def scion_step(x, d, g, lr, radius, alpha, norm, constrained):
    raise NotImplementedError('update the direction d first; the LMO of a norm is minus its duality map')


lecture05.check_scion_step(scion_step)

# %% [markdown]
# Check the constrained step's promise with your function: start inside the radius-ρ ball of
# the spectral (RMS→RMS) norm, take many steps with random gradients, and watch the norm.

# %%
try:
    spectral = duality.get_map("spectral")
    x, d = 0.5 * spectral.init((32, 16)), torch.zeros(32, 16)
    worst = 0.0
    for _ in range(50):
        x, d = scion_step(x, d, torch.randn(32, 16), 0.2, 2.0, 0.3, "spectral", True)
        worst = max(worst, spectral.norm(x).item())
    print(f"largest ‖x‖_RMS→RMS over 50 constrained steps: {worst:.4f} (radius 2)")
except NotImplementedError:
    print("write scion_step() above first")

# %% [markdown]
# ## 2. Choosing each layer's norm
#
# In the norm-transfer setting, a layer's norm follows from what it maps: an embedding reads
# one-hot vectors (ℓ1→RMS, `"colnorm"`), a hidden matrix maps RMS-sized vectors to RMS-sized
# vectors (`"spectral"`; a 4-D convolution kernel gets `"conv2d_spectral"`), the readout must
# keep every logit bounded (RMS→∞, `"rownorm"`), and gains and biases are vectors
# (`"bias_rms"`). Write `choose_norm(role, ndim)` for roles `input`, `hidden`, `output`,
# `gain`, `bias`.


# %%
def choose_norm(role: str, ndim: int) -> str:
    raise NotImplementedError('vectors first (ndim == 1), then a dict from role to norm name')


lecture05.check_choose_norm(choose_norm)

# %% [markdown]
# ## 3. A norm-tracking function
#
# Given a matrix before and after a step, return `(‖W_after‖, ‖W_after − W_before‖)` in the
# norm of its LMO (W is `d_out × d_in`):
#
# * `"colnorm"`: `max_j ‖col_j‖_RMS` with `‖v‖_RMS = ‖v‖₂/√d_out`;
# * `"spectral"`: `√(d_in/d_out)·σ_max(W)`;
# * `"rownorm"`: `max_i √d_in·‖row_i‖₂`.


# %%
def track(W_before: torch.Tensor, W_after: torch.Tensor, norm: str) -> tuple[float, float]:
    raise NotImplementedError('write one helper norm_of(W), then return (norm_of(W_after), norm_of(W_after - W_before))')


lecture05.check_track(track)

# %% [markdown]
# Use it on your Scion step: for an unconstrained step the update's norm must be exactly γρ.

# %%
try:
    x0 = torch.randn(24, 12)
    x1, _ = scion_step(x0, torch.zeros(24, 12), torch.randn(24, 12), 0.05, 3.0, 1.0,
                       "spectral", False)
    print(f"‖Δx‖ = {track(x0, x1, 'spectral')[1]:.6f}, γρ = {0.05 * 3.0:.6f}")
except NotImplementedError:
    print("write scion_step() and track() above first")
