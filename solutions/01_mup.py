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
# # 01 · Exercises: μP by hand
#
# Three exercises: write the μP rules for a layer, write the coordinate-check statistic, and
# predict a slope before measuring it. Each ends with a self-check.

# %%
import torch

from optimal_scaling.coord_check import fit_slopes, mlp_coord_check
from optimal_scaling.course.checks import lecture01

# %% [markdown]
# ## 1. The μP multipliers of a layer
#
# Write the init standard deviation and the learning-rate multiplier of one weight matrix
# under μP (Table 3 form), relative to a base model whose matrix had shape
# `base_fan_out × base_fan_in`. With `r_in = fan_in / base_fan_in` and
# `r_out = fan_out / base_fan_out`:
#
# |             | input | hidden | output |
# |---|---|---|---|
# | init std | 1/√fan_in | 1/√fan_in | (1/√base_fan_in) / r_in |
# | Adam LR multiplier | 1 | 1/r_in | 1/r_in |
# | SGD LR multiplier | r_out | 1 | 1/r_in |
#
# `role` is `"input"`, `"hidden"` or `"output"`, `optimizer` is `"adam"` or `"sgd"`; return a
# dict `{"init_std": float, "lr_mult": float}`.


# %%
def mup_multipliers(role: str, fan_in: int, fan_out: int, base_fan_in: int, base_fan_out: int,
                    optimizer: str) -> dict:
    # BEGIN SOLUTION
    # HINT: compute r_in and r_out, then read the two rows of the table for this role
    r_in, r_out = fan_in / base_fan_in, fan_out / base_fan_out
    if role == "output":
        std = base_fan_in**-0.5 / r_in
    else:
        std = fan_in**-0.5
    if optimizer == "adam":
        lr = {"input": 1.0, "hidden": 1 / r_in, "output": 1 / r_in}[role]
    else:
        lr = {"input": r_out, "hidden": 1.0, "output": 1 / r_in}[role]
    return {"init_std": std, "lr_mult": lr}
    # END SOLUTION


lecture01.check_mup_multipliers(mup_multipliers)

# %% [markdown]
# ## 2. The coordinate-check statistic
#
# Given a layer's output `h` now and `h0` at initialization (same input batch), return the two
# statistics of a coordinate check: `mean |h|` and `mean |h − h0|`, averaged over every
# coordinate, as Python floats.


# %%
def coord_stats(h: torch.Tensor, h0: torch.Tensor) -> tuple[float, float]:
    # BEGIN SOLUTION
    # HINT: two Python floats: the mean of |h| and the mean of |h − h0| over every coordinate
    return h.abs().mean().item(), (h - h0).abs().mean().item()
    # END SOLUTION


lecture01.check_coord_stats(coord_stats)

# %% [markdown]
# ## 3. Predict a slope, then measure it
#
# Under the **standard parametrization with Adam**, how fast does the change of the *hidden*
# layer's output, `mean |h − h0|`, grow with width after the first update? Give the exponent
# `s` in `n^s`. Think about Adam's first step (each weight moves by `±lr`, with a sign that
# follows the gradient) and how many inputs each hidden unit sums. Then the cell below
# measures it.


# %%
def predicted_slope() -> float:
    # BEGIN SOLUTION
    # HINT: each hidden unit sums n inputs, each multiplied by a weight change of ±lr
    return 1.0
    # END SOLUTION


df = mlp_coord_check("sp", "adam", widths=[128, 256, 512, 1024], seeds=range(2))
slopes = fit_slopes(df)
measured = slopes.query("layer == 'hidden.0' and stat == 'delta' and step == 2").slope.item()
print(f"measured slope of the hidden layer's change after one step: {measured:.2f}")
lecture01.check_slope_prediction(predicted_slope, measured)

# %% [markdown]
# The readout is worse off: it adds its own `±lr` updates (another factor `n`) *and* reads the
# hidden change, which has grown like `n`, through weights of size `1/√n` that it is aligned
# with, a term that grows like `n^{3/2}`. At these widths the measured slope sits between 1
# and 1.5:

# %%
readout = slopes.query("layer == 'output' and stat == 'delta' and step == 2").slope.item()
print(f"SP: slope of the readout's change after one step: {readout:.2f}")

# %% [markdown]
# Under μP the hidden learning rate is divided by `r_in`, which cancels the sum over `n`
# inputs: the measured slope should be near 0.

# %%
mup = fit_slopes(mlp_coord_check("mup", "adam", widths=[128, 256, 512, 1024], seeds=range(2)))
mup_measured = mup.query("layer == 'hidden.0' and stat == 'delta' and step == 2").slope.item()
verdict = "flat, as predicted" if abs(mup_measured) <= 0.15 else "NOT flat: look closer"
print(f"μP: slope of the hidden layer's change after one step: {mup_measured:.2f} ({verdict})")
