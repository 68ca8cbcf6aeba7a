"""Parameter groups by role: Muon + AdamW splits, and Scion's per-layer norms.

Roles and the role → norm presets come from :mod:`optimal_scaling.roles` (declared by the
model, else guessed). Every group lists its parameters as (name, tensor) pairs, so torch keeps
``param_names`` and error messages can name the parameter.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from optimal_scaling.duality import CONV_MAPS
from optimal_scaling.optim.combined import CombinedOptimizer
from optimal_scaling.optim.muon import Muon
from optimal_scaling.roles import PRESETS, ROLES, owner, param_roles, transposed

__all__ = ["PRESETS", "muon_param_groups", "muon_with_adamw", "named_roles", "scion_groups"]

def named_roles(model: nn.Module) -> list[tuple[str, Tensor, str]]:
    """(name, parameter, role) for every distinct trainable parameter of ``model``.

    Roles from :func:`optimal_scaling.roles.param_roles` (declared, else guessed). A parameter
    shared by two modules (tied embeddings) appears once, under its first name.
    """
    roles = param_roles(model)
    return [(name, p, roles[name]) for name, p in model.named_parameters() if p.requires_grad]


def muon_param_groups(
    model: nn.Module, lr: float = 0.02, adamw_lr: float = 3e-4, weight_decay: float = 0.0
) -> tuple[list[dict], list[dict]]:
    """(Muon groups, AdamW groups) for ``model``: hidden matrices to Muon, the rest to AdamW.

    Muon gets one group (lr ``lr``); AdamW gets up to two (lr ``adamw_lr``): embeddings and
    readout with ``weight_decay``, gains and biases without. Empty groups are left out.
    """
    muon, adam_matrices, adam_vectors = [], [], []
    for name, p, role in named_roles(model):
        if role == "hidden":
            muon.append((name, p))
        elif p.ndim >= 2:
            adam_matrices.append((name, p))
        else:
            adam_vectors.append((name, p))
    muon_groups = [{"params": muon, "lr": lr, "weight_decay": weight_decay}]
    adamw_groups = [
        {"params": adam_matrices, "lr": adamw_lr, "weight_decay": weight_decay},
        {"params": adam_vectors, "lr": adamw_lr, "weight_decay": 0.0},
    ]
    return (
        [g for g in muon_groups if g["params"]],
        [g for g in adamw_groups if g["params"]],
    )


def muon_with_adamw(
    model: nn.Module,
    lr: float = 0.02,
    adamw_lr: float = 3e-4,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    optimizer: type[Muon] = Muon,
    **muon_kwargs,
) -> CombinedOptimizer:
    """Muon (or ``optimizer``, e.g. HyperP) on hidden matrices + ``torch.optim.AdamW`` on the rest.

    Groups from :func:`muon_param_groups`; ``muon_kwargs`` go to the Muon constructor
    (momentum, nesterov, steps, schedule, scale, dtype).
    """
    muon_groups, adamw_groups = muon_param_groups(model, lr, adamw_lr, weight_decay)
    members: list[torch.optim.Optimizer] = []
    if muon_groups:
        members.append(optimizer(muon_groups, lr=lr, **muon_kwargs))
    if adamw_groups:
        members.append(torch.optim.AdamW(adamw_groups, lr=adamw_lr, betas=betas, eps=eps))
    return CombinedOptimizer(members)


def _refuse_conflicting_ties(model: nn.Module) -> None:
    """A trainable tensor shared under names with different roles (or layouts) has no one norm."""
    roles = param_roles(model, every_name=True)
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if p.requires_grad:
            names.setdefault(id(p), []).append(name)
    for shared in names.values():
        kinds = {(roles[n], transposed(model, n)) for n in shared}
        if len(kinds) > 1:
            described = ", ".join(
                f"{n} ({roles[n]}{', stored transposed' if transposed(model, n) else ''})"
                for n in shared
            )
            raise ValueError(
                f"scion_groups: one trainable tensor is shared as {described}; each use wants a "
                "different norm, so untie them (tied embeddings?) or freeze the tensor"
            )


def _conv_norm(model: nn.Module, name: str, p: Tensor) -> str:
    """The conv map of a hidden weight with more than two dims; only a conv layer's qualifies."""
    if isinstance(owner(model, name), nn.modules.conv._ConvNd) and p.ndim in CONV_MAPS:
        return CONV_MAPS[p.ndim]
    raise ValueError(
        f"scion_groups: {name} is a hidden tensor of shape {tuple(p.shape)} but not a conv "
        f"layer's weight; no named norm fits it. Leave it out and give it its own Scion group, "
        "e.g. norm=Spectral() for a stack of matrices"
    )


def _check_role_dict(what: str, values: dict | None, default: float) -> dict[str, float]:
    values = dict(values or {})
    unknown = set(values) - set(ROLES)
    if unknown:
        raise ValueError(
            f"scion_groups: unknown roles in {what}: {sorted(unknown)}; valid: {', '.join(ROLES)}"
        )
    return {role: float(values.get(role, default)) for role in ROLES}


def scion_groups(
    model: nn.Module,
    preset: str = "colnorm-spectral-sign",
    lr: float = 1e-3,
    lr_multipliers: dict[str, float] | None = None,
    radii: dict[str, float] | None = None,
    spectral_method: str = "newton_schulz",
) -> list[dict]:
    """Scion param groups, one per (role, norm, transposed) (roles declared by the model or
    guessed; a conv and a linear layer of one role get two groups).

    ``preset`` picks each role's norm (:data:`PRESETS`): input → ColNorm, hidden → Spectral
    (``spectral_method``: "newton_schulz" or "svd"; a Conv1d/2d/3d weight → its ConvSpectral map;
    any other hidden tensor with more than two dims raises), output → Sign
    or RowNorm, gains and biases → BiasRMS. Each role's lr is ``lr·lr_multipliers[role]`` and its
    radius ``radii[role]`` (both default to 1). ``nn.Embedding`` weights, stored (vocab, d),
    get ``transpose=True`` so that ColNorm normalizes each token's vector. The groups carry
    ``role`` (so :meth:`Scion.init` leaves gains at 1). A trainable tensor shared under names
    with different roles (tied embeddings: input and output) raises, since each wants a
    different norm; sharing within one role, or a frozen tied tensor, is fine.
    """
    if preset not in PRESETS:
        raise ValueError(f"scion_groups: unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    _refuse_conflicting_ties(model)
    mults = _check_role_dict("lr_multipliers", lr_multipliers, 1.0)
    radius = _check_role_dict("radii", radii, 1.0)
    groups: dict[tuple[str, str, bool], dict] = {}
    for name, p, role in named_roles(model):
        norm = PRESETS[preset][role]
        if role == "hidden" and p.ndim > 2:
            norm = _conv_norm(model, name, p)
        transpose = transposed(model, name)
        key = (role, norm, transpose)
        if key not in groups:
            groups[key] = {
                "params": [],
                "lr": lr * mults[role],
                "radius": radius[role],
                "role": role,
                "norm": norm,
                "norm_kwargs": {"method": spectral_method} if "spectral" in norm else {},
                "transpose": transpose,
            }
        groups[key]["params"].append((name, p))
    return list(groups.values())
