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
# *Exercise notebook, generated from `solutions/02_spectral.py` by `make exercises`.*
# Fill in every function that raises `NotImplementedError`, then run its self-check;
# keep the functions' parameter names (the self-checks pass arguments by name), and
# compare with the solution notebook when you are done.

# %% [markdown]
# # 02 · Exercises: natural norms and alignment
#
# Two measurements that lecture 02 relies on: the RMS→RMS operator norm of a weight matrix,
# and the log alignment ratio of a layer with its inputs.

# %%
import math

import torch

from optimal_scaling.course.checks import lecture02

# %% [markdown]
# ## 1. The RMS→RMS norm
#
# For `W` of shape `(d_out, d_in)`, measure inputs and outputs by their RMS
# (`‖x‖_RMS = ‖x‖₂/√d`). The induced norm is
#
# $$\|W\|_{RMS\to RMS} = \max_x \frac{\|Wx\|_{RMS}}{\|x\|_{RMS}} = \sqrt{d_{in}/d_{out}}\;
#   \sigma_{\max}(W).$$
#
# Return it as a Python float.


# %%
def rms_to_rms(W: torch.Tensor) -> float:
    raise NotImplementedError('torch.linalg.matrix_norm(W, ord=2) is σ_max')


lecture02.check_rms_to_rms(rms_to_rms)

# %% [markdown]
# ## 2. The log alignment ratio
#
# $$A = \log_{\text{fan-in}} \frac{\|W z\|_{RMS}}{\|W\|_{RMS}\,\|z\|_{RMS}},$$
#
# where `z` is a batch of inputs of shape `(batch, d_in)`, `‖W‖_RMS` is the RMS of W's
# entries, and every RMS runs over all entries of its tensor.


# %%
def alignment_ratio(W: torch.Tensor, z: torch.Tensor) -> float:
    raise NotImplementedError('RMS = square root of the mean of the squared entries, for W z, W and z alike')


lecture02.check_alignment(alignment_ratio)

# %% [markdown]
# ## 3. Try it: ½ when independent, 1 when aligned
#
# With your function: a random `W` against random inputs, then a rank-one `W = u vᵀ` against
# inputs along `v` (the shape an update takes when it is a sum of aligned outer products).

# %%
g = torch.Generator().manual_seed(0)
for n in (64, 256, 1024):
    W = torch.randn(n, n, generator=g)
    u, v = torch.randn(n, generator=g), torch.randn(n, generator=g)
    try:
        independent = alignment_ratio(W, torch.randn(32, n, generator=g))
        aligned = alignment_ratio(torch.outer(u, v), v.repeat(32, 1))
        print(f"n = {n:5d}: random W, random z: A = {independent:.3f};  u vᵀ with z = v: "
              f"A = {aligned:.3f}")
    except NotImplementedError:
        print("finish exercise 2 first")
        break
