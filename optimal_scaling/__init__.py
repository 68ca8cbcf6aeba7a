"""optimal_scaling: the package behind the *optimal-scaling* course.

``import optimal_scaling as osc`` is cheap: submodules load on first use (``osc.config``,
``osc.models``, ``osc.sweep``, ...), so nothing heavy (Triton, data generation) happens at
import time. The top level holds the science, in the order of the syllabus; the course's own
machinery (self-checks, notebook pairs, exercise generation, headless runs, the course map)
lives in :mod:`optimal_scaling.course`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SUBMODULES = {
    "batch_size",
    "bench",
    "cli",
    "compute_optimal",
    "config",
    "coord_check",
    "course",
    "data",
    "ddp_demo",
    "distributed",
    "duality",
    "emergence",
    "experiments",
    "fitting",
    "graphs",
    "inference_scaling",
    "kernels",
    "measure",
    "models",
    "newton_schulz",
    "norm_transfer",
    "norms",
    "optim",
    "parametrization",
    "results",
    "roles",
    "scaling_laws",
    "sweep",
    "test_time",
    "tracking",
    "train",
}

if TYPE_CHECKING:  # pragma: no cover - for editors and type checkers only
    from optimal_scaling import (  # noqa: F401
        config,
        coord_check,
        course,
        data,
        experiments,
        models,
        parametrization,
        results,
        sweep,
        train,
    )


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"optimal_scaling.{name}")
    raise AttributeError(f"module 'optimal_scaling' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
