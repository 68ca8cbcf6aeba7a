r"""Muon: momentum, then orthogonalize, then a shape-dependent step size.

For every weight matrix W (d_out × d_in; a conv weight (out, in, kh, kw) is flattened to
out × (in·kh·kw)) with gradient g, one step is

    buf ← μ·buf + g                                   (momentum buffer, starts at 0)
    u   ← g + μ·buf   (Nesterov)    or    u ← buf      (heavy ball)
    O   ← orthogonalize(u) ≈ U Vᵀ  for u = U Σ Vᵀ      (Newton–Schulz, lecture 04)
    W   ← W·(1 − η·λ)                                  (decoupled weight decay)
    W   ← W − η·s·O

where s is the shape scale:

    ``"max1"``   s = √max(1, d_out/d_in)     (Keller Jordan's Muon)
    ``"ratio"``  s = √(d_out/d_in)           (the RMS→RMS dual map: s·UVᵀ = dualize(u))
    ``"adamw"``  s = 0.2·√max(d_out, d_in)   (an update RMS ≈ 0.2, like AdamW's; Moonlight)
    ``"none"``   s = 1

U Vᵀ has every singular value 1, so its RMS entry is 1/√max(d_out, d_in): the ``"adamw"``
scale makes the update RMS 0.2 whatever the shape (about 0.17–0.18 with five Newton–Schulz
steps, whose singular values end near, not at, 1), which lets Muon reuse an AdamW schedule.

Muon is for matrices only. Embeddings, the readout, gains and biases go to another
optimizer (AdamW); :func:`optimal_scaling.optim.muon_with_adamw` builds the pair.

``distributed=True`` (data parallel, FSDP2) splits the orthogonalizations over the ranks:
:mod:`optimal_scaling.distributed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import torch
from torch import Tensor
from torch.distributed import ProcessGroup

from optimal_scaling.distributed import orthogonalize_sharded
from optimal_scaling.newton_schulz import coefficients, orthogonalize, orthogonalize_each
from optimal_scaling.optim._checks import (
    CheckedOptimizer,
    check_int,
    check_number,
    describe,
    named_params,
)

__all__ = [
    "SCALES",
    "Muon",
    "orthogonalized_update",
    "orthogonalized_updates",
    "shape_scale",
]

#: The shape scales Muon knows (see the module docstring).
SCALES: tuple[str, ...] = ("max1", "ratio", "adamw", "none")


def shape_scale(scale: str, d_out: int, d_in: int) -> float:
    """The step multiplier s of a d_out × d_in matrix under the named ``scale``."""
    if scale == "max1":
        return math.sqrt(max(1.0, d_out / d_in))
    if scale == "ratio":
        return math.sqrt(d_out / d_in)
    if scale == "adamw":
        return 0.2 * math.sqrt(max(d_out, d_in))
    if scale == "none":
        return 1.0
    raise ValueError(f"unknown Muon scale {scale!r}; valid: {', '.join(SCALES)}")


def orthogonalized_update(
    u: Tensor,
    steps: int = 5,
    schedule: str | Sequence = "muon",
    scale: str = "max1",
    dtype: torch.dtype | None = None,
    margin: float = 1.01,
    eps: float = 0.0,
    check: bool | None = None,
) -> Tensor:
    """s·orthogonalize(u) in u's shape; u is a matrix or a conv weight (flattened to out × rest)."""
    return orthogonalized_updates([u], steps, schedule, scale, dtype, margin, eps, check)[0]


def orthogonalized_updates(
    us: Sequence[Tensor],
    steps: int = 5,
    schedule: str | Sequence = "muon",
    scale: str = "max1",
    dtype: torch.dtype | None = None,
    margin: float = 1.01,
    eps: float = 0.0,
    check: bool | None = None,
) -> list[Tensor]:
    """:func:`orthogonalized_update` of every u, batched: one Newton–Schulz call per shape.

    Matrices of the same shape after the tall/wide transpose (d_out × d_in and d_in × d_out
    share a batch) are stacked and orthogonalized together, which on a GPU replaces many small
    launches by a few large ones. The result equals the one-at-a-time loop up to float rounding
    (a batched product may sum in another order: ~1e-6 in float32). ``check`` goes to
    :func:`~optimal_scaling.newton_schulz.orthogonalize` (None: on the CPU only).
    """
    for k, u in enumerate(us):
        if not isinstance(u, Tensor):
            raise TypeError(f"orthogonalized_update: u must be a tensor, got {type(u).__name__}")
        if u.ndim < 2:
            raise ValueError(
                f"orthogonalized_update: u must be a matrix or a conv weight (≥ 2 dims), but "
                f"u[{k}] has shape {tuple(u.shape)}; a vector or a scalar has no orthogonal "
                "factor (Muon leaves gains and biases to AdamW)"
            )
    flat = [u if u.ndim == 2 else u.reshape(u.shape[0], math.prod(u.shape[1:])) for u in us]
    out: list[Tensor | None] = [torch.zeros_like(u) if u.numel() == 0 else None for u in us]
    done = [k for k, o in enumerate(out) if o is None]  # (an empty matrix: an empty update)
    orth = partial(orthogonalize, steps=steps, schedule=schedule, dtype=dtype, margin=margin,
                   eps=eps, check=check)  # fmt: skip
    for k, o in zip(done, orthogonalize_each([flat[k] for k in done], orth), strict=True):
        out[k] = o if us[k].ndim == 2 else o.reshape(us[k].shape)
    scales = [shape_scale(scale, *flat[k].shape) for k in done]
    if done:  # s·O for every matrix in one launch (new tensors: O's views stay untouched)
        for k, o in zip(done, torch._foreach_mul([out[k] for k in done], scales), strict=True):
            out[k] = o
    return out  # type: ignore[return-value]


class Muon(CheckedOptimizer):
    """Muon (MomentUm Orthogonalized by Newton–Schulz) for ≥ 2-D weights; see the module doc.

    Every argument is also a per-group setting. ``steps``/``schedule``/``dtype``/``margin``/
    ``eps`` go to :func:`optimal_scaling.newton_schulz.orthogonalize` (``dtype=None``: float32
    on the CPU, bfloat16 on CUDA; X/(margin·‖X‖_F + eps): ``margin=1, eps=1e-7`` is the
    original Muon's normalization). ``check_finite`` raises a ValueError naming the parameter
    when a gradient holds NaN or inf; ``None`` (default) checks every tensor not on CUDA (CPU,
    MPS, ...), because a check is one host synchronization per parameter: on CUDA a step never
    waits for the GPU.

    Each step updates every momentum buffer of a group with ``torch._foreach_*`` ops,
    orthogonalizes all updates of the same shape in one batched call
    (:func:`orthogonalized_updates`), and applies weight decay and the updates with foreach ops.

    ``distributed=True``: each step first computes every momentum update of a group, then
    orthogonalizes them with :func:`optimal_scaling.distributed.orthogonalize_sharded` (each
    rank of ``process_group``, default the world, does its share and the results are
    all-gathered), then applies them. For DDP and FSDP2 (DTensor parameters), where every rank
    steps the same parameters with the same (averaged) gradients. It is opt-in, not automatic
    once ``torch.distributed`` is initialized: a rank that steps other parameters (pipeline
    stages, a Muon over a local model) would hang the collective. Without an initialized
    process group, or with one process, the results equal ``distributed=False`` up to float
    rounding (the sharded path orthogonalizes one matrix at a time, the plain one in batches).
    """

    who = "Muon"

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        steps: int = 5,
        schedule: str | Sequence = "muon",
        scale: str = "max1",
        weight_decay: float = 0.0,
        dtype: torch.dtype | None = None,
        margin: float = 1.01,
        eps: float = 0.0,
        *,
        check_finite: bool | None = None,
        distributed: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            steps=steps,
            schedule=schedule,
            scale=scale,
            weight_decay=weight_decay,
            dtype=dtype,
            margin=margin,
            eps=eps,
            check_finite=check_finite,
        )
        super().__init__(params, defaults, distributed, process_group)

    # ------------------------------------------------------------------ groups
    def _check_settings(self, group: dict) -> None:
        who = self.who
        check_number(who, "lr", group["lr"], low=0.0)
        check_number(who, "momentum", group["momentum"], low=0.0, high=1.0, high_open=True)
        check_number(who, "weight_decay", group["weight_decay"], low=0.0)
        check_number(who, "margin", group["margin"], low=1.0)  # σ_max ≤ ‖X‖_F: σ ≤ 1/margin
        check_number(who, "eps", group["eps"], low=0.0)
        if not isinstance(group["nesterov"], bool):
            raise TypeError(f"{who}: nesterov must be True or False, got {group['nesterov']!r}")
        group["steps"] = check_int(who, "steps", group["steps"], low=0)
        coefficients(group["schedule"], group["steps"])  # raises for an unknown schedule
        self._check_common(group)
        if group["scale"] not in SCALES:
            raise ValueError(f"{who}: unknown scale {group['scale']!r}; valid: {', '.join(SCALES)}")
        dtype = group["dtype"]
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"{who}: dtype must be None or a floating torch.dtype, got {dtype!r}")

    def _check_param(self, group: dict, p: Tensor, name: str | None) -> None:
        if p.ndim < 2:
            raise ValueError(
                f"{self.who} updates matrices only, but got {describe(p, name)}; give embeddings,"
                " gains and biases to another optimizer (see muon_param_groups)"
            )

    # ------------------------------------------------------------------ hooks for subclasses
    #: What a parameter's state holds; a state missing any of these is (re)initialized.
    state_keys: tuple[str, ...] = ("momentum_buffer",)

    def _init_state(self, p: Tensor, state: dict, name: str | None) -> None:
        """Create what :attr:`state_keys` names and ``state`` lacks (raise before changing it)."""
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _after_update(self, p: Tensor, state: dict) -> None:
        """Called after each parameter's update (HyperP projects back onto its sphere here)."""

    # ------------------------------------------------------------------ the step
    def _momentum_updates(self, group: dict) -> list[tuple[Tensor, dict, Tensor]]:
        """(p, state, u) for every parameter with a gradient, after updating the momenta."""
        mu = group["momentum"]
        items = [(p, self.state[p], p.grad) for p in group["params"]
                 if p.grad is not None and p.numel() > 0]  # fmt: skip
        if not items:
            return []
        grads = [g for *_, g in items]
        bufs = [state["momentum_buffer"] for _, state, _ in items]
        torch._foreach_mul_(bufs, mu)  # buf ← μ·buf + g
        torch._foreach_add_(bufs, grads)
        us = torch._foreach_add(grads, bufs, alpha=mu) if group["nesterov"] else bufs
        return [(p, state, u) for (p, state, _), u in zip(items, us, strict=True)]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One Muon step for every parameter that has a gradient; returns the closure's loss."""
        loss = self._closure_loss(closure)
        self.check_grads()  # before anything changes: a step that raises changes nothing
        for group in self.param_groups:
            for p, name in named_params(group):  # (no state entry for a parameter without grad)
                if p.grad is not None and any(k not in self.state[p] for k in self.state_keys):
                    self._init_state(p, self.state[p], name)
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            work = self._momentum_updates(group)
            if not work:
                continue
            settings = (group["steps"], group["schedule"], group["scale"], group["dtype"],
                        group["margin"], group["eps"], group["check_finite"])  # fmt: skip
            us = [u for *_, u in work]
            if self.distributed:  # each rank orthogonalizes its share, then all-gather
                # no check inside: a raise on the one rank that owns a matrix would leave the
                # others waiting in the all-gather (every rank checked the gradients already)
                fn = partial(orthogonalized_update, steps=settings[0], schedule=settings[1],
                             scale=settings[2], dtype=settings[3], margin=settings[4],
                             eps=settings[5], check=False)  # fmt: skip
                updates = orthogonalize_sharded(us, fn, self.process_group)
            else:
                updates = orthogonalized_updates(us, *settings)
            params = [p for p, *_ in work]
            if wd != 0:
                torch._foreach_mul_(params, 1 - lr * wd)  # decoupled weight decay
            torch._foreach_add_(params, updates, alpha=-lr)
            for p, state, _ in work:
                self._after_update(p, state)
        return loss
