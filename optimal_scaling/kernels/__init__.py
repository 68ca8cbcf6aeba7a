r"""Triton kernels for one Newton–Schulz step that use the symmetry of X Xᵀ (lecture 04).

* :func:`syrk`: A = X Xᵀ, upper-triangle tiles only, each mirrored (m²n FLOPs, not 2m²n);
* :func:`sym_poly`: B = b·A + c·A·A, likewise (m³, not 2m³), b·A added in the epilogue;
* :func:`ns_update`: X ← a·X + B·X (2m²n), a·X added in the epilogue;
* :func:`ns_step`: the three in a row.

Contract: X is (m, n) or (…, m, n), any strides, float32/float16/bfloat16; products accumulate
in fp32 (no TF32) and the result, a new tensor, has X's dtype; A and B are symmetric bit for
bit (:func:`syrk` and :func:`sym_poly` are one kernel: A·A = A·Aᵀ for symmetric A). Bad input
raises a TypeError/ValueError naming it. Compiled on
CUDA; with ``TRITON_INTERPRET=1`` (set before Triton is first imported: it fixes the mode then)
they run in Triton's CPU interpreter, where bf16 tiles are upcast to fp32 and fp32 → bf16
rounds towards zero (results within 2⁻⁷ instead of 2⁻⁸). Importing this module does not
import Triton; without Triton :func:`available` is False and the kernels raise RuntimeError.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

__all__ = [
    "BLOCKS",
    "DTYPES",
    "available",
    "interpreting",
    "ns_step",
    "ns_update",
    "sym_poly",
    "syrk",
]

DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Tile sizes (BLOCK×BLOCK output tiles, a reduction depth of BLOCK_K), fixed per mode. On a
# GPU, 64×64×32 tiles keep 4 warps busy with tensor-core dots. The interpreter pays per
# program and per op, not per FLOP; 16×16×16 tiles make the tests' small matrices span
# several tiles, so the off-diagonal, mirror and tail paths all run.
BLOCKS = {"compiled": {"BLOCK": 64, "BLOCK_K": 32}, "interpreted": {"BLOCK": 16, "BLOCK_K": 16}}
_GPU_LAUNCH = {"num_warps": 4, "num_stages": 3}  # compiled launches only
_MAX_GRID_Y = 65535  # CUDA's limit on grid axis 1 (the batch): larger batches are an error
_built: dict[bool, dict[str, Any]] = {}  # interpret → {kernel name: Triton kernel}


def _load_triton():
    """The ``triton`` module, or None when it is not installed (or cannot be imported)."""
    try:
        import triton
    except ImportError:
        return None
    return triton


def interpreting() -> bool:
    """True when ``TRITON_INTERPRET=1``: kernels then run in Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def _imported_interpreted(triton) -> bool:
    """Whether ``triton.language`` was imported in interpreter mode.

    Triton decorates its own helpers (``tl.zeros``, ``tl.cdiv``, ...) when it is imported, so
    they are interpreted or compiled for the rest of the process, whatever our kernels are.
    """
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(triton.language.zeros, InterpretedFunction)


def available(t: torch.Tensor | None = None) -> bool:
    """Whether the kernels can run (on ``t``): Triton imports, and either the interpreter is
    on (any device) or ``t`` is a CUDA tensor (``t=None``: a CUDA device exists)."""
    triton = _load_triton()
    if triton is None or interpreting() != _imported_interpreted(triton):
        return False
    if interpreting():
        return True
    return torch.cuda.is_available() if t is None else t.is_cuda


def _setup(fn: str, t: torch.Tensor) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """For a launch on ``t`` in the current mode: the kernels (by name), the tile size BLOCK,
    and the keywords every launch takes (BLOCK_K, UPCAST, and the GPU launch options)."""
    if _load_triton() is None:
        raise RuntimeError(
            f"{fn}: Triton is not installed (pip install triton, Linux only); use the torch "
            "path of optimal_scaling.newton_schulz instead"
        )
    interpret = interpreting()
    triton = _load_triton()
    if interpret != _imported_interpreted(triton):
        raise RuntimeError(
            f"{fn}: TRITON_INTERPRET is {'' if interpret else 'not '}set now, but Triton was "
            f"imported {'without' if interpret else 'with'} it; Triton fixes its mode at import, "
            "so set TRITON_INTERPRET=1 before anything imports triton (or in a new process)"
        )
    if not interpret and not t.is_cuda:
        raise RuntimeError(
            f"{fn}: the compiled kernels need CUDA tensors, got a {t.device.type} tensor; set "
            "TRITON_INTERPRET=1 to run them in Triton's CPU interpreter"
        )
    if interpret not in _built:
        from optimal_scaling.kernels import _triton as source

        _built[interpret] = source.build(interpret)
    blocks = BLOCKS["interpreted" if interpret else "compiled"]
    # UPCAST: the interpreter's tl.dot cannot multiply bf16 (see _triton's docstring)
    meta = {"BLOCK_K": blocks["BLOCK_K"], "UPCAST": interpret and t.dtype == torch.bfloat16}
    if not interpret:
        meta.update(_GPU_LAUNCH)
    return _built[interpret], blocks["BLOCK"], meta


# -- input checks ---------------------------------------------------------------------------


def _check_matrix(fn: str, name: str, t: Any) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim < 2:
        raise ValueError(
            f"{fn}: {name} must be a matrix or a batch of them, shape (..., rows, cols); got "
            f"shape {tuple(t.shape)} (ndim {t.ndim})"
        )
    if t.dtype not in DTYPES:
        raise TypeError(
            f"{fn}: {name} has dtype {t.dtype}; the kernels take float32, float16 or bfloat16"
        )


def _check_same(fn: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        raise ValueError(
            f"{fn}: {name} is on {t.device} but {ref_name} is on {ref.device}; put both on one "
            "device"
        )
    if t.dtype != ref.dtype:
        raise TypeError(f"{fn}: {name} has dtype {t.dtype} but {ref_name} has {ref.dtype}")


def _shape3(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, rows, cols) of t, batch = the product of its leading dims (1 for a matrix)."""
    return (math.prod(t.shape[:-2]), *t.shape[-2:])


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _run(fn: str, kernel: str, inputs: list[torch.Tensor], out_shape: tuple[int, ...],
         args: list, tiles, blocks: tuple[str, ...], **constants: Any) -> torch.Tensor:  # fmt: skip
    """Launch ``kernel`` on ``inputs`` into a new tensor of ``out_shape``: the one launch path.

    Every tensor is seen as (batch, rows, cols) (a view, or a copy when the leading dims of an
    input cannot be viewed as one); the grid is (``tiles(BLOCK)``, batch); strides follow
    ``args``, three per tensor; each name in ``blocks`` is set to the tile size BLOCK, and
    ``constants`` are the kernel's other compile-time switches.
    """
    out = torch.empty(out_shape, dtype=inputs[0].dtype, device=inputs[0].device)
    if out.numel() == 0:
        return out
    kernels, block, meta = _setup(fn, inputs[0])
    batch = _shape3(out)[0]
    if batch > _MAX_GRID_Y:
        raise ValueError(f"{fn}: a batch of {batch} matrices exceeds CUDA's grid limit "
                         f"{_MAX_GRID_Y}; split it")  # fmt: skip
    tensors = [t.reshape(_shape3(t)) for t in (*inputs, out)]
    strides = [s for t in tensors for s in t.stride()]
    kernels[kernel][(tiles(block), batch)](*tensors, *args, *strides, **meta, **constants,
                                           **dict.fromkeys(blocks, block))  # fmt: skip
    return out


def syrk(X: torch.Tensor) -> torch.Tensor:
    """A = X Xᵀ for X of shape (…, m, n): A is (…, m, m), symmetric bit for bit.

    A[r, c] = Σ_k X[r, k] X[c, k]. Only the T(T+1)/2 tiles with tile row ≤ tile column are
    computed (T = ⌈m / BLOCK⌉), each written to A and, transposed, to its mirror: m²n FLOPs
    instead of the 2m²n of ``X @ X.mT``. fp32 accumulation, result in X's dtype.
    """
    _check_matrix("syrk", "X", X)
    m, n = X.shape[-2:]
    return _run("syrk", "sym_kernel", [X], (*X.shape[:-2], m, m), [m, n, 1.0, 0.0],
                lambda block: _cdiv(m, block) * (_cdiv(m, block) + 1) // 2,
                ("BLOCK",), EPILOGUE=False)  # fmt: skip


def sym_poly(A: torch.Tensor, b: float, c: float) -> torch.Tensor:
    """B = b·A + c·A A for symmetric A of shape (…, m, m); B is symmetric bit for bit.

    The same kernel as :func:`syrk` (A A = A Aᵀ for symmetric A): upper tiles only, m³ FLOPs
    instead of 2m³, and b·A added in the epilogue, rounded once from fp32. A's symmetry is
    assumed, not checked (for a non-symmetric A the result is b·A + c·A Aᵀ on and above the
    diagonal, mirrored).
    """
    _check_matrix("sym_poly", "A", A)
    m = A.shape[-1]
    if A.shape[-2] != m:
        raise ValueError(f"sym_poly: A must be square, shape (..., m, m); got {tuple(A.shape)}")
    return _run("sym_poly", "sym_kernel", [A], tuple(A.shape), [m, m, float(c), float(b)],
                lambda block: _cdiv(m, block) * (_cdiv(m, block) + 1) // 2,
                ("BLOCK",), EPILOGUE=True)  # fmt: skip


def ns_update(X: torch.Tensor, B: torch.Tensor, a: float) -> torch.Tensor:
    """X_new = a·X + B X for X (…, m, n) and B (…, m, m): 2m²n FLOPs, a·X in the epilogue.

    B X is not symmetric, so this is an ordinary tiled product over ⌈m / BLOCK⌉·⌈n / BLOCK⌉
    tiles; each program adds a·X[tile] in fp32 before rounding.
    """
    _check_matrix("ns_update", "X", X)
    _check_matrix("ns_update", "B", B)
    m, n = X.shape[-2:]
    if tuple(B.shape) != (*X.shape[:-2], m, m):
        raise ValueError(
            f"ns_update: shape mismatch: X is {tuple(X.shape)}, so B must be "
            f"{(*X.shape[:-2], m, m)}; got {tuple(B.shape)}"
        )
    _check_same("ns_update", "B", B, "X", X)
    return _run("ns_update", "ns_update_kernel", [X, B], tuple(X.shape), [m, n, float(a)],
                lambda block: _cdiv(m, block) * _cdiv(n, block), ("BLOCK_M", "BLOCK_N"))


def ns_step(X: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    """One Newton–Schulz step a·X + (b·A + c·A A)·X with A = X Xᵀ, as a new tensor.

    Three launches, :func:`syrk`, :func:`sym_poly`, :func:`ns_update`; A and B (…, m, m) are
    allocated once per call. 3m²n + m³ FLOPs for X of shape m×n (the caller transposes so that
    m ≤ n: the cost is quadratic in m and only linear in n).
    """
    A = syrk(X)
    B = sym_poly(A, b, c)
    return ns_update(X, B, a)
