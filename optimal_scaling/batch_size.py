r"""Batch size: the gradient noise scale, the critical batch size, and η*(B).

**Gradient noise scale** (McCandlish et al. 2018). A batch of B samples gives a gradient
estimate with E‖G_B‖² = ‖G‖² + tr(Σ)/B, Σ the per-sample gradient covariance. Two batch sizes
B_s < B_b give unbiased estimates of both terms (their appendix A):

    ‖G‖²  ≈ (B_b‖G_b‖² − B_s‖G_s‖²) / (B_b − B_s),      tr(Σ) ≈ (‖G_s‖² − ‖G_b‖²) / (1/B_s − 1/B_b),

and B_simple = tr(Σ)/‖G‖². Gradient accumulation gives both for free: the micro-batch
gradients are the small batches, their mean the big one. Single-step estimates are noisy; the
two terms are smoothed separately (EMA) and the ratio taken of the smoothed terms.

**Steps and data** (same paper). To reach a given loss, S steps at batch B and E = S·B
examples trade off as S = S_min(1 + B_crit/B), E = E_min(1 + B/B_crit), i.e.
(S/S_min − 1)(E/E_min − 1) = 1, with B_crit = E_min/S_min. Since S = S_min + E_min/B is
linear in 1/B, the fit is a least-squares line. S at each B comes from training logs: the
first step where a non-increasing least-squares fit to the run's loss (isotonic regression)
reaches the target. Not the running minimum of the loss: that is the minimum of noise, and the
noisiest runs (the smallest batches) would seem to get there first.

**η*(B).** SGD: η* = η_crit/(1 + B_crit/B) (grows linearly, then saturates). Adam, the "surge":
η* = η_crit/(√(B/B_crit) + √(B_crit/B)), which peaks at B = B_crit with η_crit/2 and falls
beyond. The paper writes η_max/[½(√(B_noise/B) + √(B/B_noise))]: the same curve with
η_crit = 2·η_max.

**SDE view.** With learning rate η, momentum m, batch B and D training examples the noise
temperature is ηD/(B(1 − m)) (up to constants): keeping it fixed means η ∝ B at fixed D, and
η ∝ 1/D at fixed B.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import pandas as pd
import torch

from optimal_scaling._validate import check_int, check_number
from optimal_scaling.fitting import (
    check_bootstrap,
    percentile_intervals,
    positive_values,
    require_columns,
)

__all__ = [
    "NoiseScale",
    "CriticalBatch",
    "EtaOfB",
    "GradientNoiseProbe",
    "b_simple_curve",
    "eta_sgd",
    "eta_surge",
    "falling_curve",
    "fit_critical_batch",
    "fit_eta_of_b",
    "noise_scale_terms",
    "noise_temperature",
    "overhead_batch",
    "steps_to_target",
    "terms_from_microbatches",
]


def _positive(who: str, name: str, values) -> np.ndarray:
    """``values`` (a number or an array of them) as floats, or an error when any is not a
    positive finite number."""
    raw = np.asarray(values)
    if raw.dtype.kind not in "iuf":  # text, bools, objects
        raise TypeError(f"{who}: {name} must be a number or an array of numbers, got "
                        f"{raw.ravel()[:3].tolist()} (dtype {raw.dtype})")  # fmt: skip
    x = raw.astype(float)
    bad = ~(np.isfinite(x) & (x > 0))
    if bad.any():
        raise ValueError(f"{who}: {name} must be positive and finite, got {x[bad][:3].tolist()}")
    return x


# --------------------------------------------------------------------------- noise scale
def noise_scale_terms(
    g2_small: float, g2_big: float, b_small: float, b_big: float
) -> tuple[float, float]:
    """Unbiased (‖G‖², tr Σ) from squared gradient norms at batch sizes b_small < b_big."""
    who = "noise_scale_terms"
    for name, value in (("b_small", b_small), ("b_big", b_big)):
        check_number(who, name, value, low=0, low_open=True)
    if not b_small < b_big:
        raise ValueError(f"{who}: need 0 < b_small < b_big, got {b_small}, {b_big}")
    try:
        finite = all(math.isfinite(float(v)) and float(v) >= 0 for v in (g2_small, g2_big))
    except (TypeError, ValueError):
        raise TypeError(f"{who}: squared gradient norms must be numbers, got {g2_small!r}, "
                        f"{g2_big!r}") from None  # fmt: skip
    if not finite:
        raise ValueError(f"{who}: squared gradient norms must be finite and ≥ 0, "
                         f"got {g2_small}, {g2_big}")  # fmt: skip
    g2 = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
    trace = (g2_small - g2_big) / (1 / b_small - 1 / b_big)
    return float(g2), float(trace)


def terms_from_microbatches(grads: Sequence[torch.Tensor], micro: int) -> tuple[float, float]:
    """(‖G‖², tr Σ) from the flattened gradients of k ≥ 2 micro-batches of ``micro`` samples.

    Small batches: each micro-batch (‖G_s‖² averaged over them); big batch: their mean, of
    k·micro samples. No extra backward pass: these are the gradients accumulation computes.
    """
    who = "terms_from_microbatches"
    micro = check_int(who, "micro", micro, low=1, note="(samples per micro-batch)")
    if len(grads) < 2:
        raise ValueError(f"{who}: need at least 2 micro-batch gradients, got {len(grads)}")
    if len({g.numel() for g in grads}) > 1:
        raise ValueError(f"{who}: the gradients differ in size: "
                         f"{sorted({g.numel() for g in grads})}")  # fmt: skip
    G = torch.stack([g.detach().double().reshape(-1) for g in grads])
    g2_small = float(G.pow(2).sum(1).mean())
    g2_big = float(G.mean(0).pow(2).sum())
    return noise_scale_terms(g2_small, g2_big, micro, micro * len(grads))


@dataclass
class NoiseScale:
    """EMA of ‖G‖² and tr Σ (``decay`` per update), and B_simple = EMA(tr Σ)/EMA(‖G‖²).

    A planted noise: per-sample gradients G + ξ with ‖G‖² = 10 and tr Σ = 1000, so B_simple
    = 100; four micro-batches of 8 samples per step, 50 steps:

    >>> _ = torch.manual_seed(0)
    >>> G, micro = torch.full((1000,), 0.1), 8
    >>> ns = NoiseScale(decay=0.9)
    >>> for step in range(50):
    ...     micro_grads = [G + torch.randn(1000) / micro**0.5 for _ in range(4)]
    ...     _ = ns.update(*terms_from_microbatches(micro_grads, micro=micro))
    >>> round(ns.b_simple, -1)
    100.0
    """

    decay: float = 0.95
    g2: float = 0.0
    trace: float = 0.0
    updates: int = 0
    history: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.decay = check_number("NoiseScale", "decay", self.decay, low=0, high=1,
                                  high_open=True)  # fmt: skip

    def update(self, g2: float, trace: float) -> float:
        """Fold in one step's estimates; return the smoothed B_simple (bias-corrected EMA).

        A NaN or infinite estimate (a diverged step) is refused with a ValueError and leaves
        the averages as they were: folded in, it would stay in the EMA for good.
        """
        g2, trace = float(g2), float(trace)
        if not (math.isfinite(g2) and math.isfinite(trace)):
            raise ValueError(f"NoiseScale.update: g2 and trace must be finite, got {g2}, {trace} "
                             "(the averages are left as they were)")  # fmt: skip
        self.g2 = self.decay * self.g2 + (1 - self.decay) * g2
        self.trace = self.decay * self.trace + (1 - self.decay) * trace
        self.updates += 1
        self.history.append({"g2": g2, "trace": trace, "b_simple": self.b_simple})
        return self.b_simple

    @property
    def b_simple(self) -> float:
        """tr Σ / ‖G‖² of the smoothed terms (the EMA's 1 − decayᵗ bias cancels in the ratio);
        inf while the smoothed ‖G‖² is ≤ 0 (before any update, or from negative estimates)."""
        return self.trace / self.g2 if self.g2 > 0 else math.inf


def b_simple_curve(g2, trace, decay: float = 0.95) -> np.ndarray:
    """B_simple after each step: EMA(tr Σ)/EMA(‖G‖²) of per-step estimates (as NoiseScale).
    No steps give an empty curve."""
    who = "b_simple_curve"
    decay = check_number(who, "decay", decay, low=0, high=1, high_open=True)
    try:
        g2, trace = np.asarray(g2, dtype=float), np.asarray(trace, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: g2 and trace must hold numbers") from None
    if g2.shape != trace.shape or g2.ndim != 1:
        raise ValueError(f"b_simple_curve: g2 and trace must be 1-d of one length, got shapes "
                         f"{g2.shape} and {trace.shape}")  # fmt: skip
    if not (np.isfinite(g2).all() and np.isfinite(trace).all()):
        raise ValueError("b_simple_curve: g2 or trace holds NaN or inf")
    out, a, b = np.empty_like(g2), 0.0, 0.0
    for i, (x, y) in enumerate(zip(g2, trace, strict=True)):
        a, b = decay * a + (1 - decay) * x, decay * b + (1 - decay) * y
        out[i] = b / a if a > 0 else np.inf
    return out


class GradientNoiseProbe:
    """Per-step (‖G‖², tr Σ) from the micro-batch gradients that accumulation computes anyway.

    The training step scales each micro-batch loss by micro/share (``share`` = the sequences
    one process takes), so after micro-batch i the accumulated gradient is
    A_i = Σ_{j≤i} (micro/share)·g_j, and g_i = (A_i − A_{i−1})·share/micro. Call
    :meth:`after_backward` after every micro-batch backward and :meth:`finish` after the last:
    it returns a tensor [‖G‖², tr Σ] from the two-batch estimator with B_small = ``micro``
    (every micro-batch of every process) and B_big = ``batch`` (their mean), without a host
    sync. Cost: one copy of the gradients and a norm per micro-batch.

    Under DDP (``world`` > 1) every micro-batch must run under ``no_sync()``: :meth:`finish`
    averages the gradients over the processes itself (as DDP would) and sums the micro-batch
    norms. Needs at least two small batches in all: (share/micro)·world ≥ 2.
    """

    def __init__(self, params, micro: int, batch: int, world: int = 1) -> None:
        self.params = [p for p in params if p.requires_grad]
        for name, value in (("micro", micro), ("batch", batch), ("world", world)):
            check_int("GradientNoiseProbe", name, value, low=1)
        if batch % world or (batch // world) % micro:
            raise ValueError(f"GradientNoiseProbe: micro {micro} × world {world} does not "
                             f"divide batch {batch}")  # fmt: skip
        self.micro, self.batch, self.world = micro, batch, world
        self.share = batch // world
        if self.batch // micro < 2:
            raise ValueError(f"GradientNoiseProbe: batch {batch} in micro-batches of {micro} is "
                             "one small batch; the estimator needs at least two")  # fmt: skip
        self._prev: list[torch.Tensor] | None = None
        self._small: torch.Tensor | None = None

    def _grads(self) -> list[torch.Tensor]:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            raise RuntimeError("GradientNoiseProbe: no gradients; call after backward()")
        return grads

    @torch.no_grad()
    def after_backward(self) -> None:
        """Add this micro-batch's ‖g_i‖² (from the change in the accumulated gradients)."""
        grads = self._grads()
        diff = grads if self._prev is None else torch._foreach_sub(grads, self._prev)
        sq = torch.stack(torch._foreach_norm(diff)).double().pow(2).sum()
        sq = sq * (self.share / self.micro) ** 2
        self._small = sq if self._small is None else self._small + sq
        if self._prev is None:
            self._prev = [g.clone() for g in grads]
        else:
            torch._foreach_copy_(self._prev, grads)

    @torch.no_grad()
    def finish(self) -> torch.Tensor:
        """[‖G‖², tr Σ] of this step (a float64 tensor on the gradients' device); resets."""
        if self._small is None:
            raise RuntimeError("GradientNoiseProbe.finish before any after_backward")
        grads, small = self._grads(), self._small
        if self.world > 1:
            import torch.distributed as dist

            for g in grads:
                dist.all_reduce(g)
                g.div_(self.world)
            dist.all_reduce(small)
        big = torch.stack(torch._foreach_norm(grads)).double().pow(2).sum()
        g2_small = small / (self.batch // self.micro)
        b_s, b_b = self.micro, self.batch
        g2 = (b_b * big - b_s * g2_small) / (b_b - b_s)
        trace = (g2_small - big) / (1 / b_s - 1 / b_b)
        self._prev, self._small = None, None
        return torch.stack([g2, trace])


# --------------------------------------------------------------------------- η*(B) models
def _sgd(B: np.ndarray, eta_crit: float, b_crit: float) -> np.ndarray:
    return eta_crit / (1 + b_crit / B)


def _surge(B: np.ndarray, eta_crit: float, b_crit: float) -> np.ndarray:
    r = B / b_crit
    return eta_crit / (np.sqrt(r) + np.sqrt(1 / r))


_MODELS = {"sgd": _sgd, "surge": _surge}  # unchecked: the fit calls them many times


def _eta_model(who: str, model: str, B, eta_crit: float, b_crit: float):
    for name, value in (("eta_crit", eta_crit), ("b_crit", b_crit)):
        check_number(who, name, value, low=0, low_open=True)
    return _MODELS[model](_positive(who, "B", B), eta_crit, b_crit)


def eta_sgd(B, eta_crit: float, b_crit: float):
    """SGD's optimal learning rate η_crit/(1 + B_crit/B); B, η_crit, B_crit > 0."""
    return _eta_model("eta_sgd", "sgd", B, eta_crit, b_crit)


def eta_surge(B, eta_crit: float, b_crit: float):
    """Adam's η_crit/(√(B/B_crit) + √(B_crit/B)): peak η_crit/2 at B = B_crit; B, η_crit,
    B_crit > 0."""
    return _eta_model("eta_surge", "surge", B, eta_crit, b_crit)


@dataclass
class EtaOfB:
    """η_crit and B_crit of an η*(B) model fitted to optima, with bootstrap intervals.

    ``b_range`` is the span of batch sizes fitted and ``converged`` the least-squares
    solver's own verdict. :attr:`b_crit_inside` is False when B_crit lies outside the batch
    sizes measured: then it is an extrapolation, and when every B is far below (or above)
    B_crit the two parameters are barely identifiable (wide intervals say so too).
    """

    model: str
    eta_crit: float
    b_crit: float
    n: int
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    b_range: tuple[float, float] = (math.nan, math.nan)
    converged: bool = True

    @property
    def b_crit_inside(self) -> bool:
        return self.b_range[0] <= self.b_crit <= self.b_range[1]

    def __call__(self, B):
        """η*(B) of the fitted model; batch sizes must be positive."""
        return _MODELS[self.model](_positive("EtaOfB", "B", B), self.eta_crit, self.b_crit)


def fit_eta_of_b(
    table: pd.DataFrame,
    model: str = "surge",
    batch: str = "batch_size",
    lr: str = "lr",
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> EtaOfB:
    """Fit ``model`` ("sgd" or "surge") to optimal (B, η*) pairs, least squares in log η.

    ``table``: one row per batch size with its optimal learning rate (e.g. from
    :func:`optimal_scaling.fitting.find_optimum`). Parameters are fitted in logs (both must
    be positive); bootstrap intervals resample the rows (NaN with fewer than 4 rows, where a
    resample that keeps 3 batch sizes is the data again).
    """
    from scipy.optimize import least_squares

    who = "fit_eta_of_b"
    if model not in _MODELS:
        raise ValueError(f"{who}: unknown model {model!r}; choose from {', '.join(_MODELS)}")
    bootstrap = check_bootstrap(bootstrap, level, who, seed)
    require_columns(table, [batch, lr], who)
    B = positive_values(table[batch], batch, who)
    eta = positive_values(table[lr], lr, who)
    if len(np.unique(B)) < 3:
        raise ValueError(f"{who}: need optima at ≥ 3 batch sizes, got {len(np.unique(B))}")
    if len(np.unique(eta)) < 2:
        raise ValueError(f"{who}: η* = {eta[0]:g} at every batch size: η(B) does not bend, so "
                         "B_crit is not identified (widen the η grid or the batches)")  # fmt: skip
    f = _MODELS[model]

    def fit(b: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, bool]:
        start = [np.log(e.max() * 2), np.log(np.median(b))]
        res = least_squares(lambda p: np.log(f(b, np.exp(p[0]), np.exp(p[1]))) - np.log(e),
                            start)  # fmt: skip
        return np.exp(res.x), bool(res.success)

    (eta_crit, b_crit), ok = fit(B, eta)
    out = EtaOfB(model, float(eta_crit), float(b_crit), len(B),
                 b_range=(float(B.min()), float(B.max())), converged=ok)  # fmt: skip
    if bootstrap and len(B) < 4:  # every usable resample would be the data again
        out.intervals = {"eta_crit": (math.nan, math.nan), "b_crit": (math.nan, math.nan)}
    elif bootstrap:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(bootstrap):
            idx = rng.integers(0, len(B), len(B))
            if len(np.unique(B[idx])) >= 3:
                draws.append(fit(B[idx], eta[idx])[0])
        out.intervals = percentile_intervals(draws, ("eta_crit", "b_crit"), level)
    return out


def overhead_batch(b_crit: float, overhead: float = 0.2) -> dict[str, float]:
    """Batch sizes where the hyperbola costs ``overhead`` extra: in data, E/E_min − 1 = B/B_crit
    gives B = overhead·B_crit; in steps, S/S_min − 1 = B_crit/B gives B = B_crit/overhead.

    At B = B_crit both overheads are 100% (McCandlish et al.'s definition); a "20% overhead"
    critical batch size is 0.2·B_crit when data is what one pays for.
    """
    numbers = all(isinstance(v, Real) and not isinstance(v, bool)
                  for v in (b_crit, overhead))  # fmt: skip
    if not numbers or not (b_crit > 0 and overhead > 0 and math.isfinite(b_crit)
                           and math.isfinite(overhead)):  # fmt: skip
        raise ValueError(f"overhead_batch: need numbers b_crit > 0 and overhead > 0 (finite), "
                         f"got {b_crit!r}, {overhead!r}")  # fmt: skip
    return {"data": overhead * b_crit, "steps": b_crit / overhead}


def noise_temperature(lr, examples, batch, momentum: float = 0.0):
    """The SDE noise scale ηD/(B(1 − m)) (kept fixed: η ∝ B at fixed D, η ∝ 1/D at fixed B).

    ``lr``, ``examples`` and ``batch`` (numbers or arrays) must be positive; 0 ≤ m < 1."""
    who = "noise_temperature"
    momentum = check_number(who, "momentum", momentum, low=0, high=1, high_open=True)
    lr = _positive(who, "lr", lr)
    examples = _positive(who, "examples", examples)
    batch = _positive(who, "batch", batch)
    return lr * examples / (batch * (1 - momentum))


# --------------------------------------------------------------------------- B_crit from runs
@dataclass
class CriticalBatch:
    """S_min, E_min and B_crit = E_min/S_min from (B, S) pairs, with bootstrap intervals."""

    s_min: float
    e_min: float
    b_crit: float
    n: int
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    def steps(self, B):
        """S(B) = S_min(1 + B_crit/B), for batch sizes B > 0."""
        return self.s_min * (1 + self.b_crit / _positive("CriticalBatch.steps", "B", B))

    def examples(self, B):
        """E(B) = E_min(1 + B/B_crit), for batch sizes B > 0."""
        return self.e_min * (1 + _positive("CriticalBatch.examples", "B", B) / self.b_crit)


def _falling_fit(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares non-increasing fit to y (isotonic regression by pooling adjacent
    violators), and the sum of squared residuals of that fit to every prefix y[:k+1].

    Scanning left to right, each new value starts a block; while the block before has a
    smaller mean, the two merge (their mean is the least-squares constant of both). The fit
    is every block's mean repeated over it. O(n) amortized.
    """
    sums: list[float] = []
    counts: list[int] = []
    squares: list[float] = []
    total = 0.0
    sse = np.empty(len(y))
    for k, v in enumerate(y.tolist()):
        s, c, q = v, 1, v * v
        while sums and sums[-1] * c < s * counts[-1]:  # mean before < mean now: pool
            ps, pc, pq = sums.pop(), counts.pop(), squares.pop()
            total -= pq - ps * ps / pc
            s, c, q = s + ps, c + pc, q + pq
        total += q - s * s / c
        sums.append(s), counts.append(c), squares.append(q)
        sse[k] = total
    return np.repeat(np.array(sums) / np.array(counts), counts), sse


def falling_curve(y) -> np.ndarray:
    """The falling part of a loss curve: the least-squares fit that falls and then may rise
    (unimodal regression), cut at its turning point, over the entries up to there.

    A run whose loss turns up late (too high a learning rate) would drag a plain
    non-increasing fit up over its whole tail; fitting "falls to k, rises after k" and keeping
    the fall ignores the rise. k minimises SSE_fall(y[:k+1]) + SSE_rise(y[k+1:]), the largest
    such k on a tie: a run that only falls keeps all its entries (a last entry above the fit
    before it counts as a rise and is left out). Unlike a running minimum, a least-squares fit
    is not pulled down by noise: each value is a mean over a block of entries.
    """
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or not len(y) or not np.isfinite(y).all():
        raise ValueError(f"falling_curve: need a non-empty 1-d array of finite losses, got "
                         f"shape {y.shape}")  # fmt: skip
    fall = _falling_fit(y)[1]
    rise = _falling_fit(y[::-1])[1][::-1]  # rise[j]: SSE of the non-decreasing fit to y[j:]
    total = fall.copy()
    total[:-1] += rise[1:]
    tie = 1e-9 * float(np.sum(y * y))  # rounding in the running sums
    k = int(np.flatnonzero(total <= total.min() + tie)[-1])  # on a tie, keep more of the run
    return _falling_fit(y[: k + 1])[0]


_CURVES = ("falling", "running-min")


def steps_to_target(
    log: pd.DataFrame,
    targets: float | Sequence[float],
    run: str = "run_id",
    step: str = "step",
    loss: str = "train_loss",
    smooth: int = 1,
    curve: str = "falling",
) -> pd.DataFrame:
    """The steps each run of a training log needs to reach each target loss.

    Per run (rows grouped by ``run``, ordered by ``step``), the loss is first averaged over a
    trailing window of ``smooth`` entries, then made non-increasing in one of two ways:

    * ``curve="falling"``: the least-squares non-increasing fit (isotonic regression) to the
      part of the run before its loss turns up for good (`falling_curve`); entries whose
      loss is not finite are left out. Each fitted value is a mean over a block of entries,
      so noise does not move the crossing much.
    * ``curve="running-min"``: the running minimum. Simple, but biased: the minimum of noisy
      entries sits several standard deviations below the curve, so noisy runs (small batches)
      cross early. On 1.5 + 30/√step with Gaussian noise of 0.2 per entry, the crossings
      of 1.8 come at about a sixth of the true step.

    The answer is the first step where that curve is ≤ the target, interpolated linearly
    between the two entries around the crossing; NaN where the run never gets there.
    ``targets``: one loss or several. One row per run × target with ``target``, ``steps``
    and every column that is constant within the run (batch size, lr, …).
    A trailing mean lags a falling curve, so ``smooth`` > 1 biases the steps upward (on
    1 + 10/step the crossing of 1.5 at step 20 reads 21 with smooth = 3, 24 with smooth = 9):
    compare runs at one smoothing, as the critical-batch fit does.
    """
    who = "steps_to_target"
    require_columns(log, [run, step, loss], who)
    if log.empty:
        raise ValueError(f"{who}: the log is empty")
    smooth = check_int(who, "smooth", smooth, low=1, note="(log entries)")
    if curve not in _CURVES:
        raise ValueError(f"{who}: unknown curve {curve!r}; choose one of {_CURVES}")
    for col in (step, loss):  # text steps would sort as text ("10" < "9")
        if not pd.api.types.is_numeric_dtype(log[col]) or pd.api.types.is_bool_dtype(log[col]):
            raise TypeError(f"{who}: column {col!r} must hold numbers, got dtype "
                            f"{log[col].dtype}")  # fmt: skip
    if log[run].isna().any():
        raise ValueError(f"{who}: {int(log[run].isna().sum())} rows have no {run!r} (a "
                         "missing run id): which run they belong to is unknown")  # fmt: skip
    try:
        targets = [float(t) for t in np.atleast_1d(np.asarray(targets, dtype=float)).ravel()]
    except (TypeError, ValueError):
        msg = f"{who}: targets must be a loss or a list of losses, got {targets!r}"
        raise ValueError(msg) from None
    if not targets or not all(math.isfinite(t) for t in targets):
        raise ValueError(f"{who}: need finite target losses, got {targets}")
    rows = []
    for key, g in log.groupby(run, sort=False):
        g = g.sort_values(step)
        s = g[step].to_numpy(dtype=float)
        smoothed = g[loss].rolling(smooth, min_periods=1).mean().to_numpy(dtype=float)
        if curve == "running-min":
            fit = np.minimum.accumulate(np.where(np.isfinite(smoothed), smoothed, np.inf))
        else:
            ok = np.isfinite(smoothed)
            s = s[ok]
            fit = falling_curve(smoothed[ok]) if ok.any() else np.empty(0)
            s = s[: len(fit)]
        fixed = {c: g[c].iloc[0] for c in g.columns
                 if c not in (step, loss) and g[c].nunique(dropna=False) == 1}  # fmt: skip
        for t in targets:
            hit = np.flatnonzero(fit <= t)
            if not len(hit):
                at = math.nan
            elif hit[0] == 0 or not math.isfinite(fit[hit[0] - 1]):
                at = s[hit[0]]  # nothing finite before it to interpolate from
            else:
                i = hit[0]
                at = s[i - 1] + (s[i] - s[i - 1]) * (fit[i - 1] - t) / (fit[i - 1] - fit[i])
            rows.append({**fixed, run: key, "target": t, "steps": at})
    return pd.DataFrame(rows)


def _line(inv_b: np.ndarray, steps: np.ndarray) -> tuple[float, float]:
    """S = S_min + E_min/B by least squares on relative residuals (S − Ŝ)/S."""
    design = np.column_stack([np.ones_like(inv_b), inv_b]) / steps[:, None]
    s_min, e_min = np.linalg.lstsq(design, np.ones_like(steps), rcond=None)[0]
    return float(s_min), float(e_min)


def fit_critical_batch(
    table: pd.DataFrame,
    batch: str = "batch_size",
    steps: str = "steps",
    bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> CriticalBatch:
    """Fit S = S_min + E_min/B to the steps each batch size needed to reach one target loss.

    ``table`` has one row per run (batch size and steps to the target; runs that never reached
    it are left out by the caller). Needs ≥ 3 distinct batch sizes and positive values; S_min
    and E_min must come out positive (else the runs do not show the trade-off, and the error
    says so).

    Least squares on relative residuals, Σ((S − S_min − E_min/B)/S)²: the step at which a
    noisy loss crosses a target is uncertain in proportion to the step itself, so plain least
    squares would let the small batches' long runs decide the fit. Bootstrap intervals
    resample the runs; with fewer than 4 runs every resample that keeps 3 batch sizes is the
    data again, so the intervals are NaN (not a zero-width interval that looks precise).
    """
    who = "fit_critical_batch"
    bootstrap = check_bootstrap(bootstrap, level, who, seed)
    require_columns(table, [batch, steps], who)
    if "target" in table and table["target"].nunique() > 1:  # steps_to_target with a list
        raise ValueError(f"{who}: the table mixes {table['target'].nunique()} target losses "
                         f"{sorted(table['target'].unique().tolist())}; fit one at a time, "
                         "e.g. table[table.target == t]")  # fmt: skip
    B = positive_values(table[batch], batch, who)
    S = positive_values(table[steps], steps, who)
    if len(np.unique(B)) < 3:  # two sizes fit the line exactly: no residual, no interval
        raise ValueError(f"{who}: need runs at ≥ 3 batch sizes, got {len(B)} runs and "
                         f"{len(np.unique(B))} sizes")  # fmt: skip
    s_min, e_min = _line(1 / B, S)
    if s_min <= 0 or e_min <= 1e-9 * s_min * B.min():  # B_crit ≪ every batch: rounding, no 1/B
        raise ValueError(f"{who}: the fit gives S_min = {s_min:.3g}, E_min = {e_min:.3g}; the "
                         "runs do not show S falling as 1/B towards a floor")  # fmt: skip
    out = CriticalBatch(s_min, e_min, e_min / s_min, len(B))
    if bootstrap and len(B) < 4:
        out.intervals = {name: (math.nan, math.nan) for name in ("s_min", "e_min", "b_crit")}
    elif bootstrap:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(bootstrap):
            idx = rng.integers(0, len(B), len(B))
            if len(np.unique(B[idx])) < 3:
                continue
            a, b = _line(1 / B[idx], S[idx])
            if a > 0 and b > 0:
                draws.append((a, b, b / a))
        out.intervals = percentile_intervals(draws, ("s_min", "e_min", "b_crit"), level)
    return out
