"""Validation shared by the optimizers: numbers in range, finite gradients, names in messages."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor


def check_number(
    who: str,
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float, or a ValueError/TypeError that says which setting is wrong.

    The bounds are inclusive unless ``low_open``/``high_open``; ``None`` means unbounded.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, Tensor) and value.numel() == 1:
            value = float(value)
        else:
            raise TypeError(f"{who}: {name} must be a number, got {value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{who}: {name} must be in {lo}, {hi}, got {value}")
    return value


def describe(p: Tensor, name: str | None = None) -> str:
    """'parameter 'head.weight' of shape (32, 16)' (or without the name when there is none)."""
    shape = tuple(p.shape)
    return f"parameter {name!r} of shape {shape}" if name else f"a parameter of shape {shape}"


def named_params(group: dict) -> Iterator[tuple[Tensor, str | None]]:
    """(parameter, name or None) for every parameter of a torch param group."""
    names = group.get("param_names") or [None] * len(group["params"])
    return zip(group["params"], names, strict=True)


def check_finite_grad(who: str, p: Tensor, grad: Tensor, name: str | None = None) -> None:
    """Raise a ValueError naming the parameter when its gradient has NaN or inf entries."""
    if not bool(torch.isfinite(grad).all()):
        bad = "NaN" if bool(torch.isnan(grad).any()) else "inf"
        raise ValueError(f"{who}: the gradient of {describe(p, name)} contains {bad} entries")
