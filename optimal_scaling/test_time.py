"""Test-time scaling: spend inference compute on more samples per problem.

Draw n answers per problem from the model, c of them right. Two ways to turn k ≤ n samples
into one score:

* **pass@k** (coverage, a perfect verifier picks a right answer if any is there): the
  unbiased estimator of Chen et al. (2021),

      pass@k = 1 − C(n − c, k) / C(n, k) = 1 − Π_{i = n−c+1}^{n} (1 − k/i),

  the chance that k of the n samples, drawn without replacement, include a right one;
* **majority@k** (no verifier): the most common of the k answers, ties broken at random,
  is submitted. It converges to "is the model's most likely answer right", so it plateaus
  where coverage keeps rising.

Each sample of a t-token answer costs about 2·N·t FLOPs, so k samples from a small model
and one from a larger model can be compared at equal inference compute.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from optimal_scaling._validate import check_int


def pass_at_k(n, c, k: int) -> np.ndarray:
    """Unbiased pass@k per problem from ``n`` samples of which ``c`` are right (arrays)."""
    n, c = np.asarray(n), np.asarray(c)
    if not (np.issubdtype(n.dtype, np.integer) and np.issubdtype(c.dtype, np.integer)):
        raise TypeError(f"pass_at_k: n and c must be integers, got {n.dtype} and {c.dtype}")
    try:
        n, c = np.broadcast_arrays(n, c)
    except ValueError:
        raise ValueError(f"pass_at_k: n and c have shapes {n.shape} and {c.shape}, which do "
                         "not broadcast") from None
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or (n < k).any():
        smallest = n.min() if n.size else "none"
        raise ValueError(f"pass_at_k: need 1 ≤ k ≤ n, got k={k!r}, min n={smallest}")
    if ((c < 0) | (c > n)).any():
        raise ValueError("pass_at_k: need 0 ≤ c ≤ n for every problem")
    out = np.ones(n.shape)
    for idx in np.ndindex(n.shape):
        ni, ci = int(n[idx]), int(c[idx])
        if ni - ci >= k:
            out[idx] = 1.0 - np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1))
    return out


def majority_at_k(answers, correct, k: int, draws: int = 256, seed: int = 0) -> np.ndarray:
    """Estimated majority@k per problem: the chance that the most common of k answers drawn
    without replacement from a problem's n ``answers`` (ties broken at random) equals
    ``correct``. ``answers`` is ``(problems, n)`` of integer codes, ``correct`` ``(problems,)``;
    the estimate averages ``draws`` random draws (a fixed int ``seed`` ≥ 0)."""
    answers, correct = np.asarray(answers), np.asarray(correct)
    if answers.ndim != 2 or correct.shape != answers.shape[:1]:
        raise ValueError(f"majority_at_k: answers must be (problems, n) and correct (problems,), "
                         f"got {answers.shape} and {correct.shape}")  # fmt: skip
    problems, n = answers.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"majority_at_k: need 1 ≤ k ≤ n = {n}, got {k!r}")
    draws = check_int("majority_at_k", "draws", draws, low=1)
    seed = check_int("majority_at_k", "seed", seed)
    # each row's answers as local labels 0…n−1, and the label of the right answer (−1: absent)
    labels = np.empty((problems, n), dtype=np.int64)
    right = np.full(problems, -1)
    for p in range(problems):
        values, labels[p] = np.unique(answers[p], return_inverse=True)
        hit = np.flatnonzero(values == correct[p])
        right[p] = hit[0] if len(hit) else -1
    rng = np.random.default_rng(seed)
    rows = np.arange(problems)
    wins = np.zeros(problems)
    for _ in range(draws):
        pick = np.argsort(rng.random((problems, n)), axis=1)[:, :k]
        chosen = np.take_along_axis(labels, pick, axis=1) + rows[:, None] * n
        votes = np.bincount(chosen.ravel(), minlength=problems * n).reshape(problems, n)
        top = votes == votes.max(axis=1, keepdims=True)
        # a tie is broken at random: the right answer wins with probability 1/(size of the tie)
        wins += np.where(right >= 0, top[rows, np.maximum(right, 0)], False) / top.sum(axis=1)
    return wins / draws


@torch.no_grad()
def sample_answers(model, prompts: torch.Tensor, length: int, samples: int,
                   temperature: float = 1.0, seed: int = 0) -> torch.Tensor:  # fmt: skip
    """``samples`` answers of ``length`` tokens per prompt, drawn from ``model.generate``:
    a ``(problems, samples, length)`` tensor on the CPU."""
    if prompts.ndim != 2:
        raise ValueError(f"sample_answers: prompts must be (problems, time), got "
                         f"{tuple(prompts.shape)}")  # fmt: skip
    samples = check_int("sample_answers", "samples", samples, low=1)
    length = check_int("sample_answers", "length", length, low=1)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    repeated = prompts.to(device).repeat_interleave(samples, dim=0)
    out = model.generate(repeated, length, temperature=temperature, generator=gen)
    return out[:, prompts.shape[1]:].reshape(len(prompts), samples, length).cpu()


def scaling_table(answers, correct, ks, draws: int = 256, seed: int = 0) -> pd.DataFrame:
    """pass@k and majority@k (means over problems) for each k in ``ks`` (a non-empty list of
    ints): columns ``k, pass_at_k, majority_at_k`` and ``pass_at_k_sem`` (the standard error
    over problems). Needs at least one problem."""
    answers, correct = np.asarray(answers), np.asarray(correct)
    if answers.ndim != 2 or correct.shape != answers.shape[:1]:
        raise ValueError(f"scaling_table: answers must be (problems, n) and correct (problems,), "
                         f"got {answers.shape} and {correct.shape}")  # fmt: skip
    if len(answers) == 0:  # a mean over no problems would be NaN
        raise ValueError("scaling_table: answers hold no problems")
    if isinstance(ks, str | bytes) or not isinstance(ks, Iterable):
        raise TypeError(f"scaling_table: ks must be a list of ints, got {ks!r}")
    ks = list(ks)
    if not ks:
        raise ValueError("scaling_table: ks is empty; give at least one k")
    draws = check_int("scaling_table", "draws", draws, low=1)
    seed = check_int("scaling_table", "seed", seed)
    n = answers.shape[1]
    c = (answers == correct[:, None]).sum(axis=1)
    rows = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer):  # 1.7 is no k
            raise ValueError(f"scaling_table: each k must be an int, got {k!r}")
        p = pass_at_k(np.full_like(c, n), c, int(k))
        rows.append({"k": int(k), "pass_at_k": p.mean(),
                     "pass_at_k_sem": p.std(ddof=1) / np.sqrt(len(p)) if len(p) > 1 else np.nan,
                     "majority_at_k": majority_at_k(answers, correct, int(k), draws,
                                                    seed).mean()})  # fmt: skip
    return pd.DataFrame(rows)
