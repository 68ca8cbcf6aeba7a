"""Smooth losses, sharp metrics: one model scored three ways (Schaeffer et al., 2023).

For a task whose answer has k tokens, the same predictions give

* the **token loss**: mean cross-entropy −log p(answer token) over answer tokens (smooth);
* the **token accuracy** p: the fraction of answer tokens the model's argmax gets right, each
  given the right tokens before it (teacher forcing);
* the **exact match**: the fraction of answers whose k tokens are all right. With teacher
  forcing this is exactly greedy decoding's exact match (a greedy answer is right if and only
  if every one of its tokens is the argmax given the right prefix).

If the k tokens were right independently, exact match would be Π_j p_j (p^k if every position
were equally hard): a smooth rise of p becomes a late, sharp rise of p^k, and a nonlinear or
discontinuous metric alone can make an ability look "emergent". :func:`addition_runs` trains a
family of GPTs on :class:`~optimal_scaling.data.AdditionTask` and records all of them along
training.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from optimal_scaling._validate import check_int
from optimal_scaling.data import IGNORE, AdditionTask
from optimal_scaling.models import GPT
from optimal_scaling.train import train


@torch.no_grad()
def answer_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Token loss, token accuracy and exact match of ``model`` on next-token pairs ``(x, y)``,
    and ``independent_exact_match`` = Π_j p_j over the scored positions j (p_j: the accuracy
    at position j), the exact match if positions erred independently.

    ``y`` holds ``IGNORE`` where a position is not scored (the prompt); every row must score at
    least one token. The model's train/eval mode is left as it was.
    """
    scored = _scored(x, y)
    was_training = model.training
    model.eval()
    try:
        logits = model(x).float()
    finally:
        model.train(was_training)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                           ignore_index=IGNORE)  # fmt: skip
    right = (logits.argmax(-1) == y) & scored
    per_position = right.sum(0)[scored.any(0)] / scored.sum(0)[scored.any(0)]
    return {
        "token_loss": loss.item(),
        "token_accuracy": (right.sum() / scored.sum()).item(),
        "exact_match": (right | ~scored).all(dim=1).float().mean().item(),
        "independent_exact_match": per_position.prod().item(),
    }


def frequency_baseline(y: torch.Tensor) -> float:
    """Token accuracy of a predictor that knows only each position's token frequencies: it
    always answers a position's most common target. The floor a model sits at before it has
    learnt anything about the prompt."""
    scored = _scored(y, y)
    hits = 0
    for j in range(y.shape[1]):
        col = y[scored[:, j], j]
        if len(col):
            hits += torch.bincount(col).max().item()
    return hits / scored.sum().item()


def _scored(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"x and y must be (batch, time) of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")  # fmt: skip
    scored = y != IGNORE
    if not scored.any(dim=1).all():
        raise ValueError("some rows score no token (all targets IGNORE)")
    return scored


def exact_match_from_accuracy(token_accuracy, k: int):
    """p^k: the exact match of a k-token answer whose tokens are each right with probability p,
    independently."""
    k = check_int("exact_match_from_accuracy", "k", k, low=1)
    p = np.asarray(token_accuracy, dtype=float)
    if not ((p >= 0) & (p <= 1)).all():  # NaN fails too
        raise ValueError("exact_match_from_accuracy: token_accuracy must be a probability in "
                         f"[0, 1], got {token_accuracy!r}")  # fmt: skip
    return p**k


@dataclass
class AdditionRuns:
    """What :func:`addition_runs` measured: a ``table`` (one row per width and evaluation step:
    ``width, params, step, tokens, flops`` and the scores of :func:`answer_metrics`) and the
    trained ``models`` by width; ``snapshots[(width, step)]`` holds each evaluated state;
    ``baseline`` is the :func:`frequency_baseline` of the evaluation problems."""

    task: AdditionTask
    table: pd.DataFrame
    models: dict[int, GPT]
    snapshots: dict[tuple[int, int], dict[str, torch.Tensor]] = field(repr=False)
    baseline: float = float("nan")

    def model_at(self, width: int, step: int) -> GPT:
        """A copy of the width-``width`` model as it was at evaluation step ``step``."""
        if (width, step) not in self.snapshots:
            raise KeyError(f"no snapshot at width {width}, step {step}; evaluated steps are "
                           f"{sorted({s for w, s in self.snapshots if w == width})}")  # fmt: skip
        model = copy.deepcopy(self.models[width])
        model.load_state_dict(self.snapshots[(width, step)])
        return model


def addition_runs(widths=(16, 32, 64), digits: int = 4, steps: int = 1600, batch_size: int = 64,
                  lr: float = 3e-3, every: int = 100, depth: int = 2, eval_problems: int = 1000,
                  seed: int = 0, device: torch.device | str = "cpu") -> AdditionRuns:  # fmt: skip
    """Train one GPT per width on ``digits``-digit addition (AdamW, constant ``lr``, fresh
    problems every step, loss on answer tokens only) and score a fixed set of
    ``eval_problems`` problems every ``every`` steps with :func:`answer_metrics`.

    ``flops`` is 6·N·(answer tokens seen): the compute spent on scored tokens, the axis
    scaling plots use. Heads: 4, or 2 when the width is under 16. Seeds fix the data and the
    init of every width.
    """
    if not widths or any(int(w) < 2 for w in widths):
        raise ValueError(f"addition_runs: widths must be ≥ 2, got {widths}")
    if steps < 1 or every < 1 or every > steps:
        raise ValueError(f"addition_runs: need 1 ≤ every ≤ steps, got every={every}, "
                         f"steps={steps}")  # fmt: skip
    task = AdditionTask(digits)
    x_val, y_val = task.batch(eval_problems, torch.Generator().manual_seed(seed + 10_000), device)
    rows, models, snapshots = [], {}, {}
    for width in widths:
        width = int(width)
        torch.manual_seed(seed)
        model = GPT(vocab_size=task.vocab_size, context=task.context, width=width, depth=depth,
                    n_heads=4 if width >= 16 else 2).to(device)  # fmt: skip
        params = model.num_params()
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)

        def measure(step: int, m: torch.nn.Module, width=width, params=params) -> dict:
            if step % every and step != steps:
                return {}
            tokens = step * batch_size * task.answer_len
            snapshots[(width, step)] = {k: v.detach().clone() for k, v in m.state_dict().items()}
            rows.append({"width": width, "params": params, "step": step, "tokens": tokens,
                         "flops": 6.0 * params * tokens, **answer_metrics(m, x_val, y_val)})
            return {}

        def batches(gen=gen) -> tuple[torch.Tensor, torch.Tensor]:
            return task.batch(batch_size, gen, device)

        result = train(model, opt, batches, steps, callback=measure, progress=False)
        if result.diverged:
            raise RuntimeError(f"addition_runs: width {width} diverged ({result.reason}); "
                               "lower lr")  # fmt: skip
        models[width] = model
    return AdditionRuns(task, pd.DataFrame(rows), models, snapshots, frequency_baseline(y_val))


def sharpness(table: pd.DataFrame, metric: str, lo: float = 0.1, hi: float = 0.9,
              by: str = "flops") -> float:
    """How many e-folds of ``by`` a metric takes to cover the ``lo`` … ``hi`` fractions of the
    way from its first value to its best one (the maximum if it ends above where it started,
    else the minimum); first crossings, rows in order of ``by``. Small is sharp; NaN if the
    metric never moves."""
    if not 0 < lo < hi <= 1:
        raise ValueError(f"sharpness: need 0 < lo < hi ≤ 1, got lo={lo}, hi={hi}")
    missing = [c for c in (metric, by) if c not in table]
    if missing:
        raise ValueError(f"sharpness: missing columns {missing}")
    g = table.sort_values(by)
    g = g[np.isfinite(g[metric].to_numpy(float)) & (g[by].to_numpy(float) > 0)]
    if len(g) < 2:
        raise ValueError(f"sharpness: need at least 2 rows with a finite {metric!r} and a "
                         f"positive {by!r}, got {len(g)}")  # fmt: skip
    values, x = g[metric].to_numpy(float), g[by].to_numpy(float)
    start = values[0]
    best = values.max() if values[-1] >= start else values.min()
    if best == start:
        return math.nan
    frac = (values - start) / (best - start)
    i_lo, i_hi = int((frac >= lo).argmax()), int((frac >= hi).argmax())
    return float(math.log(x[i_hi] / x[i_lo]))
