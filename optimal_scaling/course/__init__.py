"""The course's own machinery, apart from the science the lectures teach.

This module: the course map (one row per lecture, and where its three notebooks live; the
README's syllabus table and lecture 00's course map are checked against it). Submodules, loaded
on first use: :mod:`~optimal_scaling.course.checks` (self-checks for the exercises),
:mod:`~optimal_scaling.course.notebooks` (Jupytext pairs), :mod:`~optimal_scaling.course.exercises`
(exercises generated from solutions), :mod:`~optimal_scaling.course.execute` (headless runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

FOLDERS = ("lectures", "exercises", "solutions")

_SUBMODULES = ("checks", "notebooks", "exercises", "execute")


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"optimal_scaling.course.{name}")
    raise AttributeError(f"module 'optimal_scaling.course' has no attribute {name!r}")


@dataclass(frozen=True)
class Lecture:
    number: int
    slug: str
    title: str
    demonstrates: str

    @property
    def stem(self) -> str:
        return f"{self.number:02d}_{self.slug}"


SYLLABUS: tuple[Lecture, ...] = (
    Lecture(
        0,
        "welcome",
        "Welcome & scale",
        "environment check, course map, self-checks; width/data/compute in one experiment",
    ),
    Lecture(
        1,
        "mup",
        "Hyperparameters & μP",
        "abc-parametrizations, coordinate checks SP vs μP, learning-rate transfer",
    ),
    Lecture(
        2,
        "spectral",
        "The spectral condition",
        "‖W‖ and ‖ΔW‖ = Θ(√(n_out/n_in)), natural norms, alignment ratios",
    ),
    Lecture(
        3,
        "duality",
        "Modular duality",
        "induced operator norms, duality maps, steepest descent under a norm",
    ),
    Lecture(
        4,
        "newton_schulz",
        "Newton–Schulz",
        "odd polynomials on singular values, Muon's quintic, Polar Express, GPU kernel",
    ),
    Lecture(
        5,
        "muon_scion",
        "Muon & Scion",
        "LMO optimizers, per-layer norms and inits, HyperP, distributed orthogonalization",
    ),
    Lecture(
        6,
        "batch_size",
        "Data scaling & critical batch size",
        "gradient noise scale, B_crit, η*(B) for SGD and Adam",
    ),
    Lecture(
        7,
        "norm_transfer",
        "Norm transfer",
        "optimal (η, B) keep the output layer's RMS→∞ norm near 2^7 across data size",
    ),
    Lecture(
        8,
        "scaling_laws",
        "Scaling laws",
        "L(N, D) fits, Chinchilla's three approaches, compute-optimal N*(C), D*(C)",
    ),
    Lecture(
        9,
        "beyond_training",
        "Beyond training (optional)",
        "inference-aware scaling, emergence vs smooth metrics, test-time scaling",
    ),
)


def repo_root() -> Path | None:
    """The course checkout this package was installed from (editable install), if any."""
    root = Path(__file__).resolve().parents[2]  # optimal_scaling/course/__init__.py
    return root if (root / "lectures").is_dir() else None


def course_map(root: Path | None = None) -> pd.DataFrame:
    """One row per lecture with its title, what it demonstrates, and whether it exists yet."""
    root = root if root is not None else repo_root()
    rows = []
    for lec in SYLLABUS:
        ready = root is not None and all(
            (root / folder / f"{lec.stem}.ipynb").exists() for folder in FOLDERS
        )
        rows.append(
            {
                "#": f"{lec.number:02d}",
                "lecture": lec.title,
                "demonstrates": lec.demonstrates,
                "status": "ready" if ready else "coming",
                "notebook": f"lectures/{lec.stem}.ipynb",
            }
        )
    return pd.DataFrame(rows)
