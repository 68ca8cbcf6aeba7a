"""Validation shared by the optimizers: finite gradients, names in messages (and, re-exported
from `optimal_scaling._validate`, the package's int and number checks)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from optimal_scaling._validate import check_int, check_number

__all__ = ["check_int", "check_number", "check_finite_grad", "closure_loss", "describe",
           "named_params", "NonFiniteGradient"]


def describe(p: Tensor, name: str | None = None) -> str:
    """'parameter 'head.weight' of shape (32, 16)' (or without the name when there is none)."""
    shape = tuple(p.shape)
    return f"parameter {name!r} of shape {shape}" if name else f"a parameter of shape {shape}"


def named_params(group: dict) -> Iterator[tuple[Tensor, str | None]]:
    """(parameter, name or None) for every parameter of a torch param group."""
    names = group.get("param_names") or [None] * len(group["params"])
    return zip(group["params"], names, strict=True)


class NonFiniteGradient(ValueError):
    """A gradient with NaN or inf entries reached an optimizer step (a diverging run)."""


def check_finite_grad(who: str, p: Tensor, grad: Tensor, name: str | None = None) -> None:
    """Raise a :class:`NonFiniteGradient` (a ValueError) naming the parameter when its gradient
    has NaN or inf entries."""
    if not bool(torch.isfinite(grad).all()):
        bad = "NaN" if bool(torch.isnan(grad).any()) else "inf"
        raise NonFiniteGradient(f"{who}: the gradient of {describe(p, name)} contains {bad} "
                                "entries")  # fmt: skip


def closure_loss(closure: Callable[[], float] | None) -> float | None:
    """The loss of an optimizer's ``closure``, evaluated with gradients enabled (or None)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class CheckedOptimizer(torch.optim.Optimizer):
    """A torch optimizer whose param groups are validated as they are added.

    Subclasses set ``who`` (the name in messages) and implement ``_check_settings(group)`` and
    ``_check_param(group, p, name)``; a group that fails them is removed again before the error
    propagates, so a failed ``add_param_group`` leaves the optimizer as it was. The settings are
    checked again at every step (an LR scheduler may have changed them) and after
    ``load_state_dict``. ``distributed`` and ``process_group`` are kept on the optimizer, not in
    the groups: how the work is spread is no hyperparameter, and a process group is not plain
    data for ``state_dict()``. A copied or unpickled optimizer keeps ``distributed`` and uses
    the default process group.

    :meth:`check_grads` runs before a step changes anything: a step that raises for a bad
    gradient leaves every parameter and every state as it was.
    """

    who = ""

    def __init__(self, params, defaults: dict, distributed: bool, process_group) -> None:
        if not isinstance(distributed, bool):
            raise TypeError(f"{self.who}: distributed must be True or False, got {distributed!r}")
        self.distributed = distributed
        self.process_group = process_group
        self._settings = tuple(defaults)  # (torch adds keys of its own to self.defaults)
        super().__init__(params, defaults)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["distributed"] = self.distributed  # (the process group is no picklable data)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("distributed", False)
        self.__dict__.setdefault("process_group", None)
        self.__dict__.setdefault("_settings", ())

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (torch's rules), then validate its settings and parameter shapes.

        A key that is not a setting of this optimizer but close to one (``"momentun"``) is a
        typo and raises; other extra keys (``"name"``, say) are kept as torch keeps them.
        """
        if isinstance(param_group, dict):
            known = {*self.defaults, "params", "param_names", "initial_lr"}
            for key in param_group:
                near = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.75)
                if key not in known and near:
                    raise ValueError(f"{self.who}: unknown param-group key {key!r} (did you "
                                     f"mean {near[0]!r}?); settings: "
                                     f"{', '.join(sorted(self.defaults))}")  # fmt: skip
        super().add_param_group(param_group)
        try:
            for p, name in named_params(self.param_groups[-1]):
                if not p.is_floating_point():  # complex or integer: no real update to take
                    raise TypeError(f"{self.who}: {describe(p, name)} has dtype {p.dtype}; "
                                    "the optimizer updates real floating-point tensors")
            self._check_group(self.param_groups[-1])
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    def _check_group(self, group: dict) -> None:
        """A group's settings, then each of its parameters."""
        missing = sorted(set(self._settings) - set(group))
        if missing:
            raise ValueError(f"{self.who}: a param group lacks the settings {missing} (a "
                             "checkpoint of another optimizer?)")  # fmt: skip
        self._check_settings(group)
        for p, name in named_params(group):
            self._check_param(group, p, name)

    def _check_settings(self, group: dict) -> None:
        """Raise a ValueError/TypeError naming a bad setting of ``group``."""
        raise NotImplementedError

    def _check_param(self, group: dict, p: Tensor, name: str | None) -> None:
        """Raise if ``p`` cannot be updated under ``group``'s settings."""

    def _recheck_settings(self) -> None:
        """Settings again at each step: an LR scheduler writes ``lr`` (or ``momentum``) into the
        groups without asking. A group holding a tensor setting on a GPU is skipped (reading it
        would synchronize)."""
        for group in self.param_groups:
            if not any(isinstance(v, Tensor) and v.device.type != "cpu" for v in group.values()):
                self._check_settings(group)

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's ``load_state_dict``, then every group checked as :meth:`add_param_group`
        checks it; a checkpoint that fails leaves the optimizer as it was."""
        before = super().state_dict()
        super().load_state_dict(state_dict)
        try:
            for i, group in enumerate(self.param_groups):
                try:
                    self._check_group(group)
                except (TypeError, ValueError) as err:
                    raise type(err)(f"load_state_dict: param group {i} of the checkpoint: "
                                    f"{err}") from None  # fmt: skip
        except (TypeError, ValueError):
            super().load_state_dict(before)
            raise

    def _check_common(self, group: dict) -> None:
        """Settings every checked optimizer has: ``check_finite`` and lr·weight_decay ≤ 1."""
        if group["check_finite"] is not None and not isinstance(group["check_finite"],
                                                                bool | np.bool_):  # fmt: skip
            raise TypeError(f"{self.who}: check_finite must be True, False or None, got "
                            f"{group['check_finite']!r}")  # fmt: skip
        lr, wd = group["lr"], group.get("weight_decay", 0.0)
        if not isinstance(lr, Tensor) and not isinstance(wd, Tensor) and lr * wd > 1:
            raise ValueError(f"{self.who}: lr·weight_decay = {lr * wd:g} > 1 would flip the "
                             "sign of the weights (W·(1 − lr·weight_decay))")  # fmt: skip

    def check_grads(self) -> None:
        """The settings (:meth:`_recheck_settings`); every gradient dense, and finite where
        :meth:`_checks_finite` says to check."""
        self._recheck_settings()
        for group in self.param_groups:
            for p, name in named_params(group):
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError(f"{self.who}: {describe(p, name)} has a sparse "
                                     "gradient; use a dense one (nn.Embedding(sparse=False))")
                if self._checks_finite(group, p):
                    check_finite_grad(self.who, p, p.grad, name)

    _closure_loss = staticmethod(closure_loss)

    def _checks_finite(self, group: dict, p: Tensor) -> bool:
        """Whether to check ``p``'s gradient: the group's ``check_finite``, where ``None`` means
        on the CPU only (a check is one host synchronization, which a GPU step must avoid).
        A ``meta`` tensor holds no values and is never checked."""
        if p.device.type == "meta":
            return False
        check = group["check_finite"]
        return (not p.is_cuda) if check is None else bool(check)
