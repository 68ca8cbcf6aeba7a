"""Self-checks for the exercise notebooks.

A self-check runs the learner's function and the package's reference on a few small inputs and
prints one line:

* ``✅ name: correct on 4 cases``
* ``❌ name: case 2 (width=8): expected 1.5, got 3.0. Hint: ...``
* ``⏳ name: not attempted yet: replace the NotImplementedError stub with your code``

In strict mode (``OPTIMAL_SCALING_STRICT=1``, set by the test-suite when it executes lectures
and solutions) anything but a pass raises :class:`CheckFailed`, so a broken solution fails CI.
Exercise notebooks run without strict mode: their stubs report "not attempted" and the
notebook still runs to the end.

Each lecture's checks live in a submodule (``checks.lecture00``, ...) and are thin wrappers
around :func:`check` with the right reference and cases.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from optimal_scaling.config import strict_mode

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
_ICON = {PASSED: "✅", FAILED: "❌", NOT_ATTEMPTED: "⏳"}


class CheckFailed(AssertionError):
    """Raised by a self-check in strict mode when the learner's answer is not right."""


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one self-check: ``status`` is "passed", "failed" or "not attempted"."""

    name: str
    status: str
    message: str

    def __bool__(self) -> bool:
        return self.status == PASSED

    def __str__(self) -> str:
        return f"{_ICON[self.status]} {self.name}: {self.message}"

    def _ipython_display_(self) -> None:
        """Show nothing as a cell's value: :func:`check` has already printed the result line."""


def _numbers(items: Any) -> Any:
    """A (nested) list of numbers, one-element tensors and arrays as plain Python numbers; None
    when anything else is in it (None, text, a longer tensor)."""
    if isinstance(items, list | tuple):
        out = [_numbers(v) for v in items]
        return None if any(v is None for v in out) else out
    one = ((isinstance(items, torch.Tensor) and items.numel() == 1)
           or (isinstance(items, np.ndarray) and items.size == 1))  # fmt: skip
    if one:
        return items.item()  # (a tensor that requires grad counts too)
    if isinstance(items, numbers.Number) and not isinstance(items, bool):
        return items
    return None


def compare(expected: Any, got: Any, rtol: float = 1e-5, atol: float = 1e-6) -> str | None:
    """Return ``None`` if ``got`` matches ``expected``, else a short reason why not.

    Numbers and tensors are compared with ``|got − expected| ≤ atol + rtol·|expected|``;
    integers exactly; sequences and mappings element by element.
    """
    if isinstance(expected, torch.Tensor | np.ndarray):
        exp = torch.as_tensor(expected).detach().cpu()
        if isinstance(got, list | tuple):  # the right numbers as a (nested) list count too
            flat = _numbers(got)
            if flat is None:
                return (f"expected an array (numpy or torch) of shape {tuple(exp.shape)}, got "
                        f"a {type(got).__name__} that holds something other than numbers")
            try:
                got = torch.as_tensor(np.asarray(flat, dtype=float if exp.is_floating_point()
                                                 else None))  # fmt: skip
            except (TypeError, ValueError, RuntimeError):  # ragged: not an array
                pass
        if not isinstance(got, torch.Tensor | np.ndarray):
            return (f"expected an array (numpy or torch) of shape {tuple(exp.shape)}, got "
                    f"{type(got).__name__}")
        g = torch.as_tensor(got).detach().cpu()
        if g.shape != exp.shape:
            return f"expected shape {tuple(exp.shape)}, got shape {tuple(g.shape)}"
        if exp.is_floating_point() or g.is_floating_point():
            g64, e64 = g.double(), exp.double()
            if torch.isnan(g64).any() and not torch.isnan(e64).any():
                return "the result contains NaN"
            if not torch.allclose(g64, e64, rtol=rtol, atol=atol, equal_nan=True):
                gap = torch.where(g64 == e64, 0.0, (g64 - e64).abs())  # inf = inf: no gap
                worst = gap.nan_to_num(nan=math.inf, posinf=math.inf).max().item()
                return f"values differ (largest absolute difference {worst:.3g})"
            return None
        return None if torch.equal(g, exp) else "integer values differ"
    if isinstance(expected, bool | np.bool_):  # True is not 1 here: the answer is a truth value
        if (isinstance(got, torch.Tensor | np.ndarray) and got.reshape(-1).shape[0] == 1
                and got.dtype in (torch.bool, np.bool_)):  # fmt: skip
            got = got.item()
        if not isinstance(got, bool | np.bool_):
            return f"expected {bool(expected)!r} (a bool), got {type(got).__name__} {got!r}"
        return None if bool(got) == bool(expected) else f"expected {bool(expected)!r}, got {got!r}"
    if isinstance(expected, str) or expected is None:
        return None if got == expected else f"expected {expected!r}, got {got!r}"
    if isinstance(expected, int | np.integer):  # exactly; a float equal to it (4.0) counts
        if isinstance(got, torch.Tensor | np.ndarray) and got.reshape(-1).shape[0] == 1:
            got = got.item()
        if isinstance(got, bool | np.bool_) or not isinstance(got, int | float | np.number):
            return f"expected an integer, got {type(got).__name__}"
        same = (int(got) == int(expected) if isinstance(got, int | np.integer)  # exact, any size
                else float(got) == int(expected))  # fmt: skip
        return None if same else f"expected {int(expected)}, got {got!r}"
    if isinstance(expected, int | float | np.number):
        if (isinstance(got, np.ndarray) and got.size == 1) or (
                isinstance(got, torch.Tensor) and got.numel() == 1):  # fmt: skip
            got = got.item()
        if not isinstance(got, int | float | np.number) or isinstance(got, bool):
            return f"expected a number, got {type(got).__name__}"
        if math.isnan(float(got)):  # right only where NaN is the answer (as in arrays)
            return None if math.isnan(float(expected)) else "the result is NaN"
        if not math.isclose(float(got), float(expected), rel_tol=rtol, abs_tol=atol):
            digits = 6
            while digits < 17 and f"{float(expected):.{digits}g}" == f"{float(got):.{digits}g}":
                digits += 2  # show the digits where they differ
            return f"expected {float(expected):.{digits}g}, got {float(got):.{digits}g}"
        return None
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return f"expected a mapping, got {type(got).__name__}"
        if set(got) != set(expected):
            return f"expected keys {sorted(map(str, expected))}, got {sorted(map(str, got))}"
        for key in expected:
            why = compare(expected[key], got[key], rtol, atol)
            if why:
                return f"[{key!r}]: {why}"
        return None
    if isinstance(expected, Sequence):
        if isinstance(got, torch.Tensor | np.ndarray) and got.ndim == 1:
            got = got.tolist()  # a pair returned as an array counts as a pair
        if not isinstance(got, Sequence) or isinstance(got, str):
            return f"expected a sequence, got {type(got).__name__}"
        if len(got) != len(expected):
            return f"expected {len(expected)} items, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            why = compare(e, g, rtol, atol)
            if why:
                return f"item {i}: {why}"
        return None
    return None if got == expected else f"expected {expected!r}, got {got!r}"


def _describe(case: Mapping[str, Any]) -> str:
    def short(v: Any) -> str:
        if isinstance(v, torch.Tensor):
            return f"tensor{tuple(v.shape)}"
        if isinstance(v, np.ndarray):
            return f"array{tuple(v.shape)}"
        text = repr(v)
        return text if len(text) <= 30 else text[:27] + "..."

    return ", ".join(f"{k}={short(v)}" for k, v in case.items())


@contextmanager
def strict(enabled: bool) -> Iterator[None]:
    """Turn strict mode on or off inside a ``with`` block (lectures use it to demo a failure)."""
    old = os.environ.get("OPTIMAL_SCALING_STRICT")
    os.environ["OPTIMAL_SCALING_STRICT"] = "1" if enabled else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["OPTIMAL_SCALING_STRICT"]
        else:
            os.environ["OPTIMAL_SCALING_STRICT"] = old


def report(result: CheckResult) -> CheckResult:
    """Print a result's line; in strict mode raise :class:`CheckFailed` unless it passed."""
    print(result)
    if strict_mode() and not result:
        raise CheckFailed(str(result))
    return result


def check(
    name: str,
    learner: Callable[..., Any],
    reference: Callable[..., Any],
    cases: Iterable[Mapping[str, Any]],
    *,
    hint: str = "",
    mistakes: Mapping[str, Callable[..., Any]] | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> CheckResult:
    """Run ``learner`` and ``reference`` on each case (keyword arguments) and compare.

    Inputs are deep-copied for each call, so a function that mutates its arguments cannot
    change what the other one sees. ``mistakes`` maps a hint to a function that makes a
    typical mistake: when a wrong answer equals that function's on the failing case, its hint
    is shown instead of the general one. Prints one line and returns a :class:`CheckResult`.
    """
    if not callable(learner):
        raise TypeError(f"self-check {name!r}: expected a function, got {type(learner).__name__}")
    cases = list(cases)
    if not cases:
        raise ValueError(f"self-check {name!r} has no cases")
    hint_text = f" Hint: {hint}" if hint else ""
    for i, case in enumerate(cases, start=1):
        expected = reference(**copy.deepcopy(dict(case)))
        try:
            got = learner(**copy.deepcopy(dict(case)))
        except NotImplementedError:
            return report(
                CheckResult(
                    name,
                    NOT_ATTEMPTED,
                    "not attempted yet: replace the NotImplementedError stub with your code",
                )
            )
        except Exception as err:  # noqa: BLE001 - any learner error is a failed check
            msg = f"case {i} ({_describe(case)}) raised {type(err).__name__}: {err}.{hint_text}"
            return report(CheckResult(name, FAILED, msg))
        why = compare(expected, got, rtol=rtol, atol=atol)
        if why:
            specific = _recognize(mistakes or {}, case, got, rtol, atol) or _precision(
                expected, got, atol)
            text = f" Hint: {specific}" if specific else hint_text
            return report(
                CheckResult(name, FAILED, f"case {i} ({_describe(case)}): {why}.{text}")
            )
    return report(CheckResult(name, PASSED, f"correct on {len(cases)} cases"))


def _recognize(mistakes: Mapping[str, Callable[..., Any]], case: Mapping[str, Any], got: Any,
               rtol: float, atol: float) -> str:  # fmt: skip
    """The hint of the first typical mistake that reproduces the learner's answer, or ""."""
    for message, wrong in mistakes.items():
        try:
            if not compare(wrong(**copy.deepcopy(dict(case))), got, rtol=rtol, atol=atol):
                return message
        except Exception:  # noqa: BLE001, S112 - a mistake that cannot run on this case
            continue
    return ""


_LOW_PRECISION = {torch.float32, torch.float16, torch.bfloat16, np.dtype("float32"),
                  np.dtype("float16")}


def _precision(expected: Any, got: Any, atol: float = 1e-6) -> str:
    """A hint when a single- or half-precision answer is right up to its rounding, or "".

    Also when the answer has a double dtype but agrees only to float32's ~4 digits: it was
    computed in lower precision somewhere and converted back. ``atol`` is the check's own
    (capped at 10⁻⁶): a check of tiny values judges "rounding" relative to them."""
    atol = min(atol, 1e-6)
    dtype = getattr(got, "dtype", None)
    if getattr(expected, "dtype", None) in _LOW_PRECISION:
        return ""
    want = getattr(expected, "dtype", "float64")
    if dtype in _LOW_PRECISION:
        single = dtype in (torch.float32, np.dtype("float32"))
        if compare(expected, got, rtol=1e-4 if single else 1e-2, atol=atol):
            return ""
        return (f"your answer is right up to {dtype} rounding: compute in the inputs' "
                f"precision ({want} here)")
    if compare(expected, got, rtol=1e-4, atol=atol):
        return ""
    return ("your answer agrees to about 4 significant digits: as if part of it ran in "
            f"float32 (keep every step in the inputs' precision, {want} here) or used a "
            "slightly different method than the one asked for")


def check_value(
    name: str, value: Any, expected: Any, *, hint: str = "", rtol: float = 1e-5, atol: float = 1e-6
) -> CheckResult:
    """Check a single value (e.g. a prediction typed into a cell) against a computed one.

    ``value`` may be ``...`` (Ellipsis) to mean "not attempted yet".
    """
    if value is Ellipsis:
        return report(
            CheckResult(name, NOT_ATTEMPTED, "not attempted yet: replace ... with your answer")
        )
    why = compare(expected, value, rtol=rtol, atol=atol)
    hint_text = f" Hint: {hint}" if hint else ""
    if why:
        return report(CheckResult(name, FAILED, f"{why}.{hint_text}"))
    return report(CheckResult(name, PASSED, "correct"))


__all__ = [
    "CheckFailed",
    "CheckResult",
    "check",
    "check_value",
    "compare",
    "report",
    "strict",
    "FAILED",
    "NOT_ATTEMPTED",
    "PASSED",
]
