"""A short, readable training loop for any model, optimizer and data source.

    for step in 1..steps:
        x, y = data(split="train")          # a fresh batch
        loss = loss_fn(model(x), y)         # cross-entropy by default
        if loss is NaN/inf or > blowup × first loss: mark the run diverged, stop
        loss.backward(); optimizer.step(); scheduler step (optional)
        every eval_every steps: mean loss over eval_batches validation batches

The result is a tidy record, one row per step (``step, tokens, loss, lr, tokens_per_s``, and
``val_loss`` on evaluation steps), plus whether and why the run diverged. Divergence never
raises: a sweep over learning rates must survive its failed runs.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from tqdm.auto import tqdm

from optimal_scaling._validate import check_int
from optimal_scaling.config import fast_mode
from optimal_scaling.optim._checks import NonFiniteGradient

Batch = tuple[torch.Tensor, torch.Tensor]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) for logits (..., vocab) and targets (...)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return F.mse_loss(pred.float(), target.float())


@dataclass
class TrainResult:
    """What a run produced: the per-step record and how it ended."""

    history: pd.DataFrame
    diverged: bool = False
    reason: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        """Last training loss (inf if the run diverged)."""
        if self.diverged or self.history.empty:
            return math.inf
        return float(self.history["loss"].iloc[-1])

    @property
    def final_val_loss(self) -> float:
        """Last validation loss (inf if the run diverged, NaN if never evaluated)."""
        if self.diverged:
            return math.inf
        vals = self.history["val_loss"].dropna() if "val_loss" in self.history else []
        return float(vals.iloc[-1]) if len(vals) else math.nan


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return not fast_mode() and "PYTEST_CURRENT_TEST" not in os.environ


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[], Batch],
    steps: int,
    *,
    val_batches: list[Batch] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy,
    scheduler: LRScheduler | Sequence[LRScheduler] | None = None,
    eval_every: int = 0,
    blowup: float = 4.0,
    progress: bool | None = None,
    callback: Callable[[int, nn.Module], dict | None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``steps`` steps on ``batches()``; evaluate on ``val_batches``.

    ``batches()`` returns a fresh ``(x, y)`` training batch on the model's device; ``tokens``
    counts the elements of ``y``. The validation loss (the mean over the fixed list
    ``val_batches``) is recorded every ``eval_every`` steps and at the end (``0``: only at the
    end). A training loss that is not finite, or that exceeds ``blowup`` × the first step's
    loss, ends the run as diverged, and so does a non-finite validation loss (an update that
    broke the weights at the last step shows only there).
    ``callback(step, model)`` may return extra columns for that step's row.
    ``progress=None`` shows a tqdm bar except in fast mode and under pytest. ``scheduler`` may
    be a list (one per member of a :class:`~optimal_scaling.optim.CombinedOptimizer`, which no
    single scheduler can wrap); each steps after every optimizer step.
    """
    steps = check_int("train", "steps", steps, low=1)
    eval_every = check_int("train", "eval_every", eval_every, low=0, note="(0: only at the end)")
    if isinstance(blowup, bool) or not isinstance(blowup, numbers.Real) or not blowup > 1:
        raise ValueError(f"train: blowup must be a number > 1 (inf: never stop), got "
                         f"{blowup!r}")  # fmt: skip
    schedulers = list(scheduler) if isinstance(scheduler, Sequence) else [scheduler]
    schedulers = [s for s in schedulers if s is not None]
    for sched in schedulers:
        if not callable(getattr(sched, "step", None)):
            raise TypeError(f"train: scheduler must be an LR scheduler (or a list of them), got "
                            f"{type(sched).__name__}")  # fmt: skip
    rows: list[dict] = []
    tokens, first_loss = 0, None
    bar = tqdm(total=steps, disable=not _show_progress(progress), leave=False)
    model.train()
    start = time.perf_counter()
    for step in range(1, steps + 1):
        x, y = batches()
        loss = loss_fn(model(x), y)
        value = loss.item()
        if first_loss is None:
            first_loss = value
        if not math.isfinite(value) or value > blowup * max(first_loss, 1e-12):
            bar.close()
            why = (
                "non-finite loss"
                if not math.isfinite(value)
                else (f"loss {value:.3g} > {blowup:g} × first loss {first_loss:.3g}")
            )
            rows.append({"step": step, "tokens": tokens, "loss": value})
            return TrainResult(pd.DataFrame(rows), diverged=True, reason=f"step {step}: {why}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        try:
            optimizer.step()
        except NonFiniteGradient as err:  # a finite loss, a gradient that overflowed
            bar.close()
            rows.append({"step": step, "tokens": tokens, "loss": value})
            return TrainResult(pd.DataFrame(rows), diverged=True,
                               reason=f"step {step}: non-finite gradient ({err})")  # fmt: skip
        lr = optimizer.param_groups[0]["lr"]
        for sched in schedulers:
            sched.step()
        tokens += y.numel()
        elapsed = time.perf_counter() - start
        row = {
            "step": step,
            "tokens": tokens,
            "loss": value,
            "lr": lr,
            "tokens_per_s": tokens / max(elapsed, 1e-9),
        }
        if val_batches and ((eval_every and step % eval_every == 0) or step == steps):
            row["val_loss"] = evaluate(model, val_batches, loss_fn)
            model.train()
        if callback is not None:
            row.update(callback(step, model) or {})
        rows.append(row)
        if not math.isfinite(row.get("val_loss", 0.0)):  # the last update broke the weights
            bar.close()
            return TrainResult(pd.DataFrame(rows), diverged=True,
                               reason=f"step {step}: non-finite validation loss")  # fmt: skip
        bar.update()
        bar.set_postfix(loss=f"{value:.3f}")
    bar.close()
    return TrainResult(pd.DataFrame(rows))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: list[Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy,
) -> float:
    """Mean loss over a fixed list of batches (the model is left in eval mode)."""
    if not batches:
        raise ValueError("evaluate needs at least one batch")
    model.eval()
    return sum(loss_fn(model(x), y).item() for x, y in batches) / len(batches)
