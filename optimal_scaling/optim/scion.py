r"""Scion: steepest descent with one norm per layer, through linear minimization oracles.

For a norm ‖·‖, the linear minimization oracle (LMO) of its unit ball is

    lmo(d) = argmin_{‖s‖ ≤ 1} ⟨d, s⟩ = −dualize(d)

(:mod:`optimal_scaling.duality`: dualize(d) maximizes ⟨d, s⟩ over the ball). Every parameter x
of a group with norm ‖·‖, radius ρ and learning rate γ takes the step

    d ← (1 − α)·d + α·g                      (α: the weight of the new gradient; d starts at 0)
    x ← x + γ·ρ·lmo(d)                       (unconstrained)
    x ← (1 − γ)·x + γ·ρ·lmo(d)               (constrained: x stays in the ball of radius ρ)
    x ← (1 − γλ)·x + γ·ρ·lmo(d)              (unconstrained with decoupled weight decay λ)

α = 1 means no momentum. The constrained step is a convex combination of x and a point of the
radius-ρ ball, so a parameter that starts in that ball never leaves it (Frank–Wolfe).

Each group names its norm: ``"colnorm"`` (ℓ1→RMS, embeddings), ``"spectral"`` (RMS→RMS, hidden
matrices), ``"rownorm"`` (RMS→ℓ∞, readout), ``"sign"`` (scaled max-of-max, readout),
``"bias_rms"`` (gains and biases; a 0-D scalar counts as a vector of one),
``"conv1d_spectral"``, ``"conv2d_spectral"``, ``"conv3d_spectral"`` (conv weights), a
:class:`~optimal_scaling.duality.DualityMap`, or ``"auto"``: by the group's ``role`` (input →
colnorm, hidden → spectral, or the conv map of a 3-, 4- or 5-D weight; output → sign, gain/bias
→ bias_rms), else by shape (0-D and 1-D → bias_rms, 2-D → spectral, 3-, 4-, 5-D →
conv1d/2d/3d_spectral). A hidden stack of matrices (experts, say) is not a conv: give its group
a ``Spectral()`` instance, which is batched over leading dims. Constructor options of a named
map go in ``norm_kwargs`` (e.g. ``{"method": "newton_schulz"}``), which keeps ``state_dict()``
plain data.

Layouts: matrices are (d_out, d_in) as in ``nn.Linear``. An ``nn.Embedding`` weight is stored
(vocab, d), the *transpose* of the linear map one-hot → vector; a group with
``transpose=True`` applies its norm, LMO and init to xᵀ. With ColNorm that makes the embedding
norm max over tokens of the RMS of the token's vector, as it should be.

``distributed=True`` (data parallel, FSDP2) splits the Spectral LMOs, the expensive ones, over
the ranks (:mod:`optimal_scaling.distributed`); the cheap ones stay local.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial

import torch
from torch import Tensor
from torch.distributed import ProcessGroup

from optimal_scaling.distributed import orthogonalize_sharded
from optimal_scaling.duality import (
    CONV_MAPS,
    MAPS,
    BiasRMS,
    ColNorm,
    ConvSpectral,
    DualityMap,
    RowNorm,
    Sign,
    Spectral,
    get_map,
)
from optimal_scaling.newton_schulz import orthogonalize_each
from optimal_scaling.optim._checks import (
    CheckedOptimizer,
    check_number,
    describe,
    named_params,
)
from optimal_scaling.roles import PRESETS, ROLES

__all__ = ["NORM_CHOICES", "ROLES", "ROLE_NORMS", "Scion", "ScionLight", "auto_norm", "lmo"]

#: The norm ``"auto"`` picks for each role (:data:`optimal_scaling.roles.PRESETS`).
ROLE_NORMS: dict[str, str] = PRESETS["colnorm-spectral-sign"]

#: Valid values of a group's ``norm`` (besides a DualityMap instance).
NORM_CHOICES: tuple[str, ...] = (*MAPS, "auto")

_SHAPE_NORMS = {0: "bias_rms", 1: "bias_rms", 2: "spectral", **CONV_MAPS}
#: Maps whose dualize of a stack equals the stack of their dualizes (batched over leading dims).
_BATCHABLE = (Spectral, ColNorm, RowNorm, Sign, BiasRMS)


def _merge_transposes(d: Tensor) -> bool:
    """Whether a Spectral direction shares a batch with its transposed shape: on CUDA only
    (on a 2-core CPU one batch of 4 × 512×2048 took ~5% longer than two of 2, in one A/B run
    during issue 11)."""
    return d.is_cuda


def lmo(norm: DualityMap, d: Tensor, transpose: bool = False) -> Tensor:
    """argmin_{‖s‖ ≤ 1} ⟨d, s⟩ = −dualize(d), computed on dᵀ when ``transpose``; a 0-D d
    as a vector of one."""
    if d.ndim == 0:
        return lmo(norm, d.reshape(1)).reshape(())
    if transpose:
        return -norm.dualize(d.mT).mT
    return -norm.dualize(d)


def auto_norm(p: Tensor, role: str | None = None, who: str = "Scion") -> str:
    """The norm name ``"auto"`` gives a parameter: by role if known, else by its shape."""
    if role == "hidden" and p.ndim in CONV_MAPS:
        return CONV_MAPS[p.ndim]
    if role is not None:
        return ROLE_NORMS[role]
    if p.ndim not in _SHAPE_NORMS:
        raise ValueError(
            f"{who}: no automatic norm for a tensor of shape {tuple(p.shape)} (auto knows 0- to "
            "5-D tensors); give its group a DualityMap instance, e.g. Spectral() for a stack of "
            "matrices"
        )
    return _SHAPE_NORMS[p.ndim]


class Scion(CheckedOptimizer):
    """Scion (unconstrained or constrained); see the module docstring for the update.

    Args:
        params: parameters or param groups. Group keys, besides the arguments below:
            ``role`` (one of :data:`ROLES`, used by ``norm="auto"``) and ``transpose``
            (apply the norm to xᵀ: ``nn.Embedding`` weights).
        lr: γ. Per-layer learning rates are just per-group ``lr`` values.
        momentum: α ∈ (0, 1], the weight of the new gradient (1: no momentum).
        norm: a name from :data:`NORM_CHOICES` or a DualityMap (an instance is pickled as an
            object by ``state_dict()``: load such a checkpoint with ``weights_only=False``, or
            prefer a name plus ``norm_kwargs``).
        radius: ρ > 0, the scale of the step (and of :meth:`init`, and the constrained ball).
        constrained: use x ← (1 − γ)·x + γ·ρ·lmo(d).
        norm_kwargs: constructor options of the named map, e.g. ``{"method": "newton_schulz"}``.
        check_finite: raise a ValueError naming the parameter when a gradient has NaN or inf;
            ``None`` (default): for tensors not on CUDA (a check is a host synchronization,
            which a CUDA step never makes). Spectral LMOs of the same shape in a group are
            computed in one batched Newton–Schulz (or SVD) call.
        distributed: split the LMOs of Spectral and conv-spectral parameters (an SVD or
            Newton–Schulz each) over the ranks of ``process_group`` (default: the world) with
            :func:`optimal_scaling.distributed.orthogonalize_sharded`; the other LMOs (ColNorm,
            RowNorm, Sign, BiasRMS: a pass over the entries) stay local. For DDP/FSDP2, where
            every rank steps the same parameters with the same gradients; opt-in for the
            reasons given in :class:`~optimal_scaling.optim.muon.Muon`. Without an initialized
            process group, or with one process, the results equal ``distributed=False``.
    """

    who = "Scion"

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        momentum: float = 1.0,
        norm: str | DualityMap = "auto",
        radius: float = 1.0,
        constrained: bool = False,
        weight_decay: float = 0.0,
        *,
        norm_kwargs: dict | None = None,
        check_finite: bool | None = None,
        distributed: bool = False,
        process_group: ProcessGroup | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            norm=norm,
            norm_kwargs=dict(norm_kwargs or {}),
            radius=radius,
            constrained=constrained,
            weight_decay=weight_decay,
            role=None,
            transpose=False,
            check_finite=check_finite,
        )
        super().__init__(params, defaults, distributed, process_group)

    # ------------------------------------------------------------------ groups
    def _check_settings(self, group: dict) -> None:
        who = self.who
        check_number(who, "lr", group["lr"], low=0.0)
        check_number(who, "momentum", group["momentum"], low=0.0, high=1.0, low_open=True)
        check_number(who, "radius", group["radius"], low=0.0, low_open=True)
        check_number(who, "weight_decay", group["weight_decay"], low=0.0)
        self._check_common(group)
        if group["constrained"] and group["lr"] > 1:
            raise ValueError(f"{who}: the constrained step x ← (1 − γ)x + γρ·lmo(d) stays in the "
                             f"norm ball only for γ ≤ 1; got lr = {group['lr']}")  # fmt: skip
        if group["constrained"] and group["weight_decay"]:
            raise ValueError(f"{who}: the constrained step already shrinks x by (1 − γ); "
                             "weight_decay must be 0 with constrained=True")  # fmt: skip
        for key in ("constrained", "transpose"):
            if not isinstance(group[key], bool):
                raise TypeError(f"{who}: {key} must be True or False, got {group[key]!r}")
        if group["role"] is not None and group["role"] not in ROLES:
            raise ValueError(
                f"{who}: unknown role {group['role']!r}; valid: {', '.join(ROLES)} (or None)"
            )
        norm = group["norm"]
        if isinstance(norm, str) and norm.strip().lower() in NORM_CHOICES:
            group["norm"] = norm = norm.strip().lower()
        elif not isinstance(norm, DualityMap):
            raise ValueError(
                f"{who}: unknown norm {norm!r}; valid: {', '.join(NORM_CHOICES)} "
                "or a DualityMap instance"
            )
        if not isinstance(group["norm_kwargs"], dict):
            raise TypeError(f"{who}: norm_kwargs must be a dict, got {group['norm_kwargs']!r}")
        if group["norm_kwargs"] and (not isinstance(norm, str) or norm == "auto"):
            raise ValueError(f"{who}: norm_kwargs need a named norm, not {norm!r}")

    def _check_param(self, group: dict, p: Tensor, name: str | None) -> None:
        m = self.norm_of(group, p)
        if group["transpose"] and p.ndim != 2:
            raise ValueError(f"{self.who}: transpose=True needs a matrix, got {describe(p, name)}")
        one_vector = isinstance(m, BiasRMS) and not m.batched
        if (p.ndim < m.event_ndim and not (one_vector and p.ndim == 0)) or (
            one_vector and p.ndim > 1
        ):
            raise ValueError(
                f"{self.who}: the {m.name!r} norm ({m!r}) expects {m.event_desc}, but its group "
                f"holds {describe(p, name)}; put it in a group with a suitable norm"
            )
        if m.event_ndim == 2 and p.ndim > 2 and isinstance(group["norm"], str):
            raise ValueError(
                f"{self.who}: the {m.name!r} norm would treat {describe(p, name)} as a batch of "
                f"{tuple(p.shape[-2:])} matrices; "
                + (f"a conv weight needs norm={CONV_MAPS[p.ndim]!r} (or 'auto'), "
                   if p.ndim in CONV_MAPS else "")
                + "a real batch of matrices a Spectral() instance"
            )

    def norm_of(self, group: dict, p: Tensor) -> DualityMap:
        """The duality map a group applies to parameter ``p``."""
        norm = group["norm"]
        if isinstance(norm, DualityMap):
            return norm
        if norm == "auto":
            norm = auto_norm(p, group["role"], self.who)
        try:
            # Our own finiteness check on the gradient names the parameter; skip the map's.
            return get_map(norm, **{"check_finite": False, **group["norm_kwargs"]})
        except TypeError as e:
            raise TypeError(
                f"{self.who}: norm_kwargs {group['norm_kwargs']} do not fit the {norm!r} map: {e}"
            ) from None

    # ------------------------------------------------------------------ hooks for ScionLight
    def _update_directions(self, group: dict, params: list[Tensor]) -> list[Tensor]:
        """d ← (1 − α)·d + α·g in the state for every p of ``params`` (foreach ops); α = 1:
        the gradients themselves, and no state at all."""
        alpha = group["momentum"]
        grads = [p.grad for p in params]
        if alpha == 1 or not params:
            return grads
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        torch._foreach_mul_(bufs, 1 - alpha)
        torch._foreach_add_(bufs, grads, alpha=alpha)
        return bufs

    def _after_update(self, p: Tensor, group: dict) -> None:
        """Called after each parameter's update (ScionLight decays its gradient here)."""

    # ------------------------------------------------------------------ the step
    def _directions(self, group: dict) -> list[tuple[Tensor, Tensor, DualityMap]]:
        """(p, d, norm) for every non-empty parameter with a gradient, updating its direction
        d (an empty tensor has nothing to update)."""
        params = [p for p in group["params"] if p.grad is not None and p.numel() > 0]
        ds = self._update_directions(group, params)
        return [(p, d, self.norm_of(group, p)) for p, d in zip(params, ds, strict=True)]

    @staticmethod
    def _lmos(group: dict, work: list) -> list[Tensor]:
        """Every lmo(d) of ``work``, batched: few launches instead of a few per parameter.

        Spectral matrices are stacked by shape, on CUDA after the tall/wide transpose (a
        d_out × d_in and a d_in × d_out share one Newton–Schulz call; on a CPU, where launches
        are cheap, a bigger batch is no faster): with L the matrix the norm sees
        (dᵀ when ``transpose``) and W = L or Lᵀ whichever is wide, lmo(d) = −√(d_out/d_in)·
        orth(L), orth(L) = orth(W) or orth(W)ᵀ. The other maps of matrices and vectors act on
        each leading index separately, so same-shape directions go through one call.
        """
        transpose = group["transpose"]
        out: list[Tensor | None] = [None] * len(work)
        buckets: dict[tuple, list[int]] = {}
        for k, (_, d, m) in enumerate(work):
            if type(m) in _BATCHABLE and d.ndim == m.event_ndim:
                merge = isinstance(m, Spectral) and _merge_transposes(d)
                shape = sorted(d.shape) if merge else tuple(d.shape)
                buckets.setdefault((repr(m), *shape, d.dtype, d.device), []).append(k)
            else:
                out[k] = lmo(m, d, transpose)
        spectral: list[int] = []
        for index in buckets.values():
            m = work[index[0]][2]
            if isinstance(m, Spectral):  # (as dualize does: half precision → float32, NaN check)
                logical = [work[k][1].mT if transpose else work[k][1] for k in index]
                orths = orthogonalize_each(logical, lambda W, m=m: m._orth(m._check(W)))
                for k, o in zip(index, orths, strict=True):
                    out[k] = o.mT if transpose else o
                spectral.extend(index)
                continue
            if len(index) == 1:
                out[index[0]] = lmo(m, work[index[0]][1], transpose)
                continue
            if isinstance(m, BiasRMS):  # a stack of vectors is a batch
                m = BiasRMS(batched=True, check_finite=m.check_finite)
            stacked = torch.stack([work[k][1] for k in index])
            for k, s in zip(index, lmo(m, stacked, transpose).unbind(0), strict=True):
                out[k] = s
        if spectral:  # −√(d_out/d_in)·orth(L) for all of them in one launch
            scales = []
            for k in spectral:
                d_out, d_in = work[k][1].shape[::-1] if transpose else work[k][1].shape
                scales.append(-math.sqrt(d_out / d_in))
            for k, o in zip(spectral, torch._foreach_mul([out[k] for k in spectral], scales),
                            strict=True):  # fmt: skip
                out[k] = o.to(work[k][1].dtype)  # (dualize's dtype rule)
        return out  # type: ignore[return-value]

    def _sharded_lmos(self, group: dict, work: list) -> list[Tensor]:
        """Every lmo(d) of ``work``; the Spectral ones split over the ranks, the others local."""
        transpose = group["transpose"]
        heavy = [k for k, (_, _, m) in enumerate(work) if isinstance(m, (Spectral, ConvSpectral))]
        fns = [partial(lmo, work[k][2], transpose=transpose) for k in heavy]
        shared = orthogonalize_sharded([work[k][1] for k in heavy], fns, self.process_group)
        out = dict(zip(heavy, shared, strict=True))
        return [out[k] if k in out else lmo(m, d, transpose) for k, (_, d, m) in enumerate(work)]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One Scion step for every parameter that has a gradient; returns the closure's loss."""
        loss = self._closure_loss(closure)
        self.check_grads()  # before anything changes: a step that raises changes nothing
        for group in self.param_groups:
            lr, radius = group["lr"], group["radius"]
            work = self._directions(group)
            if not work:
                continue
            if self.distributed:  # every direction first, then the LMOs (the Spectral ones split)
                steps = self._sharded_lmos(group, work)
            else:
                steps = self._lmos(group, work)
            params = [p for p, _, _ in work]
            if group["constrained"]:
                torch._foreach_mul_(params, 1 - lr)
            elif group["weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            torch._foreach_add_(params, steps, alpha=lr * radius)  # x ← x + γ·ρ·lmo(d)
            for p in params:
                self._after_update(p, group)
        return loss

    # ------------------------------------------------------------------ init and monitoring
    @torch.no_grad()
    def init(self, generator: torch.Generator | None = None) -> None:
        """Re-initialize every parameter in place: ρ times its group's norm-matched init.

        Each parameter gets ``radius · norm.init(shape)`` (drawn for xᵀ when ``transpose``), so
        it has norm exactly ρ in its group's norm (BiasRMS inits are zeros). Groups whose role is
        ``"gain"`` are left alone: a norm gain starts at 1, not at BiasRMS's zeros. So is a
        vector in a group without a role unless its name says it is a bias: it may be a gain.
        """
        for group in self.param_groups:
            if group["role"] == "gain":
                continue
            for p, name in named_params(group):
                if p.ndim <= 1 and group["role"] is None and not (name or "").endswith("bias"):
                    continue
                if p.numel() == 0:  # nothing to draw
                    continue
                m = self.norm_of(group, p)
                shape = p.shape[::-1] if group["transpose"] else (p.shape or (1,))
                W = m.init(shape, generator=generator, dtype=p.dtype, device=p.device)
                p.copy_((W.mT if group["transpose"] else W.reshape(p.shape)) * group["radius"])

    @torch.no_grad()
    def norms(self) -> dict[str, float]:
        """Every parameter's norm in its group's norm (xᵀ when ``transpose``), by name.

        Unnamed parameters are labelled ``"group{i}.param{j}"``; an empty one has norm 0.
        """
        out = {}
        for i, group in enumerate(self.param_groups):
            for j, (p, name) in enumerate(named_params(group)):
                x = p.mT if group["transpose"] else p.reshape(p.shape or (1,))
                norm = self.norm_of(group, p).norm(x) if p.numel() else 0.0
                out[name or f"group{i}.param{j}"] = float(norm)
        return out


class ScionLight(Scion):
    r"""Scion without optimizer state: the momentum lives in ``p.grad``.

    Scion keeps d_t = (1 − α)·d_{t−1} + α·g_t (d_0 = 0), i.e. d_t = α·Σ_k (1 − α)^{t−k}·g_k.
    ScionLight uses the gradient buffer instead: after each update it scales ``p.grad`` by
    (1 − α), and the next ``backward()`` *adds* g_{t+1}. So ``p.grad`` holds

        G_t = (1 − α)·G_{t−1} + g_t = Σ_k (1 − α)^{t−k}·g_k = d_t/α.

    Every LMO is scale invariant (lmo(c·d) = lmo(d) for c > 0: the maximizer of ⟨c·d, s⟩ is
    that of ⟨d, s⟩), so lmo(G_t) = lmo(d_t): the same updates as :class:`Scion` with the same α,
    and no per-parameter tensors (``state`` stays empty).

    Rules of use: the gradient buffers *are* the momentum, so :meth:`zero_grad` does nothing
    (training loops may keep calling it; ``model.zero_grad()`` would still clear the momentum,
    and so does :meth:`reset_momentum`). Gradient accumulation over micro-batches is fine (they
    add up into g_t); anything else that rescales ``p.grad`` (clipping, loss scaling) rescales
    the momentum too. To resume from a checkpoint, save the gradients with the model.

    One difference from :class:`Scion`: a parameter that gets no gradient in a step still
    moves, by lmo of its decayed momentum (and the (1 − γ) shrink or weight decay), because its
    ``p.grad`` still holds that momentum; Scion skips a parameter whose ``p.grad`` is None. Set
    ``p.grad = None`` on a parameter you freeze.
    """

    who = "ScionLight"

    def _update_directions(self, group: dict, params: list[Tensor]) -> list[Tensor]:
        return [p.grad for p in params]  # G_t = d_t/α

    def _after_update(self, p: Tensor, group: dict) -> None:
        p.grad.mul_(1 - group["momentum"])  # the next backward adds g_{t+1}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Does nothing: ``p.grad`` holds the momentum (see the class docstring)."""

    def reset_momentum(self) -> None:
        """Clear the momentum, i.e. the gradients (torch's ``zero_grad``)."""
        super().zero_grad(set_to_none=True)
