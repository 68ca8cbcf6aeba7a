"""Self-checks for lecture 00 (welcome & scale)."""

from __future__ import annotations

from collections.abc import Callable

from optimal_scaling.course.checks import CheckResult, check
from optimal_scaling.models import MLP

_MLP_CASES = [
    {"d_in": 3, "width": 4, "d_out": 2, "depth": 2, "bias": True},
    {"d_in": 32, "width": 64, "d_out": 1, "depth": 3, "bias": True},
    {"d_in": 10, "width": 128, "d_out": 10, "depth": 5, "bias": False},
    {"d_in": 784, "width": 1024, "d_out": 10, "depth": 4, "bias": True},
]


def _num_params(d_in: int, width: int, d_out: int, depth: int, bias: bool) -> int:
    # The reference counts the tensors of a real model, not a formula.
    return MLP(d_in, width, d_out, depth=depth, bias=bias).num_params()


def check_num_params(fn: Callable[..., int]) -> CheckResult:
    """``fn(d_in, width, d_out, depth, bias)`` must return the MLP's parameter count."""
    return check(
        "parameter count of an MLP",
        fn,
        _num_params,
        _MLP_CASES,
        hint="add up every Linear layer's weights and biases; depth counts all the layers",
        mistakes={
            "with bias=True every layer also has one bias per output": lambda **k: _num_params(
                **dict(k, bias=False)),
            "depth counts every layer, so there are depth − 2 hidden width×width layers":
                lambda d_in, width, d_out, depth, bias: _num_params(d_in, width, d_out,
                                                                    depth + 1, bias),
        },
    )


def _training_flops(d_in: int, width: int, d_out: int, depth: int, bias: bool, samples: int) -> int:
    return 6 * _num_params(d_in, width, d_out, depth, bias) * samples


def check_training_flops(fn: Callable[..., int]) -> CheckResult:
    """``fn(d_in, width, d_out, depth, bias, samples)`` ≈ 6·N·D training FLOPs."""
    cases = [
        dict(case, samples=s) for case, s in zip(_MLP_CASES, [1, 128, 1000, 4096], strict=True)
    ]
    return check(
        "training compute C ≈ 6·N·D",
        fn,
        _training_flops,
        cases,
        hint="count the forward and the backward pass, per parameter and per sample",
        mistakes={"the backward pass costs about twice the forward: 2 + 4 = 6 FLOPs per "
                  "parameter and sample": lambda samples, **k: 2 * _num_params(**k) * samples},
    )
