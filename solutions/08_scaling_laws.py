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
# # 08 · Exercises: the Huber objective, an IsoFLOP minimum, compute-optimal N

# %%
import numpy as np

import optimal_scaling as osc
from optimal_scaling import compute_optimal as co
from optimal_scaling.course.checks import lecture08
from optimal_scaling.results import read_table

ROOT = osc.course.repo_root()

# %% [markdown]
# ## 1. Approach 3's objective
#
# For parameters (E, A, B, α, β) and points (N_i, D_i, L_i), the residual of point i is taken
# in log space,
#
# r_i = log(E + A/N_i^α + B/D_i^β) − log L_i   (natural logs),
#
# and the objective is the **sum** of Huber losses with δ = 10⁻³:
#
# Huber_δ(r) = r²/2 if |r| ≤ δ, else δ·(|r| − δ/2).
#
# Write it; `params` is the tuple (E, A, B, alpha, beta), N, D, loss are arrays.


# %%
def huber_objective(params, N, D, loss, delta: float = 1e-3) -> float:
    # BEGIN SOLUTION
    # HINT: r with np.log (natural log), then np.where(np.abs(r) <= delta, ..., ...)
    E, A, B, alpha, beta = params
    r = np.log(E + A / N**alpha + B / D**beta) - np.log(loss)
    return float(np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - delta / 2)).sum())
    # END SOLUTION


lecture08.check_huber_objective(huber_objective)

# %% [markdown]
# On our committed runs (best learning rate per (N, D)), the objective at Chinchilla's
# published law and at the law fitted in the lecture. Which is lower, and by how much?

# %%
grid, _ = read_table(ROOT / "results" / "scaling_laws.csv")
best = grid.loc[grid.groupby(["model.width", "horizon"]).val_loss.idxmin()]
N, D, L = best.params.to_numpy(), best.tokens.to_numpy(), best.val_loss.to_numpy()
fit = co.fit_parametric(N, D, L, starts=co.start_grid()[::9])
try:
    print("Chinchilla's law:", huber_objective((1.69, 406.4, 410.7, 0.34, 0.28), N, D, L))
    print("fitted law:      ", huber_objective(tuple(fit[k] for k in co.PARAMETERS), N, D, L))
except NotImplementedError:
    print("write huber_objective() above first")

# %% [markdown]
# ## 2. The bottom of an IsoFLOP profile
#
# At one compute budget, models of several sizes N were trained on D = C/(6N) tokens each.
# Fit a parabola L ≈ p₂u² + p₁u + p₀ in u = log N and return N_opt = e^{u*} with
# u* = −p₁/(2p₂).


# %%
def isoflop_minimum(N: np.ndarray, loss: np.ndarray) -> float:
    # BEGIN SOLUTION
    # HINT: np.polyfit(x, y, 2) returns the coefficients highest power first
    p2, p1, _ = np.polyfit(np.log(N), loss, 2)
    return float(np.exp(-p1 / (2 * p2)))
    # END SOLUTION


lecture08.check_isoflop_minimum(isoflop_minimum)

# %% [markdown]
# Apply it to one IsoFLOP profile of our runs (interpolated by `co.isoflop_fit`) and compare
# with the package's vertex:

# %%
iso = co.isoflop_fit(best, budgets=8, bootstrap=0)
prof = iso["profiles"]
C = sorted(prof.C.unique())[len(prof.C.unique()) // 2]
one = prof[prof.C == C]
try:
    mine = isoflop_minimum(one.N.to_numpy(), one.loss.to_numpy())
    print(f"C = {C:.3g}: your N_opt = {mine:.4g}, "
          f"package {iso['points'].set_index('C').N_opt[C]:.4g}")
except NotImplementedError:
    print("write isoflop_minimum() above first")

# %% [markdown]
# ## 3. Compute-optimal N from a fitted law
#
# With C = 6ND, put D = C/(6N) into L = E + A/N^α + B/D^β and set dL/dN = 0. Show that
#
# N_opt = G·(C/6)^{β/(α+β)},  G = (αA/(βB))^{1/(α+β)},
#
# and write it.


# %%
def compute_optimal_n(E: float, A: float, B: float, alpha: float, beta: float,
                      C: float) -> float:  # fmt: skip
    # BEGIN SOLUTION
    # HINT: at the optimum α·A/N^α = β·B/D^β, with D = C/(6N)
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    return float(G * (C / 6) ** (beta / (alpha + beta)))
    # END SOLUTION


lecture08.check_compute_optimal_n(compute_optimal_n)

# %% [markdown]
# Chinchilla trained a 70B-parameter model on 1.4T tokens (C ≈ 5.9·10²³). What does its own
# approach-3 law say the model should have been, and how many tokens per parameter is that?

# %%
try:
    C = 6 * 70e9 * 1.4e12
    n = compute_optimal_n(1.69, 406.4, 410.7, 0.34, 0.28, C)
    print(f"N_opt = {n:.3g} parameters, {C / 6 / n / n:.1f} tokens per parameter")
except NotImplementedError:
    print("write compute_optimal_n() above first")
