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
# # 03 · Modular duality
#
# A gradient is not an update. The gradient `g` lives in the *dual* space: it tells how the
# loss changes along each direction, `⟨g, Δw⟩`. To turn it into a step you must say how long
# a step is, that is, pick a **norm**, and then ask which step of a given length decreases the
# loss most. Different norms give different optimizers: the Euclidean norm gives gradient
# descent, the max norm gives sign descent (Adam without its moving averages), the spectral
# norm gives Muon. This lecture makes that precise and computes it for every kind of layer.

# %%
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from IPython.display import display
from ipywidgets import Dropdown, FloatLogSlider, IntSlider, interact
from plotly.subplots import make_subplots

from optimal_scaling import duality, norms

# %% [markdown]
# ## Unit balls and their duals
#
# In the plane, the unit balls of `ℓ1`, `ℓ2` and `ℓ∞` are a diamond, a disc and a square. The
# **dual norm** of `g` is the largest inner product it reaches on the unit ball,
# `‖g‖† = max_{‖a‖ ≤ 1} ⟨g, a⟩`. The dual of `ℓ1` is `ℓ∞` and vice versa; `ℓ2` is its own dual.
# Below, each ball is traced numerically (directions `u`, scaled to `u/‖u‖`), and its dual
# ball is traced from the definition (a maximum over the ball's boundary), not from the
# formula:

# %%
theta = np.linspace(0, 2 * np.pi, 721)
directions = np.stack([np.cos(theta), np.sin(theta)], axis=1)
vector_norms = {"ℓ1": lambda v: np.abs(v).sum(-1), "ℓ2": lambda v: np.linalg.norm(v, axis=-1),
                "ℓ∞": lambda v: np.abs(v).max(-1)}
fig = make_subplots(rows=1, cols=3, subplot_titles=list(vector_norms))
for col, (name, norm) in enumerate(vector_norms.items(), start=1):
    ball = directions / norm(directions)[:, None]
    dual = (directions @ ball.T).max(axis=1)  # ‖u‖† = max over the ball of ⟨u, a⟩
    dual_ball = directions / dual[:, None]
    fig.add_scatter(x=ball[:, 0], y=ball[:, 1], name=f"{name} ball", row=1, col=col,
                    line={"color": "royalblue"}, showlegend=col == 1)
    fig.add_scatter(x=dual_ball[:, 0], y=dual_ball[:, 1], name="its dual ball", row=1, col=col,
                    line={"color": "crimson", "dash": "dot"}, showlegend=col == 1)
fig.update_yaxes(scaleanchor="x", scaleratio=1, title_text="coordinate 2", col=1)
fig.update_xaxes(title_text="coordinate 1")
fig.update_layout(title="unit balls (solid) and dual balls (dotted), computed from the definitions")
fig.show()

# %% [markdown]
# ## The duality map and steepest descent
#
# The maximizer `dualize(g) = argmax_{‖a‖ ≤ 1} ⟨g, a⟩` is the direction of steepest ascent in
# that norm. Minimizing the local model `⟨g, Δw⟩ + (λ/2)‖Δw‖²` over both direction and length
# gives **steepest descent under the norm**:
#
# $$\Delta w = -\frac{\|g\|^\dagger}{\lambda}\;\operatorname{dualize}(g).$$
#
# For vectors: `ℓ2` gives `g/‖g‖₂` (gradient descent); `ℓ∞` gives `sign(g)` (sign descent,
# with `‖g‖† = ‖g‖₁`); `ℓ1` gives the largest coordinate alone (coordinate descent, with
# `‖g‖† = ‖g‖∞`).


# %%
def dualize_vector(g: np.ndarray, name: str) -> tuple[np.ndarray, float]:
    """(dualize(g), ‖g‖†) for the ℓ1, ℓ2 and ℓ∞ norms."""
    if name == "ℓ2":
        return g / np.linalg.norm(g), float(np.linalg.norm(g))
    if name == "ℓ∞":
        return np.sign(g), float(np.abs(g).sum())
    e = np.zeros_like(g)
    i = int(np.abs(g).argmax())
    e[i] = np.sign(g[i])
    return e, float(np.abs(g).max())


H = np.array([[3.0, 1.0], [1.0, 0.6]])  # an ill-conditioned quadratic f(w) = ½ wᵀ H w


def trajectory(name: str, sharpness: float, steps: int, start=(-1.5, 2.0)) -> np.ndarray:
    w = np.array(start)
    path = [w]
    for _ in range(steps):
        g = H @ w
        d, dual = dualize_vector(g, name)
        w = w - dual / sharpness * d
        path.append(w)
    return np.array(path)


def plot_descent(sharpness: float, steps: int, which: str = "all three"):
    xs = np.linspace(-2.5, 2.5, 101)
    X, Y = np.meshgrid(xs, xs)
    Z = 0.5 * (H[0, 0] * X**2 + 2 * H[0, 1] * X * Y + H[1, 1] * Y**2)
    fig = go.Figure(go.Contour(x=xs, y=xs, z=Z, showscale=False, contours_coloring="lines",
                               colorscale="gray", ncontours=20))
    for name, color in zip(vector_norms, ["seagreen", "royalblue", "crimson"], strict=True):
        if which not in ("all three", name):
            continue
        p = trajectory(name, sharpness, steps)
        fig.add_scatter(x=p[:, 0], y=p[:, 1], mode="lines+markers", name=name,
                        line={"color": color})
    fig.update_layout(title=f"steepest descent on a quadratic, λ = {sharpness:g}, {steps} steps",
                      width=650, height=600, xaxis_title="w₁", yaxis_title="w₂")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


plot_descent(sharpness=8.0, steps=12).show()

# %% [markdown]
# The three optimizers reach different points from the same gradients: each measures a step's
# length differently. Choose a norm and the sharpness (λ plays the role of 1/learning rate):
# small λ makes the steps overshoot (at the slider's smallest λ every method does), large λ
# slows every method.

# %%
interact(lambda norm, sharpness, steps: plot_descent(sharpness, steps, norm).show(),
         norm=Dropdown(options=["all three", *vector_norms], value="ℓ∞"),
         sharpness=FloatLogSlider(value=8, base=10, min=0, max=2, step=0.1),
         steps=IntSlider(value=12, min=1, max=40));

# %% [markdown]
# ## Adam is sign descent; Muon is spectral descent
#
# Adam with both moving averages switched off (`β1 = β2 = 0`, `ε = 0`) divides each gradient
# entry by its own magnitude: its step is `−η·sign(G)`. That is steepest descent under the
# elementwise max norm `max_ij |W_ij|` (the ℓ1→∞ operator norm), the "max-of-max" norm.
# Measured with `torch.optim.Adam` against the package's `Sign` duality map:

# %%
g = torch.Generator().manual_seed(0)
W0, G = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
W = torch.nn.Parameter(W0.clone())
W.grad = G.clone()
torch.optim.Adam([W], lr=0.01, betas=(0.0, 0.0), eps=1e-30).step()
sign_map = duality.Sign(scaled=False)
expected = -0.01 * sign_map.dualize(G)
print(f"max |Adam step − (−η·dualize_Sign(G))| = {(W.detach() - W0 - expected).abs().max():.2e}")

# %% [markdown]
# Under the spectral (RMS→RMS) norm the duality map is `√(d_out/d_in)·U Vᵀ` from the SVD
# `G = U Σ Vᵀ`: the gradient with every singular value set equal. That is the update Shampoo
# (without accumulation) and Muon compute; lecture 04 computes it without an SVD.

# %%
G = torch.randn(8, 32, generator=g)
D = duality.Spectral().dualize(G)
print("singular values of G:          ", torch.linalg.svdvals(G).numpy().round(2))
print("singular values of dualize(G): ", torch.linalg.svdvals(D).numpy().round(3))
print(f"√(d_out/d_in) = {math.sqrt(8 / 32):.3f}; ⟨G, dualize(G)⟩ = "
      f"{(G * D).sum():.4f}, ‖G‖† = {duality.Spectral().dual_norm(G):.4f}")

# %% [markdown]
# Shampoo preconditions a gradient from both sides with its two Gram matrices,
# `L^{-1/4} G R^{-1/4}` with `L = G Gᵀ` and `R = Gᵀ G`. Without accumulation (one gradient)
# that is exactly `U Vᵀ`: with `G = U Σ Vᵀ`, `L^{-1/4} = U Σ^{-1/2} Uᵀ` and
# `R^{-1/4} = V Σ^{-1/2} Vᵀ` on G's row and column spaces, so the product is
# `U Σ^{-1/2} Σ Σ^{-1/2} Vᵀ`. Measured, with inverse fourth roots from eigendecompositions
# (in float64; `R` is 32×32 of rank 8, so its zero eigenvalues are left out):

# %%
def inverse_fourth_root(M: torch.Tensor, rank: int) -> torch.Tensor:
    """M^{-1/4} on the span of M's top ``rank`` eigenvectors (the pseudo-inverse root)."""
    vals, vecs = torch.linalg.eigh(M)
    vals, vecs = vals[-rank:], vecs[:, -rank:]
    return vecs @ torch.diag(vals**-0.25) @ vecs.T


G64 = G.double()
shampoo = inverse_fourth_root(G64 @ G64.T, 8) @ G64 @ inverse_fourth_root(G64.T @ G64, 8)
uvt = D.double() / math.sqrt(8 / 32)  # dualize(G) = √(d_out/d_in)·U Vᵀ
print(f"max |Shampoo step − U Vᵀ| = {(shampoo - uvt).abs().max():.2e}")

# %% [markdown]
# ## Dualize per module
#
# A network is a list of modules, each with a natural norm: the norm in which a unit step
# changes its output by a unit amount. Modular duality dualizes the gradient of each module
# in its own norm. The package's choices, and a numerical check of the two defining
# identities on a random gradient, `⟨g, dualize(g)⟩ = ‖g‖†` and `‖dualize(g)‖ = 1`:

# %%
modules = [
    ("embedding (one-hot in)", "colnorm", (64, 256)),
    ("hidden linear", "spectral", (256, 256)),
    ("readout (to logits)", "rownorm", (256, 64)),
    ("readout, sign variant", "sign", (256, 64)),
    ("bias", "bias_rms", (256,)),
    ("conv2d 3×3", "conv2d_spectral", (32, 16, 3, 3)),
]
rows = []
for module, map_name, shape in modules:
    lmo = duality.get_map(map_name)
    grad = torch.randn(shape, generator=g)
    d = lmo.dualize(grad)
    rows.append({"module": module, "duality map": type(lmo).__name__, "shape": shape,
                 "⟨g, dualize(g)⟩": (grad * d).sum().item(), "‖g‖†": lmo.dual_norm(grad).item(),
                 "‖dualize(g)‖": lmo.norm(d).item(),
                 "‖init‖": lmo.norm(lmo.init(shape, generator=g)).item()})
pd.DataFrame(rows).round(4)

# %% [markdown]
# (`BiasRMS` initializes at zero, whose norm is 0.) The induced norms behind these maps,
# with the package's closed forms checked against the definition `max_x ‖Wx‖_β/‖x‖_α` by
# brute force on a small matrix. Brute force takes the best ratio over random samples x
# (plus the candidate maximizers it knows), so it can only fall short of the maximum: it is
# a lower bound. Where the maximizer is known in closed form (a vertex of the ℓ1 ball, or a
# row's direction for RMS→∞), it is among the candidates and the two columns agree; for
# RMS→RMS the maximizer is the top singular vector, which random samples only approach, so
# brute force lands a little below the closed form:

# %%
M = torch.randn(5, 7, generator=g)
pairs = {"l1->rms": ("l1", "rms"), "rms->inf": ("rms", "inf"), "l1->inf": ("l1", "inf"),
         "l1->l2": ("l1", "l2"), "rms->rms": ("rms", "rms")}
check = pd.DataFrame([{"norm": name, "closed form": norms.operator_norm(M, name).item(),
                       "brute force": norms.induced_norm_bruteforce(M, a, b, samples=20000,
                                                                    generator=g).item()}
                      for name, (a, b) in pairs.items()])
check["brute / closed"] = check["brute force"] / check["closed form"]
assert (check["brute / closed"] <= 1 + 1e-6).all()  # a lower bound, never above
known = check.norm != "rms->rms"  # maximizer among the candidates: equal
assert (check.loc[known, "brute / closed"] >= 1 - 1e-6).all()
assert check.loc[~known, "brute / closed"].item() > 0.9  # random samples come close
check.round(4)

# %% [markdown]
# ## Normalise everything
#
# A dualized update has norm 1 in its map's norm by construction, whatever the gradient's
# scale: the length of a step Δw = −η·dualize(g) (Muon's and Scion's) is set by η alone (the
# λ form scales it by ‖g‖†/λ instead). What makes that useful is that each layer type gets the
# norm of the inputs it sees, so a unit step changes the layer's *output* by a width-free
# amount: the property μP had to engineer layer by layer. Measured on each map's own layer
# (input: n × 32 with one-hot inputs; hidden: n × n; output: 32 × n with RMS-1 inputs), with
# gradients g = Σ_b δ_b x_bᵀ/8 from 8 inputs and errors δ whose scale varies wildly with width
# (first table: the hidden gradient's RMS→RMS norm, and what ColNorm's unit step would be on
# that square layer), the RMS of Δw·x on one of those training inputs (second table):

# %%
V, batch, rows = 32, 8, []
for n in (64, 256, 1024):
    scale = 10 ** np.random.default_rng(n).uniform(-4, 2)  # decades apart from width to width
    for layer, map_name, (d_out, d_in) in [("input", "colnorm", (n, V)), ("input", "sign", (n, V)),
                                           ("hidden", "spectral", (n, n)),
                                           ("output", "rownorm", (V, n))]:
        if layer == "input":  # one-hot tokens
            x = torch.eye(d_in)[:, torch.randint(d_in, (batch,), generator=g)]
        else:  # RMS-1 activations
            x = torch.randn(d_in, batch, generator=g)
        grad = scale * torch.randn(d_out, batch, generator=g) @ x.T / batch
        lmo = duality.get_map(map_name)
        step = lmo.dualize(grad)
        assert abs(lmo.norm(step).item() - 1) < 1e-4  # unit size in its own norm
        rows.append({"width": n, "layer (map)": f"{layer} ({map_name})",
                     "RMS→RMS norm of g": norms.rms_to_rms(grad).item(),
                     "RMS of dualize(g)·x": (step @ x[:, 0]).pow(2).mean().sqrt().item(),
                     "ColNorm's step, RMS→RMS": norms.rms_to_rms(
                         duality.get_map("colnorm").dualize(grad)).item()})
rows = pd.DataFrame(rows)
gnorm = "RMS→RMS norm of g"
hidden = rows[rows["layer (map)"] == "hidden (spectral)"].set_index("width")
display(hidden[[gnorm, "ColNorm's step, RMS→RMS"]].style.format("{:.3g}"))
table = rows.pivot(index="width", columns="layer (map)", values="RMS of dualize(g)·x")
spread = table.max() / table.min()
print("largest change of the output size from width 64 to 1024: "
      f"{spread.max():.2f}× (the gradient scale: {hidden[gnorm].max() / hidden[gnorm].min():.3g}×)")
table.round(3)

# %%
# the output layer's value in 200 fresh draws per width (RowNorm ignores the gradient's scale)
draws = {n: [] for n in (64, 256, 1024)}
for n, values in draws.items():
    for _ in range(200):
        x = torch.randn(n, batch, generator=g)
        step = duality.get_map("rownorm").dualize(torch.randn(V, batch, generator=g) @ x.T)
        values.append((step @ x[:, 0]).pow(2).mean().sqrt().item())
print("output (rownorm), mean ± standard error over 200 draws: "
      + ", ".join(f"n={n}: {np.mean(v):.3f} ± {np.std(v) / len(v) ** 0.5:.3f}"
                  for n, v in draws.items()) + f"; 1/√8 = {8 ** -0.5:.3f}")

# %% [markdown]
# Every column stays within a small factor across widths (the sign map's 1/32 is its 1/d_in
# scale for one-hot inputs; the output layer's value scatters around 1/√8 ≈ 0.35 (its batch
# holds 8 random inputs) from one draw to the next, and its mean over many draws, printed
# above, stays within a few percent of it at every width), while the gradients' sizes span
# decades. A map used on the wrong layer would not be: ColNorm's unit
# step on the square hidden matrix (first table) has an RMS→RMS norm that grows with n.

# %% [markdown]
# ## Summary
#
# * A norm turns a gradient into an update: `Δw = −(‖g‖†/λ)·dualize(g)`.
# * ℓ2 gives gradient descent, the max norm gives sign descent (Adam with β = 0), the spectral
#   norm gives orthogonalized updates (Shampoo, Muon).
# * Each module gets its own norm, duality map and matching init (ColNorm, Spectral, RowNorm,
#   Sign, BiasRMS, Conv2D); dualized updates have unit size at every width.
# * Exercise: [`exercises/03_duality.ipynb`](../exercises/03_duality.ipynb): a duality map and
#   one steepest-descent step. Next: lecture 04 computes `U Vᵀ` fast, with Newton–Schulz.
