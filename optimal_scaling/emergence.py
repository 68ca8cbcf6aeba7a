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
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from optimal_scaling._validate import check_int
from optimal_scaling.data import IGNORE, AdditionTask
from optimal_scaling.fitting import require_columns
from optimal_scaling.models import GPT
from optimal_scaling.train import train


@torch.no_grad()
def answer_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Token loss, token accuracy and exact match of ``model`` on next-token pairs ``(x, y)``,
    and ``independent_exact_match`` = Π_j p_j over the scored positions j (p_j: the accuracy
    at position j), the exact match if positions erred independently.

    ``y`` holds token ids in [0, vocabulary), or ``IGNORE`` where a position is not scored (the
    prompt); every row must score at least one token. The model's train/eval mode is left as
    it was.
    """
    scored = _scored("answer_metrics", y, x)
    was_training = model.training
    model.eval()
    try:
        logits = model(x).float()
    finally:
        model.train(was_training)
    vocab = logits.shape[-1]
    if (y[scored] >= vocab).any():
        raise ValueError(f"answer_metrics: targets must be token ids < {vocab} (the model's "
                         f"vocabulary), got {y[scored].max().item()}")  # fmt: skip
    loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1).long(), ignore_index=IGNORE)
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
    learnt anything about the prompt. ``y``: (batch, time) token ids, ``IGNORE`` where not
    scored."""
    scored = _scored("frequency_baseline", y)
    hits = 0
    for j in range(y.shape[1]):
        col = y[scored[:, j], j]
        if len(col):
            hits += torch.bincount(col).max().item()
    return hits / scored.sum().item()


def _scored(who: str, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
    """Where ``y`` scores a token, after checking that ``y`` (and ``x``, if given) are
    (batch, time) integer tensors of one shape and every row scores a token ≥ 0."""
    for name, t in (("x", x), ("y", y)):
        if t is not None and not isinstance(t, torch.Tensor):
            raise TypeError(f"{who}: {name} must be a tensor, got {type(t).__name__}")
    if x is None and y.ndim != 2:
        raise ValueError(f"{who}: y must be (batch, time), got {tuple(y.shape)}")
    if x is not None and (x.shape != y.shape or x.ndim != 2):
        raise ValueError(f"{who}: x and y must be (batch, time) of the same shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")  # fmt: skip
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"{who}: y must hold integer token ids, got {y.dtype}")
    scored = y != IGNORE
    if not scored.any(dim=1).all():
        raise ValueError(f"{who}: some rows score no token (all targets IGNORE)")
    if (y[scored] < 0).any():
        raise ValueError(f"{who}: targets must be token ids ≥ 0 or IGNORE ({IGNORE}), got "
                         f"{y[scored].min().item()}")  # fmt: skip
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
    if isinstance(widths, str | bytes) or not isinstance(widths, Iterable):
        raise TypeError(f"addition_runs: widths must be a list of ints, got {widths!r}")
    widths = [check_int("addition_runs", "each width", w, low=2) for w in widths]
    if not widths:
        raise ValueError("addition_runs: widths is empty; give at least one width")
    steps = check_int("addition_runs", "steps", steps, low=1)
    every = check_int("addition_runs", "every", every, low=1)
    if every > steps:
        raise ValueError(f"addition_runs: need 1 ≤ every ≤ steps, got every={every}, "
                         f"steps={steps}")  # fmt: skip
    task = AdditionTask(digits)
    x_val, y_val = task.batch(eval_problems, torch.Generator().manual_seed(seed + 10_000), device)
    rows, models, snapshots = [], {}, {}
    for width in widths:
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
    the minimum if below, and the extreme farther from the start if it ends where it started);
    first crossings, rows in numeric order of ``by`` (numbers stored as text
    count). Small is sharp; NaN if the metric never moves."""
    if not 0 < lo < hi <= 1:
        raise ValueError(f"sharpness: need 0 < lo < hi ≤ 1, got lo={lo}, hi={hi}")
    require_columns(table, [metric, by], "sharpness")
    try:  # sort numerically: as text, "10" would come before "9"
        g = table.sort_values(by, key=lambda col: pd.to_numeric(col))
        values, x = g[metric].to_numpy(float), g[by].to_numpy(float)
    except (TypeError, ValueError):
        raise TypeError(f"sharpness: columns {metric!r} and {by!r} must hold numbers") from None
    keep = np.isfinite(values) & (x > 0)
    values, x = values[keep], x[keep]
    if len(values) < 2:
        raise ValueError(f"sharpness: need at least 2 rows with a finite {metric!r} and a "
                         f"positive {by!r}, got {len(values)}")  # fmt: skip
    start = values[0]
    up, down = values.max() - start, start - values.min()
    rises = values[-1] > start or (values[-1] == start and up >= down)
    best = values.max() if rises else values.min()
    if best == start:
        return math.nan
    frac = (values - start) / (best - start)
    i_lo, i_hi = int((frac >= lo).argmax()), int((frac >= hi).argmax())
    return float(math.log(x[i_hi] / x[i_lo]))
