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
# # 09 · Beyond training: inference-aware scaling, sharp metrics, test-time compute
#
# Lectures 06–08 asked one question: how to spend a **training** budget so that the loss is
# as low as possible. Three things that question leaves out, each with a small computation:
#
# 1. **Inference is paid too.** A model that will serve many tokens should be smaller and
#    trained longer than the Chinchilla-optimal one — on a published law, on the law we
#    fitted in lecture 08, and on our measured runs directly.
# 2. **Loss is not what users score.** Exact-match accuracy on a multi-token answer jumps more
#    sharply than the per-token accuracy it is built from — trained live on addition, where
#    the loss itself also falls in steps.
# 3. **Compute can be spent at test time.** Sampling k answers and keeping a right one
#    (pass@k) rises steadily with k; a majority vote over the same samples rises far less.
#
# This lecture is optional: a discussion with small computed illustrations, not a method to
# apply as is.

# %%
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from ipywidgets import FloatSlider, IntSlider, interact
from plotly.subplots import make_subplots
from scipy.stats import binom

import optimal_scaling as osc
from optimal_scaling import compute_optimal as co
from optimal_scaling import emergence as em
from optimal_scaling import inference_scaling as inf
from optimal_scaling import scaling_laws as sl
from optimal_scaling import test_time as tt
from optimal_scaling.results import read_table

osc.config.seed_everything(0)
ROOT = osc.course.repo_root()
DEVICE = osc.config.device()
print(f"device: {DEVICE}, fast mode: {osc.config.fast_mode()}")

# %% [markdown]
# ## 1. Inference-aware scaling
#
# Training a model of N parameters on D tokens costs about 6ND FLOPs; running it on D_inf
# tokens afterwards costs about 2N·D_inf (a forward pass only). Sardana et al. (2024) fix the
# **quality** — a target loss ℓ — and minimize the **lifetime** cost:
#
# $$\min_{N}\; 6\,N\,D_\ell(N) + 2\,N\,D_\text{inf},\qquad
#   D_\ell(N) = \Big(\frac{B}{\ell - E - A/N^\alpha}\Big)^{1/\beta},$$
#
# where D_ℓ(N) solves L(N, D) = ℓ for the law of lecture 08. It exists only above
# N_min = (A/(ℓ − E))^{1/α}: a smaller model never reaches ℓ, however long it trains. With
# D_inf = 0 this is Chinchilla's compute-optimal model for the loss ℓ; as D_inf grows, every
# parameter is paid for on each token served, so the optimum slides toward N_min and buys
# the missing quality with more training tokens.
#
# Chinchilla's own law, at the quality of Chinchilla itself (70B parameters, 1.4T tokens):

# %%
chin = sl.LOSS_LAWS["Chinchilla approach 3"]
target = float(chin(70e9, 1.4e12))
demand = [0.0, 1e11, 1e12, 1e13, 1e14, 1e15]
table = inf.inference_optimal(chin, target, demand)
print(f"target loss ℓ = {target:.4f}; smallest model that can reach it: "
      f"N_min = {inf.smallest_model(chin, target):.3g}")
table[["inference_tokens", "N", "D", "tokens_per_param", "train_flops", "inference_flops",
       "total_flops", "saving"]].style.format(
    {"inference_tokens": "{:.0e}", "N": "{:.3g}", "D": "{:.3g}", "tokens_per_param": "{:.0f}",
     "train_flops": "{:.2e}", "inference_flops": "{:.2e}", "total_flops": "{:.2e}",
     "saving": "{:.1%}"})  # fmt: skip

# %% [markdown]
# `saving` compares with the Chinchilla-optimal model of the same loss serving the same demand
# (the first row: this approach-3 law reaches Chinchilla's loss with a smaller model on more
# tokens than Chinchilla used, the ~90 tokens per parameter of lecture 08). Read the table
# down: the optimal model shrinks and the tokens per parameter climb into the thousands as
# the demand grows. The saving is under 1% up to about 10¹² inference tokens (Chinchilla
# trained on 1.4·10¹²) and large once the demand is several times the training tokens — and
# the training run itself then costs *more* FLOPs than the Chinchilla-optimal one: it is the
# sum that falls.

# %%
demands = np.geomspace(1e9, 1e16, 60)
fig = make_subplots(rows=1, cols=2, subplot_titles=("optimal N / the law's compute-optimal N",
                                                    "tokens per parameter"))  # fmt: skip
for name, law in sl.LOSS_LAWS.items():
    ell = float(law(70e9, 1.4e12))
    t = inf.inference_optimal(law, ell, demands)
    fig.add_scatter(x=demands, y=t.N / t.chinchilla_N, name=name, row=1, col=1)
    fig.add_scatter(x=demands, y=t.tokens_per_param, name=name, showlegend=False, row=1, col=2)
fig.update_xaxes(type="log", title="inference tokens D_inf")
fig.update_yaxes(type="log")
fig.update_layout(title="Inference-aware optimum at Chinchilla's quality, two published laws",
                  template="plotly_white", height=380)  # fmt: skip
fig.show()

# %% [markdown]
# ### The same question on our own runs
#
# Lecture 08's grid trained 10 widths at 8 token budgets on the Markov language. Two
# answers: the law fitted to those runs, and — no law at all — the cheapest *measured* run
# whose loss is at or below the target. The grid is coarse (factors of 2 in D, about 1.6 in
# N), so the measured answer moves in jumps.

# %%
grid, _ = read_table(ROOT / "results" / "scaling_laws.csv")
best = grid.loc[grid.groupby(["model.width", "horizon"]).val_loss.idxmin()]
starts = co.start_grid()[:: osc.config.choose(fast=9, full=1)]
fit = co.fit_parametric(best.params, best.tokens, best.val_loss, starts=starts)
ours = fit["law"]
print({k: round(fit[k], 3) for k in co.PARAMETERS})

ell = 2.0
runs_demand = [0.0, 1e6, 1e7, 1e8, 1e9]
measured = inf.cheapest_runs(best, ell, runs_demand)
predicted = inf.inference_optimal(ours, ell, runs_demand)
side = pd.DataFrame({
    "inference tokens": runs_demand,
    "measured N": measured.params.to_numpy(), "measured D": measured.tokens.to_numpy(),
    "measured loss": measured.val_loss.round(3).to_numpy(),
    "fitted law N*": predicted.N.round(-2).to_numpy(), "fitted law D*": predicted.D.round(-3),
    "measured D/N": (measured.tokens / measured.params).round(1).to_numpy(),
    "fitted law D*/N*": predicted.tokens_per_param.round(1),
})  # fmt: skip
side

# %% [markdown]
# Both answers move the same way: the more the model will serve, the smaller the model that
# should be trained and the longer it should train. How closely the fitted law's N* matches
# the measured runs is limited by the grid and by the law's misfit on short budgets
# (lecture 08, section 7) — read the columns side by side, not as a test of the law. Once the
# measured answer reaches the grid's longest budget (2²¹ ≈ 2.1M tokens) it cannot move
# further, however large the demand: the grid has no longer runs, and the fitted law's D*
# beyond that budget is an extrapolation.
#
# Play with it: the demand, the target quality, and w, the price of an inference FLOP
# relative to a training FLOP (serving often runs at lower hardware utilization than
# training, so w > 1 is common).

# %%
def explore_inference(log10_demand: float = 12.0, excess: float = 0.25, w: float = 1.0) -> None:
    ell, d_inf = chin.E + excess, 10**log10_demand
    t = inf.inference_optimal(chin, ell, d_inf, inference_cost=w).iloc[0]
    N = inf.smallest_model(chin, ell) * np.geomspace(1.02, 300, 200)
    train = 6 * N * inf.tokens_for_loss(chin, N, ell)
    serve = w * 2 * N * d_inf
    fig = go.Figure()
    fig.add_scatter(x=N, y=train, name="training 6·N·D_ℓ(N)")
    fig.add_scatter(x=N, y=serve, name="inference 2w·N·D_inf")
    fig.add_scatter(x=N, y=train + serve, name="total", line={"width": 3})
    fig.add_vline(x=t.N, line_dash="dash", annotation_text=f"N* = {t.N:.3g}")
    fig.add_vline(x=t.chinchilla_N, line_dash="dot",
                  annotation_text=f"Chinchilla {t.chinchilla_N:.3g}", annotation_position="bottom")
    fig.update_layout(title=f"ℓ = {ell:.3f}: N* trains on {t.tokens_per_param:.0f} tokens per "
                      f"parameter; total {t.saving:.1%} below Chinchilla's",
                      xaxis={"type": "log", "title": "parameters N"},
                      yaxis={"type": "log", "title": "FLOPs"}, template="plotly_white",
                      height=380)  # fmt: skip
    fig.show()


interact(explore_inference, log10_demand=FloatSlider(value=12, min=9, max=16, step=0.5),
         excess=FloatSlider(value=0.25, min=0.05, max=1.0, step=0.05),
         w=FloatSlider(value=1.0, min=0.5, max=4.0, step=0.5));  # fmt: skip

# %% [markdown]
# ## 2. Smooth losses, sharp metrics
#
# "Emergent abilities" are scores that stay near zero as models grow and then jump. Schaeffer
# et al. (2023) argue that many of these jumps come from the **metric**: exact match on a
# k-token answer scores a problem 1 only if all k tokens are right. If each token were right
# with probability p, independently, exact match would be p^k: a smooth rise of p from 0.5 to
# 0.9 moves exact match on a 5-token answer from 0.03 to 0.59.
#
# We test it on the task GPT-3's arithmetic results made famous: addition, written as a
# language. `AdditionTask(4)` writes 4-digit problems least significant digit first (the
# order in which carries travel), "a₀a₁a₂a₃+b₀b₁b₂b₃=s₀s₁s₂s₃s₄", and the loss counts only
# the five answer tokens (the runs below use 3 digits, four answer tokens, in fast mode):

# %%
task = osc.data.AdditionTask(4)
prompt, answer = task.problems(2, torch.Generator().manual_seed(0))
for p, a in zip(prompt, answer, strict=True):
    k = task.digits
    print("tokens", p.tolist(), "→", a.tolist(), f"  i.e. {task.value(p[:k])} + "
          f"{task.value(p[k + 1:2 * k + 1])} = {task.value(a)}")

# %% [markdown]
# A family of small GPTs (2 layers, AdamW, constant learning rate, fresh problems at every
# step), each scored every few steps on the same 1,000 problems three ways: **token loss**
# (cross-entropy of the answer tokens), **token accuracy** p (argmax right, given the right
# prefix), **exact match** (all answer tokens right — with the right prefix given, this equals
# greedy decoding's exact match). Beside them, Π_j p_j, the product of the accuracies at the
# k answer positions: what exact match would be if the positions erred independently. The
# compute axis is 6·N·(answer tokens seen): the model also reads the prompt, about 2.8× as
# many tokens in all as the answer, the same factor for every width.

# %%
RUN = osc.config.choose(
    fast=dict(widths=(16, 32, 64), digits=3, steps=600, every=50),
    full=dict(widths=(16, 24, 32, 48, 64), digits=4, steps=1600, every=50),
)
runs = em.addition_runs(**RUN, device=DEVICE)
task, history = runs.task, runs.table
k = task.answer_len
print(f"{len(runs.models)} models, {RUN['steps']} steps each, {task.digits}-digit addition "
      f"({k} answer tokens)")
history.groupby("width").tail(1).round(3)

# %%
panels = [("token_loss", "token loss (nats)"), ("token_accuracy", "token accuracy p"),
          ("exact_match", "exact match")]  # fmt: skip
fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in panels])
colors = dict(zip(runs.models, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                "#8c564b"], strict=False))  # fmt: skip
for m in range(1, k):  # m answer digits at chance (ln 10 each), the others right
    fig.add_hline(y=m * np.log(10) / k, line_dash="dot", line_color="gray", row=1, col=1)
for j, (col, _) in enumerate(panels, start=1):
    for width, g in history.groupby("width"):
        fig.add_scatter(x=g.flops, y=g[col], name=f"width {width}", legendgroup=str(width),
                        showlegend=j == 1, line={"color": colors[width]}, row=1, col=j)  # fmt: skip
        if col == "exact_match":
            fig.add_scatter(x=g.flops, y=g.independent_exact_match, name="Π p_j", showlegend=False,
                            line={"color": colors[width], "dash": "dot"}, row=1, col=j)  # fmt: skip
fig.update_xaxes(type="log", title="training FLOPs, 6·N·(answer tokens)")
fig.update_layout(title=f"{len(runs.models)} widths, three scores ({task.digits}-digit addition;"
                  " dotted: Π_j p_j, and levels m·ln 10/k)", template="plotly_white",
                  height=400)  # fmt: skip
fig.show()

# %% [markdown]
# How sharp is each score? For every width whose exact match gets past 0.1: the token accuracy
# at the first evaluation where it does, and how many e-folds of compute each score takes to
# cover 10% → 90% of the way from its first value to its best one (smaller is sharper). The
# evaluations are 50 steps apart, which at step s is ln(1 + 50/s) e-folds — 0.18 at step 250,
# 0.1 at step 500 — so differences smaller than that are not resolved: a width counts as
# sharper only when its gap beats the spacing where exact match crosses 0.1. A width whose
# exact match is still rising at the end has "its best" only where training stopped.

# %%
rows = []
for width, g in history.groupby("width"):
    first = g[g.exact_match >= 0.1]
    if first.empty:
        continue
    rows.append({"width": width, "params": g.params.iloc[0],
                 "token accuracy when exact match first ≥ 0.1": first.token_accuracy.iloc[0],
                 **{f"e-folds, {m}": em.sharpness(g, m) for m in
                    ("token_loss", "token_accuracy", "exact_match")},
                 "spacing there (e-folds)": np.log1p(RUN["every"] / first.step.iloc[0]),
                 "exact match still rising": g.exact_match.iloc[-1] - g.exact_match.iloc[-4]
                 > 0.02})  # fmt: skip
sharp = pd.DataFrame(rows).round(2)
gap = sharp["e-folds, token_accuracy"] - sharp["e-folds, exact_match"]
sharper = int((gap > sharp["spacing there (e-folds)"]).sum())
print(f"exact match rose over fewer e-folds than token accuracy, by more than the evaluation "
      f"spacing, for {sharper} of {len(sharp)} widths; still rising at the end: "
      f"{int(sharp['exact match still rising'].sum())}")
sharp

# %%
before = history[history.exact_match < 0.02]
print(f"while exact match was still below 0.02, token accuracy ranged "
      f"{before.token_accuracy.min():.2f}–{before.token_accuracy.max():.2f} "
      f"(a model that knows only each position's digit frequencies: {runs.baseline:.2f})")
late = history[(history.token_accuracy > 0.5) & (history.independent_exact_match < 0.99)]
ratio = late.exact_match / late.independent_exact_match
print(f"where 0.5 < token accuracy and Π p_j < 0.99: exact match / Π_j p_j ranges "
      f"{ratio.min():.2f}–{ratio.max():.2f} (median {ratio.median():.2f}, {len(late)} points)")
seen = late.exact_match >= 0.02  # at least 20 of the 1,000 problems right: a ratio, not noise
print(f"  of those, where exact match ≥ 0.02: {ratio[seen].min():.2f}–{ratio[seen].max():.2f} "
      f"({int(seen.sum())} points)")
levels = np.arange(1, k) * np.log(10) / k
near = np.abs(history.token_loss.to_numpy()[:, None] - levels).min(axis=1) < 0.05
print(f"{near.mean():.0%} of the evaluations have a token loss within 0.05 nats of a level "
      f"m·ln 10/{k} (evenly spread values would: {min(1.0, 0.1 / (np.log(10) / k)):.0%})")

# %% [markdown]
# What the runs show, and what they do not:
#
# * **The metric is sharper than the token accuracy.** Exact match stays near zero while the
#   token accuracy climbs well past what digit frequencies alone give (the first printed
#   line), and passes 0.1 only once most answer tokens are right (the table). The same
#   predictions, scored two ways; by how much, and for how many widths beyond the
#   evaluations' resolution, is printed above the table.
# * **Exact match is what the per-position accuracies imply.** Where exact match can be
#   measured at all (at least 20 of the 1,000 problems right), its ratio to Π_j p_j is the
#   second range printed: near 1 means the jump is the product of per-token accuracies,
#   Schaeffer et al.'s explanation. Below 1 would mean the wrong digits are spread over more
#   problems than independent positions give; above 1, that they pile up on a few hard
#   problems. The wider first range comes from points with only a handful of right problems.
# * **The loss is not smooth here either.** The token loss falls in steps: it lingers near
#   the levels m·ln 10/k (dotted in the left panel), where m answer digits are still at
#   chance and the rest are right, so the positions are learnt in stages (the last printed
#   line: how often the loss sits near such a level, against evenly spread values). Those are
#   real transitions, not metric artefacts, like those reported for small algorithmic tasks;
#   exact match sharpens them further. Schaeffer et al.'s point survives as a rule: before
#   calling a jump emergent, plot a smooth score of the same predictions beside it.
#
# Play with it: the answer length k and the token accuracy p of the independent model.

# %%
def explore_metric(k: int = 5, p_lo: float = 0.3) -> None:
    p = np.linspace(p_lo, 1.0, 200)
    fig = go.Figure()
    fig.add_scatter(x=p, y=p, name="token accuracy p")
    fig.add_scatter(x=p, y=em.exact_match_from_accuracy(p, k), name=f"exact match p^{k}")
    fig.update_layout(xaxis={"title": "token accuracy p"}, yaxis={"title": "score"},
                      template="plotly_white", height=320)  # fmt: skip
    fig.show()


interact(explore_metric, k=IntSlider(value=5, min=1, max=50),
         p_lo=FloatSlider(value=0.3, min=0.0, max=0.95, step=0.05));  # fmt: skip

# %% [markdown]
# ## 3. Test-time compute: many samples, one answer
#
# A model that gets a problem right 10% of the time (pass@1 = 0.1) gets it right at least
# once in k samples far more often. If the n samples drawn per problem contain c right ones,
# the chance that k of them, drawn without replacement, contain one is
#
# $$\text{pass@}k = 1 - \binom{n-c}{k}\Big/\binom{n}{k}$$
#
# (Chen et al., 2021): an unbiased estimate of the model's 1 − (1 − p)^k, p its chance per
# sample. The plug-in 1 − (1 − c/n)^k is biased low for every k ≥ 2, most where k is around
# 2/p (for n = 64: k = 22 at p = 0.1, 10 at p = 0.2, 4 at p = 0.5; near k = n only when right
# samples are rare), as the exact expectation over c ~ Binomial(n, p) shows:

# %%
def plug_in_bias(n: int, p: float) -> np.ndarray:
    """(1 − (1 − p)^k) − E[1 − (1 − c/n)^k] over c ~ Binomial(n, p), for k = 1 … n."""
    c, k = np.arange(n + 1)[:, None], np.arange(1, n + 1)[None, :]
    expected = (binom.pmf(c[:, 0], n, p)[:, None] * (1 - (1 - c / n) ** k)).sum(0)
    return (1 - (1 - p) ** k[0]) - expected


for p in (0.1, 0.2, 0.5):
    bias = plug_in_bias(64, p)
    print(f"n = 64, p = {p}: largest bias {bias.max():.3f} at k = {1 + int(bias.argmax())} "
          f"(2/p = {2 / p:g}); smallest over k ≥ 2: {bias[1:].min():.2g}")

# %% [markdown]
# Pass@k as a way to spend compute needs a **verifier** to pick the right sample (unit tests
# for code, a checker for math). Without one, a **majority vote** submits the most common
# answer: that converges to "is the model's most likely answer right" and stops improving
# there.
#
# Each width's final model, 64 samples per problem at temperature 1 on fresh problems (200;
# 100 in fast mode):

# %%
SAMPLES, PROBLEMS = 64, osc.config.choose(fast=100, full=200)
prompts, answers = task.problems(PROBLEMS, torch.Generator().manual_seed(1))
ks = [1, 2, 4, 8, 16, 32, 64]
curves = []
for width, model in runs.models.items():
    samples = tt.sample_answers(model, prompts, k, SAMPLES, temperature=1.0)
    t = tt.scaling_table(task.decode(samples).numpy(), task.value(answers).numpy(), ks)
    t["width"], t["params"] = width, model.num_params()
    t["inference_flops"] = 2.0 * t.params * k * t.k  # per problem: 2N per answer token
    curves.append(t)
curves = pd.concat(curves, ignore_index=True)
curves.pivot(index="k", columns="width", values=["pass_at_k", "majority_at_k"]).round(3)

# %%
fig = make_subplots(rows=1, cols=2, subplot_titles=("against samples k",
                                                    "against inference FLOPs per problem"))
for width, g in curves.groupby("width"):
    c = colors[width]
    for col, x in ((1, g.k), (2, g.inference_flops)):
        fig.add_scatter(x=x, y=g.pass_at_k, name=f"width {width}: pass@k", legendgroup=str(width),
                        showlegend=col == 1, line={"color": c}, row=1, col=col)  # fmt: skip
        fig.add_scatter(x=x, y=g.majority_at_k, name=f"width {width}: majority@k",
                        legendgroup=str(width), showlegend=col == 1,
                        line={"color": c, "dash": "dash"}, row=1, col=col)  # fmt: skip
fig.update_xaxes(type="log")
fig.update_xaxes(title="samples k", row=1, col=1)
fig.update_xaxes(title="FLOPs per problem (2·N·tokens·k)", row=1, col=2)
fig.update_yaxes(title="fraction of problems solved", row=1, col=1)
fig.update_layout(title="Coverage (pass@k, solid) and majority vote (dashed)",
                  template="plotly_white", height=420)  # fmt: skip
fig.show()

# %%
mid = curves[(curves.k == 1) & curves.pass_at_k.between(0.02, 0.9)]
for width in mid.width:
    g = curves[curves.width == width].set_index("k")
    print(f"width {width}: pass@1 {g.pass_at_k[1]:.3f} → pass@64 {g.pass_at_k[64]:.3f}; "
          f"majority@1 {g.majority_at_k[1]:.3f} → majority@64 {g.majority_at_k[64]:.3f}")
if mid.empty:
    print("no model has a pass@1 between 0.02 and 0.9 in this run: every curve is flat")

# %% [markdown]
# At equal inference compute: for each model, the fewest samples among k = 1, 2, 4, …, 64
# whose pass@k reaches the pass@1 of the next larger model, and what those samples cost
# against one answer from it (the powers of two can overstate the cost by up to 2×). A
# pass@1 below 0.02 is a few problems out of the sample, too few to compare.

# %%
sizes = sorted(runs.models)
cheaper = compared = 0
for small, large in zip(sizes[:-1], sizes[1:], strict=True):
    g = curves[curves.width == small]
    goal = curves[(curves.width == large) & (curves.k == 1)].iloc[0]
    if g.pass_at_k.iloc[0] > 0.99 and goal.pass_at_k > 0.99:
        print(f"width {small} and width {large}: both already right (pass@1 > 0.99)")
        continue
    if goal.pass_at_k < 0.02:
        print(f"width {large}'s pass@1 = {goal.pass_at_k:.3f}: too few right to compare")
        continue
    reach = g[g.pass_at_k >= goal.pass_at_k]
    if reach.empty:
        print(f"width {small}: pass@{ks[-1]} = {g.pass_at_k.iloc[-1]:.3f} stays below width "
              f"{large}'s pass@1 = {goal.pass_at_k:.3f}")
        continue
    r = reach.iloc[0]
    ratio = r.inference_flops / goal.inference_flops
    compared, cheaper = compared + 1, cheaper + (ratio < 1)
    print(f"width {small}: pass@{int(r.k)} = {r.pass_at_k:.3f} ≥ width {large}'s pass@1 = "
          f"{goal.pass_at_k:.3f}, at {ratio:.1f}× its inference FLOPs")
print(f"sampling from the smaller model was cheaper in {cheaper} of {compared} comparisons")

# %% [markdown]
# Where a model's pass@1 is neither 0 nor 1, coverage keeps climbing with k while the majority vote
# rises much less (the two start together at k = 1, where both estimate pass@1; a vote can only
# help where the right answer is the model's most common one, and in principle it falls when a
# wrong answer is): sampling finds right answers the model does not rank first, and only a
# verifier can use them. The comparison at equal compute is what the right panel
# shows: a ratio below 1 in the printout above would mean that sampling from the smaller model (with
# a verifier) was the cheaper way to that accuracy — ignoring what the larger model cost to train.
# On this task, where a model a little larger is simply right (pass@1 ≈ 1), read the ratios before
# concluding either way: the published test-time scaling results (repeated sampling on code and
# math) are on tasks where no affordable model is right every time.
#
# ## Summary
#
# * Counting inference, the optimal model for a given quality is **smaller and trained
#   longer** than Chinchilla's: min 6N·D_ℓ(N) + 2N·D_inf; on Chinchilla's law the saving is
#   small until D_inf approaches the training tokens and large beyond.
# * A **discontinuous metric** (exact match) turns a gradual change in token accuracy into a
#   late, sharp jump; before calling an ability emergent, plot a smooth metric of the same
#   predictions — on addition the loss itself also falls in steps.
# * **Test-time compute**: pass@k (unbiased estimator 1 − C(n−c, k)/C(n, k)) rises steadily
#   with samples; a majority vote rises far less, bounded by how often the model's most likely
#   answer is right. Sampling trades
#   against model size only when a verifier picks the right sample.
#
# Exercises: `exercises/09_beyond_training.ipynb` — the tokens a model needs to reach a
# loss, the pass@k estimator, and a majority vote.
