"""Self-checks for lecture 01 (hyperparameters and μP)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from optimal_scaling.course.checks import (
    FAILED,
    NOT_ATTEMPTED,
    CheckResult,
    check,
    check_value,
    report,
)
from optimal_scaling.models import MLP
from optimal_scaling.parametrization import Parametrization

# (role, fan_in, fan_out, base_fan_in, base_fan_out, optimizer)
_LAYER_CASES = [
    ("input", 16, 256, 16, 64, "adam"),
    ("hidden", 256, 256, 64, 64, "adam"),
    ("output", 256, 10, 64, 10, "adam"),
    ("input", 16, 1024, 16, 64, "sgd"),
    ("hidden", 1024, 1024, 64, 64, "sgd"),
    ("output", 1024, 10, 64, 10, "sgd"),
    ("hidden", 64, 64, 64, 64, "adam"),
    # r_in ≠ r_out, and input/output fans that differ from the base: these tell fan_in from
    # fan_out and one role's rule from another's (the cases above cannot)
    ("hidden", 256, 1024, 64, 128, "adam"),
    ("hidden", 512, 128, 128, 64, "sgd"),
    ("input", 32, 512, 16, 64, "adam"),
    ("input", 32, 512, 16, 64, "sgd"),
    ("output", 512, 20, 64, 10, "adam"),
    ("output", 512, 20, 64, 10, "sgd"),
]


def _mup_reference(role, fan_in, fan_out, base_fan_in, base_fan_out, optimizer):
    """μP, Table 3 form, written from the table (the package's rules agree on every shape an
    MLP can have: a test compares them)."""
    r_in, r_out = fan_in / base_fan_in, fan_out / base_fan_out
    std = base_fan_in**-0.5 / r_in if role == "output" else fan_in**-0.5
    lr = {"adam": {"input": 1.0, "hidden": 1 / r_in, "output": 1 / r_in},
          "sgd": {"input": r_out, "hidden": 1.0, "output": 1 / r_in}}[optimizer][role]
    return {"init_std": std, "lr_mult": lr}


def mup_from_package(role, fan_in, fan_out, base_fan_in, base_fan_out, optimizer):
    """The same numbers read off :class:`Parametrization` for an MLP with these shapes (an
    MLP's hidden layers are square and its input/output fans fixed, so not every case)."""
    d_in, width, d_out = {
        "input": (fan_in, fan_out, 10),
        "hidden": (16, fan_in, 10),
        "output": (16, fan_in, fan_out),
    }[role]
    base_width = {"input": base_fan_out, "hidden": base_fan_in, "output": base_fan_in}[role]
    par = Parametrization("mup", base_width=base_width, optimizer=optimizer)
    name = {"input": "input.weight", "hidden": "hidden.0.weight", "output": "output.weight"}[role]
    rule = next(r for r in par.rules(MLP(d_in, width, d_out, depth=3)) if r.name == name)
    return {"init_std": rule.init_std, "lr_mult": rule.lr_mult}


def check_mup_multipliers(fn: Callable[..., dict]) -> CheckResult:
    """``fn(role, fan_in, fan_out, base_fan_in, base_fan_out, optimizer)`` →
    ``{"init_std": ..., "lr_mult": ...}`` under μP (Table 3 form)."""
    keys = ("role", "fan_in", "fan_out", "base_fan_in", "base_fan_out", "optimizer")
    return check(
        "μP init std and LR multiplier",
        fn,
        _mup_reference,
        [dict(zip(keys, case, strict=True)) for case in _LAYER_CASES],
        hint="write r_in = fan_in/base_fan_in and r_out = fan_out/base_fan_out, start from the "
        "base model's std 1/√base_fan_in and read the μP table's row for this role",
        mistakes={
            "under μP (Table 3) the readout's init shrinks by an extra 1/√r_in beyond 1/√fan_in":
                lambda **k: dict(_mup_reference(**k), init_std=k["fan_in"] ** -0.5),
            "those are the other optimizer's learning-rate rules (Adam and SGD differ)":
                lambda **k: dict(_mup_reference(**k), lr_mult=_mup_reference(
                    **dict(k, optimizer="sgd" if k["optimizer"] == "adam" else "adam"))[
                    "lr_mult"]),
        },
    )


def _coord_stats(h: torch.Tensor, h0: torch.Tensor) -> tuple[float, float]:
    h, h0 = h.float(), h0.float()
    return h.abs().mean().item(), (h - h0).abs().mean().item()


def check_coord_stats(fn: Callable[..., tuple[float, float]]) -> CheckResult:
    """``fn(h, h0)`` → (mean |h|, mean |h − h0|)."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for shape in [(4, 8), (2, 3, 16), (1, 1)]:
        h0 = torch.randn(shape, generator=g)
        cases.append({"h": h0 + 0.1 * torch.randn(shape, generator=g), "h0": h0})
    cases.append({"h": cases[0]["h0"], "h0": cases[0]["h0"]})
    return check("coordinate-check statistics", fn, _coord_stats, cases,
                 hint="average a size over every coordinate (all batch and feature entries)",
                 mistakes={"take the absolute value before averaging: signed entries cancel":
                           lambda h, h0: (h.float().mean().item(),
                                          (h.float() - h0.float()).mean().item())})


def check_slope_prediction(predict: Callable[[], float], measured: float) -> CheckResult:
    """Compare the slope ``predict()`` returns with the measured one (tolerance 0.25)."""
    name = "predicted slope vs measurement"
    try:
        predicted = predict()
    except NotImplementedError:
        return report(CheckResult(name, NOT_ATTEMPTED, "not attempted yet: replace the "
                                  "NotImplementedError stub with your code"))  # fmt: skip
    except Exception as err:  # noqa: BLE001 - any learner error is a failed check
        return report(CheckResult(name, FAILED, f"predict() raised {type(err).__name__}: "
                                  f"{err}"))  # fmt: skip
    return check_value(
        name,
        predicted,
        measured,
        atol=0.25,
        rtol=0.0,
        hint="under SP with Adam the first update moves every weight by ±lr, in the direction "
        "of the gradient, and a hidden unit sums n such terms",
    )
