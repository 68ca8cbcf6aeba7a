"""Self-checks for lecture 09 (beyond training)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from optimal_scaling.course.checks import CheckResult, check
from optimal_scaling.data import IGNORE
from optimal_scaling.inference_scaling import tokens_for_loss
from optimal_scaling.scaling_laws import LossLaw
from optimal_scaling.test_time import pass_at_k


def _tokens(E, A, B, alpha, beta, N, loss):
    return tokens_for_loss(LossLaw("x", E, A, B, alpha, beta, "check"), N, loss)


def check_tokens_for_loss(fn: Callable) -> CheckResult:
    """``fn(E, A, B, alpha, beta, N, loss)`` → D with L(N, D) = loss (array N; inf where no D
    is enough)."""
    chin = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    cases = [dict(chin, N=np.array([1e9, 7e10, 1e12]), loss=1.95),
             dict(chin, N=np.array([1e8, 3e9, 1e11]), loss=2.1),
             {"E": 1.7, "A": 30.0, "B": 900.0, "alpha": 0.5, "beta": 0.3,
              "N": np.array([100.0, 1e4, 1e6]), "loss": 2.5}]  # fmt: skip
    return check(
        "tokens needed to reach a loss", fn, _tokens, cases,
        hint="solve E + A/N^α + B/D^β = loss for D: D = (B/(loss − E − A/N^α))^{1/β}; where "
        "loss − E − A/N^α ≤ 0 no D is enough: return inf there (np.where)",
        mistakes={
            "subtract the model term A/N^α too: only B/D^β is left for the data": lambda E, A,
                B, alpha, beta, N, loss: (B / (loss - E)) ** (1 / beta) + 0 * N,
            "the exponent is 1/β (D^β = B/(…), so D = (B/(…))^{1/β})": lambda E, A, B, alpha,
                beta, N, loss: np.where(loss - E - A / N**alpha > 0, (B / np.abs(
                    loss - E - A / N**alpha)) ** beta, np.inf),
        },
        rtol=1e-8,
    )  # fmt: skip


def _pass(n, c, k):
    return float(pass_at_k(np.array([n]), np.array([c]), k)[0])


def check_pass_at_k(fn: Callable) -> CheckResult:
    """``fn(n, c, k)`` → the unbiased pass@k from n samples, c of them right."""
    cases = [{"n": 10, "c": 3, "k": 1}, {"n": 10, "c": 3, "k": 5}, {"n": 64, "c": 2, "k": 16},
             {"n": 200, "c": 7, "k": 100}, {"n": 10, "c": 0, "k": 4},
             {"n": 10, "c": 8, "k": 3}]  # fmt: skip
    return check(
        "unbiased pass@k", fn, _pass, cases,
        hint="pass@k = 1 − C(n−c, k)/C(n, k): one minus the chance that k samples drawn without "
        "replacement are all wrong; it is 1 when n − c < k. The product "
        "Π_{i=n−c+1}^{n} (1 − k/i) avoids huge binomials",
        mistakes={
            "1 − (1 − c/n)^k draws with replacement: biased when k is close to n": lambda n, c,
                k: 1 - (1 - c / n) ** k,
            "k samples are not k times as likely to contain a right one: c/n·k can exceed 1":
                lambda n, c, k: c / n * k,
        },
        rtol=1e-9, atol=1e-12,
    )  # fmt: skip


def _scores(pred, y):
    scored = y != IGNORE
    right = (pred == y) & scored
    return (right.sum() / scored.sum()).item(), (right | ~scored).all(dim=1).float().mean().item()


def _cases_scores():
    g = torch.Generator().manual_seed(0)
    cases = []
    for rows, cols, prompt, p in ((6, 5, 2, 0.7), (40, 9, 4, 0.9), (25, 4, 1, 0.5)):
        y = torch.randint(10, (rows, cols), generator=g)
        y[:, :prompt] = IGNORE
        pred = torch.where(torch.rand(rows, cols, generator=g) < p, y.clamp(min=0),
                           torch.randint(10, (rows, cols), generator=g))  # fmt: skip
        cases.append({"pred": pred, "y": y})
    # prompts of different lengths: a mean of per-row accuracies is not the token accuracy
    y = torch.randint(10, (5, 8), generator=g)
    for row, prompt in enumerate((1, 3, 5, 6, 7)):
        y[row, :prompt] = IGNORE
    pred = y.clamp(min=0).clone()
    pred[0, 1:4] = (pred[0, 1:4] + 1) % 10  # the longest answer is mostly wrong
    cases.append({"pred": pred, "y": y})
    return cases


def check_answer_scores(fn: Callable) -> CheckResult:
    """``fn(pred, y)`` → (token accuracy, exact match) over the positions where y ≠ IGNORE."""
    return check(
        "token accuracy and exact match", fn, _scores, _cases_scores(),
        hint="scored = y != IGNORE; token accuracy = right scored tokens / scored tokens; a row "
        "is an exact match when every scored token is right ((right | ~scored).all(dim=1))",
        mistakes={
            "count only the scored positions (y ≠ IGNORE), not the prompt": lambda pred, y: (
                (pred == y).float().mean().item(),
                ((pred == y) | (y == IGNORE)).all(dim=1).float().mean().item()),
            "an exact match needs all of a row's scored tokens right, not most of them":
                lambda pred, y: (_scores(pred, y)[0], (((pred == y) & (y != IGNORE)).sum(1)
                                                      > (y != IGNORE).sum(1) / 2)
                                 .float().mean().item()),
        },
        rtol=1e-6,
    )  # fmt: skip
