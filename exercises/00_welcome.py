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
# *Exercise notebook, generated from `solutions/00_welcome.py` by `make exercises`.*
# Fill in every function that raises `NotImplementedError`, then run its self-check;
# keep the functions' parameter names (the self-checks pass arguments by name), and
# compare with the solution notebook when you are done.

# %% [markdown]
# # 00 · Exercises: counting parameters and compute
#
# Two small functions that every later lecture leans on. Fill in each function, then run the
# cell below it: its self-check compares your answer with the package on a few cases and
# prints ✅, ❌ with a hint, or ⏳ if you have not started.

# %%
import pandas as pd

from optimal_scaling.course.checks import lecture00

# %% [markdown]
# ## 1. Parameters of an MLP
#
# `osc.models.MLP(d_in, width, d_out, depth, bias)` stacks `depth` linear layers:
# `d_in → width`, then `depth − 2` layers `width → width`, then `width → d_out`.
# A linear layer `a → b` holds a `b × a` weight matrix and, with `bias=True`, `b` biases.
# Write the parameter count as a formula (do not build the model).


# %%
def mlp_num_params(d_in: int, width: int, d_out: int, depth: int, bias: bool = True) -> int:
    raise NotImplementedError('sum a·b (+ b with biases) over the layers input, hidden × (depth − 2), output')


lecture00.check_num_params(mlp_num_params)

# %% [markdown]
# ## 2. Training compute
#
# A forward pass costs about 2 FLOPs per parameter per sample (one multiply, one add) and the
# backward pass about twice that, so training on `D` samples costs `C ≈ 6·N·D`. Use your
# function from part 1.


# %%
def training_flops(d_in: int, width: int, d_out: int, depth: int, bias: bool, samples: int) -> int:
    raise NotImplementedError('6 × (parameters) × (samples)')


lecture00.check_training_flops(training_flops)

# %% [markdown]
# ## 3. Where do the parameters go?
#
# With your counter, see how width and depth share out a budget. Doubling the width roughly
# quadruples each hidden layer; each extra unit of depth adds one more width × width layer.
# (If a function above is still a stub this table says so instead.)

# %%
try:
    table = pd.DataFrame(
        [{"width": w, "depth": d, "params": mlp_num_params(32, w, 1, d),
          "C for 10⁶ samples": f"{training_flops(32, w, 1, d, True, 10**6):.2e}"}
         for w in (64, 128, 256) for d in (3, 6)]
    )
except NotImplementedError:
    table = "finish exercises 1 and 2 first"
table

# %% [markdown]
# Next: [lecture 01](../lectures/01_mup.ipynb) asks how the learning rate and the
# initialization must change when the width grows.
