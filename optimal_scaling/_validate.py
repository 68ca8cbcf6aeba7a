"""Argument checks shared across the package: one wording for every "must be an int ≥ …" and
"must be a number in …" error, so a message reads the same wherever it comes from."""

from __future__ import annotations

import math
import numbers

from torch import Tensor


def check_int(who: str, name: str, value: object, low: int = 0, note: str = "") -> int:
    """``value`` as an int ≥ ``low``, or a ValueError ``"{who}: {name} must be an int ≥ {low}
    {note}, got {value!r}"``. Numpy integers count; bools, floats (even 3.0) and strings do not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        note = f" {note}" if note else ""
        raise ValueError(f"{who}: {name} must be an int ≥ {low}{note}, got {value!r}")
    return int(value)


def check_number(
    who: str,
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float, or a ValueError/TypeError that says which setting is wrong.

    The bounds are inclusive unless ``low_open``/``high_open``; ``None`` means unbounded. Numpy
    numbers and one-element tensors count; bools do not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy numbers count
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
