"""Validation shared by the optimizers: numbers in range, finite gradients, names in messages."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

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


def closure_loss(closure: Callable[[], float] | None) -> float | None:
    """The loss of an optimizer's ``closure``, evaluated with gradients enabled (or None)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class CheckedOptimizer(torch.optim.Optimizer):
    """A torch optimizer whose param groups are validated as they are added.

    Subclasses set ``who`` (the name in messages) and implement ``_check_group(group)``; a group
    that fails it is removed again before the error propagates, so a failed
    ``add_param_group`` leaves the optimizer as it was. ``distributed`` and ``process_group``
    are kept on the optimizer, not in the groups: how the work is spread is no
    hyperparameter, and a process group is not plain data for ``state_dict()``.
    """

    who = ""

    def __init__(self, params, defaults: dict, distributed: bool, process_group) -> None:
        if not isinstance(distributed, bool):
            raise TypeError(f"{self.who}: distributed must be True or False, got {distributed!r}")
        self.distributed = distributed
        self.process_group = process_group
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (torch's rules), then validate its settings and parameter shapes."""
        super().add_param_group(param_group)
        try:
            self._check_group(self.param_groups[-1])
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def _check_group(self, group: dict) -> None:
        raise NotImplementedError

    _closure_loss = staticmethod(closure_loss)

    def _checks_finite(self, group: dict, p: Tensor) -> bool:
        """Whether to check ``p``'s gradient: the group's ``check_finite``, where ``None`` means
        on the CPU only (a check is one host synchronization, which a GPU step must avoid)."""
        check = group["check_finite"]
        return (not p.is_cuda) if check is None else bool(check)
