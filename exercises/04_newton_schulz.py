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
# *Exercise notebook, generated from `solutions/04_newton_schulz.py` by `make exercises`.*
# Fill in every function that raises `NotImplementedError`, then run its self-check;
# keep the functions' parameter names (the self-checks pass arguments by name), and
# compare with the solution notebook when you are done.

# %% [markdown]
# # 04 · Exercises: one Newton–Schulz step, the response, the FLOP count

# %%
import numpy as np
import torch

from optimal_scaling import newton_schulz as ns
from optimal_scaling.course.checks import lecture04

# %% [markdown]
# ## 1. One Newton–Schulz step
#
# For `X` of shape `m × n` with `m ≤ n`, one step with coefficients `(a, b, c)` is
#
# `A = X Xᵀ`,  `B = b·A + c·A·A`,  `X ← a·X + B·X`,
#
# which equals `a X + b (X Xᵀ) X + c (X Xᵀ)² X`: the odd polynomial `p(σ) = aσ + bσ³ + cσ⁵`
# applied to every singular value of `X`. Keep `X`'s dtype (the self-check uses float64).


# %%
def ns_step(X: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    raise NotImplementedError('three lines: A = X @ X.T, then B, then the new X')


lecture04.check_ns_step(ns_step)

# %% [markdown]
# ## 2. The response function
#
# Since each step maps singular values through its own scalar polynomial, `k` steps map
# `σ ↦ p_k(… p_2(p_1(σ)))`. Write that composition for a list of triples `[(a, b, c), ...]`
# (one per step), applied to a numpy array of singular values.


# %%
def response(sigma: np.ndarray, triples: list) -> np.ndarray:
    raise NotImplementedError("compose: apply the first triple's polynomial to σ, the next one to that result, …")


lecture04.check_response(response)

# %% [markdown]
# Use it: after five Muon steps, which interval do singular values that start in
# `[10⁻², 1]` end in?

# %%
try:
    band = response(np.geomspace(1e-2, 1, 2001), [ns.MUON] * 5)
    print(f"[{band.min():.3f}, {band.max():.3f}]")
except NotImplementedError:
    print("write response() above first")

# %% [markdown]
# ## 3. The FLOP count
#
# Count the FLOPs of one step on an `m × n` matrix (a multiply-add is 2 FLOPs; transpose first
# if `m > n`). Dense products: `X Xᵀ` costs `2m²n`, `A·A` costs `2m³`, `B·X` costs `2m²n`.
# With `symmetric=True`, count only one triangle of the two symmetric products `X Xᵀ` and
# `A·A` (half their dense cost); `B·X` is not symmetric and stays dense. Ignore the additions
# of `b·A` and `a·X`.


# %%
def step_flops(m: int, n: int, symmetric: bool) -> int:
    raise NotImplementedError('work on the short side first, then count the three products of one step')


lecture04.check_flops(step_flops)

# %% [markdown]
# What is the largest saving the symmetric kernels can give, and for which shape?

# %%
try:
    for m, n in [(1024, 1024), (1024, 4096), (128, 16384)]:
        dense, sym = step_flops(m, n, False), step_flops(m, n, True)
        print(f"{m}×{n}: {dense / sym:.3f}× fewer FLOPs")
except NotImplementedError:
    print("write step_flops() above first")
