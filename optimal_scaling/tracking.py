r"""Norm tracking during training: each layer group's weights and updates in its own norm.

Scion and Muon control every layer in the norm of its LMO, so that is the norm to watch:

    role     norm (default)      ‖W‖                                 cost
    input    ℓ1→RMS  (colnorm)   max_j ‖col_j‖_RMS                   one pass
    hidden   RMS→RMS (spectral)  √(d_in/d_out)·σ_max(W)              5 warm-started mat-vecs
    output   RMS→∞   (rownorm)   max_i √d_in·‖row_i‖₂                one pass
    gain     RMS     (bias_rms)  ‖g‖₂/√d                             one pass
    bias     RMS     (bias_rms)  ‖b‖₂/√d                             one pass

σ_max comes from :class:`optimal_scaling.norms.PowerIteration`, warm-started from the vector
it found at the previous tracked step, so the spectral norm costs 2·iters + 1 matrix-vector
products (5 at the default ``power_iters=2``) instead of an SVD. Roles, the role → norm table
and the embedding transposition come from
:mod:`optimal_scaling.roles`, as for the optimizers' groups.

Every ``every`` steps the tracker records ‖W‖ and the norm of the last step's update
‖ΔW‖ = ‖W_t − W_{t−1}‖ (it copies the weights one step before a tracked step, and only
then). Used as the ``callback`` of :func:`optimal_scaling.train.train`, it adds the columns
``W[role]`` and ``dW[role]`` (the largest norm in the group: the modular norm of a group is
the max over its layers) to the training record; :attr:`NormTracker.table` keeps one tidy row
per parameter and tracked step. For unconstrained Scion, ‖ΔW‖ = γ·ρ exactly in the group's
norm (the LMO has unit norm): a direct check of an implementation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch
from torch import Tensor, nn

from optimal_scaling import norms as opnorms
from optimal_scaling._validate import check_int
from optimal_scaling.roles import PRESETS, param_roles, transposed

#: The norm tracked for each role: the norm-transfer setting (output in RMS→∞).
DEFAULT_NORMS: dict[str, str] = PRESETS["colnorm-spectral-rownorm"]

_NORM_NAMES = ("colnorm", "spectral", "rownorm", "sign", "bias_rms")


class NormTracker:
    """Record each layer group's weight and update norms every ``every`` steps.

    Unconstrained Scion moves every layer by γ·ρ in its norm, here 0.02:

    >>> from optimal_scaling.data import MarkovLanguage
    >>> from optimal_scaling.models import GPT
    >>> from optimal_scaling.optim import Scion, scion_groups
    >>> from optimal_scaling.train import train
    >>> _ = torch.manual_seed(0)
    >>> model = GPT(vocab_size=32, context=8, width=32, depth=1, norm_before_linear=True)
    >>> groups = scion_groups(model, "colnorm-spectral-rownorm", lr=0.02, spectral_method="svd")
    >>> opt = Scion(groups, momentum=1.0)
    >>> lang, g = MarkovLanguage(vocab_size=32, seed=0), torch.Generator().manual_seed(1)
    >>> tracker = NormTracker(model, every=2)
    >>> result = train(model, opt, lambda: lang.batch("train", 8, 8, g), steps=4,
    ...                callback=tracker, progress=False)
    >>> result.history[["step", "dW[input]", "dW[output]"]].dropna().round(4).values.tolist()
    [[2.0, 0.02, 0.02], [4.0, 0.02, 0.02]]
    >>> tracker.table.step.unique().tolist()  # one row per (step, parameter)
    [2, 4]

    ``preset`` names the role → norm table (:data:`optimal_scaling.roles.PRESETS`; default
    ``"colnorm-spectral-rownorm"``, the norm-transfer setting): to watch a Scion run, pass the
    preset its groups were built with, so that ‖ΔW‖ = γ·ρ holds in the tracked norms (Scion's
    own default is ``"colnorm-spectral-sign"``). ``norms`` overrides single roles (``{"output":
    "sign"}``); names: colnorm, spectral, rownorm, sign (d_in·max|W_ij|), bias_rms. A conv
    weight is measured as its flattened out × (in·kh·kw) matrix, not in Scion's ConvSpectral
    norm; an empty parameter has norm 0. ``power_iters`` is the number of warm-started
    power-iteration steps per spectral norm; the first estimate of each matrix, with no warm
    start yet, takes ``cold_iters``.
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 10,
        norms: Mapping[str, str] | None = None,
        preset: str | None = None,
        power_iters: int = 2,
        cold_iters: int = 20,
    ) -> None:
        for name, value in (("every", every), ("power_iters", power_iters),
                            ("cold_iters", cold_iters)):  # fmt: skip
            check_int("NormTracker", name, value, low=1)
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"NormTracker: unknown preset {preset!r}; choose from "
                             f"{', '.join(PRESETS)}")  # fmt: skip
        base = DEFAULT_NORMS if preset is None else PRESETS[preset]
        misspelt = sorted(set(norms or {}) - set(base))
        if misspelt:
            raise ValueError(f"NormTracker: unknown role(s) {misspelt} in norms; the roles are "
                             f"{', '.join(base)}")  # fmt: skip
        chosen = {**base, **(norms or {})}
        for role, name in chosen.items():
            if name not in _NORM_NAMES:
                raise ValueError(
                    f"NormTracker: unknown norm {name!r} for role {role!r}; choose from "
                    f"{', '.join(_NORM_NAMES)}"
                )
        self.every, self.power_iters, self.cold_iters = every, power_iters, cold_iters
        self.norms = chosen
        roles = param_roles(model)
        params = dict(model.named_parameters())
        unknown = {r for r in roles.values() if r not in chosen}
        if unknown:
            raise ValueError(f"NormTracker: no norm for roles {sorted(unknown)}; pass norms=")
        self.params = {
            name: (params[name], role, transposed(model, name)) for name, role in roles.items()
        }
        self._power = opnorms.PowerIteration(iters=power_iters, seed=0)
        self._rows: list[dict] = []
        # with every == 1, step 1 is tracked: its "before" is now (build after any re-init)
        self._previous: dict[str, Tensor] = self._snapshot() if every == 1 else {}

    @property
    def table(self) -> pd.DataFrame:
        """One row per tracked step and parameter: step, param, role, norm, weight, update."""
        return pd.DataFrame(self._rows)

    @torch.no_grad()
    def norm(self, name: str, W: Tensor, what: str = "weight") -> float:
        """The norm of ``W`` for the parameter ``name`` (its role's norm, cheap estimates).

        ``what`` ("weight" or "update") keeps a separate warm start for each.
        """
        _, role, transpose = self.params[name]
        kind = self.norms[role]
        W = W.detach().float()
        if W.numel() == 0:  # a map from or to a 0-dimensional space: every norm is 0
            return 0.0
        if not bool(torch.isfinite(W).all()):  # a diverging run: record NaN, let it be judged
            return math.nan
        if W.ndim > 2:
            W = W.flatten(1)
        if transpose and W.ndim == 2:
            W = W.mT
        if kind == "bias_rms" or W.ndim == 1:
            return (W.norm() / math.sqrt(W.numel())).item()
        if kind == "spectral":
            key = (name, what)
            cold = self._power.vector(key) is None  # a first estimate starts from scratch
            iters = max(self.cold_iters, self.power_iters) if cold else self.power_iters
            return self._power.rms_to_rms(W, key=key, iters=iters).item()
        if kind == "colnorm":
            return opnorms.l1_to_rms(W).item()
        if kind == "rownorm":
            return opnorms.rms_to_inf(W).item()
        return (W.shape[-1] * W.abs().max()).item()  # sign: the scaled ℓ1→ℓ∞ norm

    @torch.no_grad()
    def group_norms(self, exact: bool = True) -> dict[str, float]:
        """``{"W[role]": largest weight norm in the group}`` now, without touching the history.

        ``exact=True`` takes spectral norms from an SVD instead of the warm-started power
        iteration: a reading that does not depend on earlier calls (sweeps read it at each
        horizon, and a resumed run must read the same numbers as an uninterrupted one).
        """
        out: dict[str, float] = {}
        for name, (p, role, transpose) in self.params.items():
            if exact and self.norms[role] == "spectral" and p.ndim >= 2 and p.numel():
                W = p.detach().float().flatten(1)
                finite = bool(torch.isfinite(W).all())
                value = opnorms.rms_to_rms(W.mT if transpose else W).item() if finite else math.nan
            else:
                value = self.norm(name, p)
            key = f"W[{role}]"
            out[key] = _largest([out.get(key, -math.inf), value])
        return out

    @torch.no_grad()
    def __call__(self, step: int, model: nn.Module | None = None) -> dict[str, float]:
        """The ``train`` callback: after the optimizer step ``step``."""
        out: dict[str, float] = {}
        if step % self.every == 0:
            groups: dict[str, list[tuple[float, float, bool]]] = {}
            for name, (p, role, _) in self.params.items():
                weight = self.norm(name, p)
                before = self._previous.pop(name, None)
                update = self.norm(name, p - before, "update") if before is not None else math.nan
                self._rows.append(
                    {"step": step, "param": name, "role": role, "norm": self.norms[role],
                     "weight": weight, "update": update}
                )  # fmt: skip
                groups.setdefault(role, []).append((weight, update, before is not None))
            for role, values in groups.items():
                out[f"W[{role}]"] = _largest([w for w, _, _ in values])
                # over the updates measured (a NaN one, from a diverged layer, stays NaN)
                updates = [u for _, u, measured in values if measured]
                out[f"dW[{role}]"] = _largest(updates) if updates else math.nan
        if (step + 1) % self.every == 0:  # the next step is tracked: keep today's weights
            self._previous = self._snapshot()
        return out

    def _snapshot(self) -> dict[str, Tensor]:
        return {name: p.detach().clone() for name, (p, _, _) in self.params.items()}


def _largest(values: list[float]) -> float:
    """The maximum, NaN if any value is NaN (Python's max would skip a NaN after the first)."""
    return math.nan if any(math.isnan(v) for v in values) else max(values)
