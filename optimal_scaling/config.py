"""Run-time configuration: fast mode, device choice, seeding, and an environment report.

Everything here reads the environment when called (never at import time), so a notebook or
test can change a variable and see the effect at once.

Environment variables
---------------------
``OPTIMAL_SCALING_FAST``
    ``1``/``0`` (also ``true``/``false``, ``yes``/``no``, ``on``/``off``). Fast mode shrinks
    every experiment so a notebook runs in about a minute on 2 CPU cores. Unset or empty: on
    when ``CI`` is set to anything but empty, ``0``, ``false``, ``no`` or ``off``; else off.
``OPTIMAL_SCALING_DEVICE``
    Force a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``). Unset: cuda > mps > cpu.
``OPTIMAL_SCALING_STRICT``
    Self-checks raise instead of printing a failure (see :mod:`optimal_scaling.course.checks`).
"""

from __future__ import annotations

import os
import platform
import random
import sys
from typing import TypeVar

import numpy as np
import torch

from optimal_scaling._validate import check_int

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_flag(name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (unset or empty: ``default``); an unrecognised
    value is an error, not a guess."""
    raw = os.environ.get(name)
    value = (raw or "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"environment variable {name}={raw!r} is not a boolean; use one of "
        f"{sorted(_TRUE)} or {sorted(_FALSE)}"
    )


def fast_mode() -> bool:
    """True when experiments should be shrunk (``OPTIMAL_SCALING_FAST``, default: ``CI`` set)."""
    ci = os.environ.get("CI", "").strip().lower()  # CI services set CI=true (or 1, or a name)
    return env_flag("OPTIMAL_SCALING_FAST", default=bool(ci) and ci not in _FALSE)


def strict_mode() -> bool:
    """True when self-checks must raise on failure (``OPTIMAL_SCALING_STRICT``)."""
    return env_flag("OPTIMAL_SCALING_STRICT", default=False)


def choose(fast: T, full: T) -> T:
    """Pick the fast-mode or the full-mode value of a setting: ``steps = choose(100, 2000)``."""
    return fast if fast_mode() else full


def _available(device: torch.device) -> bool:
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        index = device.index or 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    if device.type == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return False


def device() -> torch.device:
    """The device experiments run on: ``OPTIMAL_SCALING_DEVICE`` if set, else cuda > mps > cpu.

    Notebooks call this instead of hard-coding ``.cuda()``, so every lecture runs on a laptop
    CPU and uses a GPU when one is present.
    """
    override = os.environ.get("OPTIMAL_SCALING_DEVICE", "").strip()
    if override:
        try:
            dev = torch.device(override)
        except RuntimeError as err:
            raise ValueError(
                f"OPTIMAL_SCALING_DEVICE={override!r} is not a device name "
                "(expected cpu, cuda, cuda:N or mps)"
            ) from err
        if not _available(dev):
            raise RuntimeError(f"OPTIMAL_SCALING_DEVICE={override!r} is not available here")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way.

    The returned generator lets a function draw its own reproducible stream without
    touching the global state again.
    """
    seed = check_int("seed_everything", "seed", seed, low=0)
    if seed >= 2**64:  # torch's generators hold 64 bits; checked before anything is reseeded
        raise ValueError(f"seed_everything: seed must be < 2**64, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return "not installed"
    return str(getattr(mod, "__version__", "unknown"))


def cpu_name() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``), else what :mod:`platform` knows
    (often only the architecture, such as ``x86_64`` or ``arm``)."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment() -> dict[str, str]:
    """A short report of what this machine offers the course (versions, device, modes)."""
    dev = device()
    if dev.type == "cuda":
        accel = torch.cuda.get_device_name(dev)
    elif dev.type == "mps":
        accel = "Apple GPU (MPS)"
    else:
        accel = f"CPU ({cpu_name()}, {os.cpu_count()} cores)"
    from optimal_scaling import __version__

    return {
        "optimal_scaling": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "numpy": np.__version__,
        "device": str(dev),
        "accelerator": accel,
        "fast mode": str(fast_mode()),
        "strict self-checks": str(strict_mode()),
    }
