"""Shared test setup: markers, and a clean environment for the mode flags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# Without CUDA the Triton kernels run in Triton's CPU interpreter. Triton fixes that mode when
# it is first imported, so it is chosen here, before any test can import it.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_mode_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests start from a neutral environment; a test sets what it needs."""
    for var in ("OPTIMAL_SCALING_FAST", "OPTIMAL_SCALING_STRICT", "OPTIMAL_SCALING_DEVICE", "CI"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def root() -> Path:
    return ROOT
