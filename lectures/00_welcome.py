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
# # 00 · Welcome: what does it mean to scale?
#
# This course is about one question: **when you make a network bigger, or train it on more
# data, how must everything else change so that training stays optimal?** Learning rates,
# initializations, batch sizes and the optimizer itself all have to move with scale, and
# getting them wrong at the largest scale is expensive.
#
# Every lecture imports the course's own package, `optimal_scaling` (imported as `osc`), and
# every claim is backed by code that runs in this notebook. In **fast mode** (set
# automatically in CI) each experiment is shrunk to run in about a minute on a laptop CPU;
# in **full mode** the same code runs the classroom-sized version.

# %%
import pandas as pd
import plotly.express as px
import torch
import torch.nn.functional as F
from ipywidgets import Dropdown, interact

import optimal_scaling as osc

# %% [markdown]
# ## Your environment
#
# The package picks a device for you (CUDA, then Apple's MPS, then the CPU) so no notebook
# hard-codes `.cuda()`. Set `OPTIMAL_SCALING_DEVICE=cpu` to force one, and
# `OPTIMAL_SCALING_FAST=1` (or `0`) to choose the mode.

# %%
pd.Series(osc.config.environment(), name="value").to_frame()

# %% [markdown]
# ## The course map
#
# The lectures follow one thread: from making *width* transfer (μP, the spectral condition),
# through the geometry that explains it (norms, duality) and the optimizers built on it
# (Newton–Schulz, Muon, Scion), to making *data* and *batch size* transfer (critical batch
# size, norm transfer) and predicting loss at scale (scaling laws); an optional last lecture
# looks past training (inference cost, how abilities are scored, compute spent at test time).
# "coming" marks lectures that do not exist yet in this checkout.

# %%
osc.course.course_map().drop(columns="notebook")

# %% [markdown]
# ## What is "scale"?
#
# A training run has a few numbers you can turn up:
#
# * **width**: the number of units per layer (the size of each weight matrix);
# * **depth**: the number of layers;
# * **data**: the number of training samples (or tokens) `D` the model sees;
# * **compute**: the floating-point operations spent, about `C ≈ 6·N·D` for a model with `N`
#   parameters (2 FLOPs per parameter per sample forward, twice that backward).
#
# Width and depth set `N`; steps × batch size set `D`; together they set `C`. Let us watch
# one of them, width, in a small live experiment: a regression task whose targets come from a
# fixed random "teacher" network, learned by MLP "students" of several widths, with the same
# optimizer (Adam), the same learning rate and the same stream of fresh data.
#
# $$ y = v^\top \tanh\!\big(s\,W x/\sqrt{d_{\text{in}}}\big)/\sqrt{k}, \qquad
#    x \sim \mathcal N(0, I). $$

# %%
dev = osc.config.device()
task = osc.data.TeacherTask(d_in=32, width=256, scale=2.0, seed=0)
widths = osc.config.choose(fast=[8, 32, 128], full=[8, 16, 32, 64, 128, 256, 512, 1024])
steps = osc.config.choose(fast=150, full=2000)
batch_size, lr = 128, 1e-3
x_val, y_val = task.batch(4096, torch.Generator().manual_seed(123), dev)


def train(width: int, seed: int = 0) -> list[dict]:
    """Train one student of this width; return its validation loss at a few steps."""
    osc.config.seed_everything(seed)
    model = osc.models.MLP(task.d_in, width, 1, depth=3).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(1000)  # the same data stream for every width
    n_params = model.num_params()
    eval_every = max(1, steps // 25)
    rows = []
    for step in range(1, steps + 1):
        x, y = task.batch(batch_size, data, dev)
        loss = F.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                val = F.mse_loss(model(x_val), y_val).item()
            samples = step * batch_size
            rows.append({"width": width, "params": n_params, "step": step, "samples": samples,
                         "compute (FLOPs)": 6 * n_params * samples, "val loss": val})
    return rows


runs = pd.DataFrame([row for w in widths for row in train(w)])
final = runs[runs.step == steps].set_index("width")[["params", "val loss"]]
final

# %% [markdown]
# Loss against the number of samples seen, one curve per width (log–log axes):

# %%
fig = px.line(runs, x="samples", y="val loss", color=runs.width.astype(str), log_x=True,
              log_y=True, labels={"color": "width"},
              title="Wider students, same data: validation loss vs samples seen")
fig.show()

# %% [markdown]
# What did this run show? The cell below reads it off the numbers rather than asserting it.

# %%
losses = final["val loss"]
ordered = losses.is_monotonic_decreasing
print(f"final validation loss from width {widths[0]} to {widths[-1]}: "
      + " → ".join(f"{v:.4f}" for v in losses))
print("wider was better at every step of width" if ordered else
      "wider was NOT better at every step of width in this run: at this scale and learning "
      "rate the ordering is not clean. The recipe (learning rate, initialization) was not "
      "rescaled with width; lecture 01 shows what rescaling it does")

# %% [markdown]
# The same runs against **compute** `C = 6·N·D`: a wide model costs more per sample, so at a
# fixed compute budget it has seen fewer samples. Which width is best depends on the budget;
# the lower envelope of these curves is what the scaling laws of lecture 08 fit.

# %%
fig = px.line(runs, x="compute (FLOPs)", y="val loss", color=runs.width.astype(str),
              log_x=True, log_y=True, labels={"color": "width"},
              title="The same runs against training compute C ≈ 6·N·D")
fig.show()

# %% [markdown]
# ### Play with it
#
# Pick a width to highlight and an x-axis. (The runs are those above; change `widths` or
# `steps` and re-run the experiment cell to add more.)


# %%
def show(width: int, x_axis: str) -> None:
    highlighted = runs.assign(run=runs.width.map(lambda w: "selected" if w == width else "other"))
    fig = px.line(highlighted, x=x_axis, y="val loss", line_group="width", color="run",
                  color_discrete_map={"selected": "crimson", "other": "lightgray"},
                  log_x=True, log_y=True, hover_data=["width", "params"],
                  title=f"width {width}: {final.loc[width, 'params']:,} parameters")
    fig.show()


interact(show, width=Dropdown(options=widths, value=widths[-1]),
         x_axis=Dropdown(options=["samples", "compute (FLOPs)", "step"], value="samples"));

# %% [markdown]
# ## How exercises and self-checks work
#
# Each lecture has an exercise notebook in `exercises/` (generated from the matching notebook
# in `solutions/`). You fill in functions that start as `raise NotImplementedError(...)`, then
# run a **self-check** that compares your function with the package's reference on small
# inputs and prints one line. Here is the mechanism on a toy function, with a wrong answer,
# a stub and a right answer:

# %%
def square_wrong(x: float) -> float:
    return 2 * x


def square_stub(x: float) -> float:
    raise NotImplementedError("return x squared")


def square_right(x: float) -> float:
    return x * x


cases = [{"x": 3.0}, {"x": -1.5}, {"x": 0.0}]
with osc.course.checks.strict(False):  # CI runs lectures in strict mode, where a failure raises
    for fn in (square_wrong, square_stub, square_right):
        osc.course.checks.check("square", fn, lambda x: x**2, cases, hint="multiply x by itself")

# %% [markdown]
# ## Summary
#
# * Scale has several axes (width, depth, data, compute), and `C ≈ 6·N·D` ties them together.
# * The experiment above trained every width with the same recipe and printed whether wider
#   was better at every step of width. Whatever it showed at this scale, it does not hold in
#   general: at a fixed learning rate and initialization, wide enough models spike in their
#   first steps and end worse (lecture 01 measures it under the standard parametrization).
#   The recipe (learning rate, initialization, batch size) has to scale with the model: the
#   subject of this course.
# * Next: [lecture 01](01_mup.ipynb), hyperparameters and μP.
# * Exercise: [`exercises/00_welcome.ipynb`](../exercises/00_welcome.ipynb): count an MLP's
#   parameters and its training compute, with self-checks.
