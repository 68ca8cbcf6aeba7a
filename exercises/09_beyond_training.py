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
# *Exercise notebook, generated from `solutions/09_beyond_training.py` by `make exercises`.*
# Fill in every function that raises `NotImplementedError`, then run its self-check;
# keep the functions' parameter names (the self-checks pass arguments by name), and
# compare with the solution notebook when you are done.

# %% [markdown]
# # 09 · Exercises: tokens for a loss, pass@k, scoring answers

# %%
import numpy as np
import torch

import optimal_scaling as osc
from optimal_scaling import emergence as em
from optimal_scaling import inference_scaling as inf
from optimal_scaling import scaling_laws as sl
from optimal_scaling import test_time as tt
from optimal_scaling.course.checks import lecture09
from optimal_scaling.data import IGNORE

osc.config.seed_everything(0)
print(f"fast mode: {osc.config.fast_mode()}")

# %% [markdown]
# ## 1. How many tokens does a model of size N need?
#
# Under L(N, D) = E + A/N^α + B/D^β, a model of N parameters reaches the loss ℓ after
#
# D_ℓ(N) = (B / (ℓ − E − A/N^α))^{1/β}
#
# tokens — if ℓ − E − A/N^α > 0. Otherwise no amount of data is enough: return `np.inf`
# there. `N` is an array.


# %%
def tokens_for_loss(E, A, B, alpha, beta, N, loss):
    raise NotImplementedError('compute room = loss − E − A/N^α first, then np.where(room > 0, ..., np.inf)')


lecture09.check_tokens_for_loss(tokens_for_loss)

# %% [markdown]
# With it, find the inference-aware optimum on Chinchilla's law by brute force: on a log grid
# of N, the lifetime cost 6·N·D_ℓ(N) + 2·N·D_inf at the quality of Chinchilla itself, for a
# demand of 10¹³ inference tokens. Compare with the package.

# %%
chin = sl.LOSS_LAWS["Chinchilla approach 3"]
ell, d_inf = float(chin(70e9, 1.4e12)), 1e13
N = np.geomspace(1e9, 1e12, 20_001)
try:
    D = tokens_for_loss(chin.E, chin.A, chin.B, chin.alpha, chin.beta, N, ell)
    cost = 6 * N * D + 2 * N * d_inf
    i = int(np.argmin(cost))
    row = inf.inference_optimal(chin, ell, d_inf).iloc[0]
    print(f"grid: N* = {N[i]:.4g}, D* = {D[i]:.4g}; package: N* = {row.N:.4g}, D* = {row.D:.4g}")
except NotImplementedError:
    print("write tokens_for_loss() above first")

# %% [markdown]
# ## 2. The unbiased pass@k
#
# From n samples of a problem, c of them right, estimate the chance that k samples contain a
# right one: pass@k = 1 − C(n−c, k)/C(n, k). The binomials are huge numbers (C(200, 100) ≈
# 9·10⁵⁸; floats overflow past n ≈ 1000); the product form 1 − Π_{i=n−c+1}^{n}(1 − k/i) stays
# in [0, 1]. Return 1 when n − c < k.


# %%
def pass_at_k(n: int, c: int, k: int) -> float:
    raise NotImplementedError('return 1.0 when n − c < k; otherwise the product runs over i = n−c+1, …, n')


lecture09.check_pass_at_k(pass_at_k)

# %% [markdown]
# How far is the biased estimate 1 − (1 − c/n)^k from yours when k approaches n? Try n = 20,
# c = 2:

# %%
try:
    for k in (1, 5, 10, 19):
        print(f"k = {k:>2}: unbiased {pass_at_k(20, 2, k):.3f}, "
              f"with replacement {1 - (1 - 2 / 20) ** k:.3f}")
except NotImplementedError:
    print("write pass_at_k() above first")

# %% [markdown]
# ## 3. Scoring answers two ways
#
# `pred` holds a model's argmax predictions and `y` the targets, both `(rows, time)`; `y` is
# `IGNORE` (−100) at prompt positions. Return `(token_accuracy, exact_match)` as floats:
# the fraction of scored tokens predicted right, and the fraction of rows whose scored tokens
# are all right.


# %%
def answer_scores(pred: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    raise NotImplementedError('scored = y != IGNORE; right = (pred == y) & scored')


lecture09.check_answer_scores(answer_scores)

# %% [markdown]
# Train a small GPT on 2-digit addition for a few hundred steps and score it with your
# function along the way. How does exact match compare with p³ (three answer tokens)? p³ is
# what independent, equally hard positions would give; positions that differ in difficulty
# give less (Π_j p_j ≤ p³).

# %%
runs = em.addition_runs(widths=(32,), digits=2, steps=osc.config.choose(fast=400, full=800),
                        every=50, eval_problems=500)  # fmt: skip
x, y = runs.task.batch(500, torch.Generator().manual_seed(10_000))
try:
    for step in sorted({s for _, s in runs.snapshots}):
        model = runs.model_at(32, step).eval()
        with torch.no_grad():
            p, exact = answer_scores(model(x).argmax(-1), y)
        print(f"step {step:>4}: token accuracy {p:.3f}, exact match {exact:.3f}, p³ = {p**3:.3f}")
except NotImplementedError:
    print("write answer_scores() above first")

# %% [markdown]
# Finally, sample 32 answers per problem from the final model and compare pass@k (your
# estimator, averaged over problems) with a majority vote:

# %%
prompts, answers = runs.task.problems(100, torch.Generator().manual_seed(3))
samples = tt.sample_answers(runs.models[32], prompts, runs.task.answer_len, 32)
codes, right = runs.task.decode(samples).numpy(), runs.task.value(answers).numpy()
c = (codes == right[:, None]).sum(axis=1)
try:
    for k in (1, 4, 16, 32):
        mine = np.mean([pass_at_k(32, int(ci), k) for ci in c])
        vote = tt.majority_at_k(codes, right, k).mean()
        print(f"k = {k:>2}: pass@k {mine:.3f}, majority@k {vote:.3f}")
except NotImplementedError:
    print("write pass_at_k() above first")
