"""Optimizers of lecture 05: Muon, Scion (and ScionLight), HyperP, and their param groups.

Modules, one job each:

* :mod:`~optimal_scaling.optim.muon`: :class:`Muon` (momentum → Newton–Schulz → shape scale);
* :mod:`~optimal_scaling.optim.hyperp`: :class:`HyperP` (Muon on the Frobenius sphere) and
  :func:`weight_decay_gap` (weight decay is a no-op there to first order);
* :mod:`~optimal_scaling.optim.scion`: :class:`Scion` / :class:`ScionLight` (one norm and LMO
  per layer, unconstrained or constrained, norm-matched :meth:`Scion.init`);
* :mod:`~optimal_scaling.optim.combined`: :class:`CombinedOptimizer` (Muon + AdamW as one);
* :mod:`~optimal_scaling.optim.groups`: parameter groups by role
  (:func:`muon_param_groups`, :func:`muon_with_adamw`, :func:`scion_groups`).

Data-parallel runs: ``Muon(..., distributed=True)`` (also HyperP, and ``muon_with_adamw(...,
distributed=True)``) and ``Scion(..., distributed=True)`` split the orthogonalizations over the
ranks; see :mod:`optimal_scaling.distributed`.
"""

from optimal_scaling.optim.combined import CombinedOptimizer
from optimal_scaling.optim.groups import (
    PRESETS,
    muon_param_groups,
    muon_with_adamw,
    named_roles,
    scion_groups,
)
from optimal_scaling.optim.hyperp import HyperP, weight_decay_gap
from optimal_scaling.optim.muon import SCALES, Muon, orthogonalized_update, shape_scale
from optimal_scaling.optim.scion import NORM_CHOICES, ROLE_NORMS, ROLES, Scion, ScionLight, lmo

__all__ = [
    "NORM_CHOICES",
    "PRESETS",
    "ROLES",
    "ROLE_NORMS",
    "SCALES",
    "CombinedOptimizer",
    "HyperP",
    "Muon",
    "Scion",
    "ScionLight",
    "lmo",
    "muon_param_groups",
    "muon_with_adamw",
    "named_roles",
    "orthogonalized_update",
    "scion_groups",
    "shape_scale",
    "weight_decay_gap",
]
