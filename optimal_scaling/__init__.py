"""optimal_scaling: the package behind the *optimal-scaling* course.

``import optimal_scaling as osc`` is cheap: submodules load on first use (``osc.config``,
``osc.checks``, ``osc.models``, ...), so nothing heavy (Triton, data generation) happens at
import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SUBMODULES = {
    "bench",
    "checks",
    "cli",
    "config",
    "coord_check",
    "course",
    "data",
    "ddp_demo",
    "distributed",
    "duality",
    "execute",
    "exercises",
    "experiments",
    "kernels",
    "measure",
    "models",
    "newton_schulz",
    "norms",
    "notebooks",
    "optim",
    "parametrization",
    "results",
    "roles",
    "sweep",
    "tracking",
    "train",
}

if TYPE_CHECKING:  # pragma: no cover - for editors and type checkers only
    from optimal_scaling import (  # noqa: F401
        checks,
        config,
        coord_check,
        course,
        data,
        exercises,
        experiments,
        models,
        notebooks,
        parametrization,
        results,
        train,
    )


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"optimal_scaling.{name}")
    raise AttributeError(f"module 'optimal_scaling' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
