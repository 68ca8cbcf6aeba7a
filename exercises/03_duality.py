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
# *Exercise notebook, generated from `solutions/03_duality.py` by `make exercises`.*
# Fill in every function that raises `NotImplementedError`, then run its self-check;
# keep the functions' parameter names (the self-checks pass arguments by name), and
# compare with the solution notebook when you are done.

# %% [markdown]
# # 03 · Exercises: a duality map and a steepest-descent step

# %%
import torch

from optimal_scaling.course.checks import lecture03

# %% [markdown]
# ## 1. The ColNorm duality map
#
# An embedding reads one-hot inputs, so the natural norm of its matrix `W` (shape
# `d_out × d_in`) is ℓ1→RMS: the largest column RMS, `max_j ‖col_j‖_RMS`. Its duality map
# normalizes every column of the gradient to unit RMS:
# `dualize(G)_j = col_j(G)/‖col_j(G)‖_RMS`, with `‖v‖_RMS = ‖v‖₂/√d_out`.


# %%
def colnorm_dualize(G: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError('divide each column by its own RMS (over its d_out entries); keep zero columns zero')


lecture03.check_colnorm(colnorm_dualize)

# %% [markdown]
# ## 2. One steepest-descent step under the RMS→RMS norm
#
# With `G = U Σ Vᵀ` (reduced SVD), the RMS→RMS norm's duality map is `√(d_out/d_in)·U Vᵀ` and
# its dual norm is `√(d_out/d_in)·Σ_i σ_i`. The steepest-descent step with sharpness `λ` is
# `Δw = −(‖G‖†/λ)·dualize(G)`.


# %%
def spectral_step(G: torch.Tensor, sharpness: float) -> torch.Tensor:
    raise NotImplementedError('U, S, Vh = torch.linalg.svd(G, full_matrices=False)')


lecture03.check_spectral_step(spectral_step)

# %% [markdown]
# ## 3. Which step decreases the loss most?
#
# For a linear loss `L(W) = ⟨G, W⟩`, compare the decrease `−⟨G, Δw⟩` of your spectral step with
# a plain gradient step rescaled to the same RMS→RMS length. The spectral step wins by
# construction: among all steps of that length it is the best.

# %%
g = torch.Generator().manual_seed(0)
G = torch.randn(16, 64, generator=g)
try:
    step = spectral_step(G, sharpness=1.0)
    rms_to_rms = lambda M: (M.shape[1] / M.shape[0]) ** 0.5 * torch.linalg.matrix_norm(M, ord=2)  # noqa: E731
    plain = -G * rms_to_rms(step) / rms_to_rms(G)
    print(f"decrease, spectral step: {-(G * step).sum():.3f}")
    print(f"decrease, same-length gradient step: {-(G * plain).sum():.3f}")
except NotImplementedError:
    print("finish exercise 2 first")
