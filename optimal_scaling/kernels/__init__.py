r"""Triton kernels for one Newton–Schulz step, using the symmetry of X Xᵀ.

:mod:`optimal_scaling.newton_schulz` orthogonalizes X (…, m, n), m ≤ n, by steps

    A = X Xᵀ,        B = b A + c A A,        X ← a X + B X.

A and A A are symmetric, so only the tiles on and above the diagonal need computing; each
one is written twice, to its place and, transposed, to its mirror image. The three kernels:

* :func:`syrk`: A = X Xᵀ (a "symmetric rank-k update", BLAS's SYRK), m²n FLOPs instead of
  the dense product's 2m²n;
* :func:`sym_poly`: B = b A + c A A, m³ FLOPs instead of 2m³; b A is added in the epilogue
  (the A tile is loaded and combined in fp32 before the single rounding to the output);
* :func:`ns_update`: X ← a X + B X, a plain product (B X is not symmetric), 2m²n FLOPs, with
  a X added in the epilogue;

and :func:`ns_step` runs the three. Per step (one multiply-add = 2 FLOPs):

    dense:      2m²n + 2m³ + 2m²n = 4m²n + 2m³
    symmetric:   m²n +  m³ + 2m²n = 3m²n +  m³

between 4/3× fewer (m ≪ n) and 1.5× fewer (m = n: 6m³ against 4m³). Counting tiles rather
than FLOPs, a T×T tile grid computes T(T+1)/2 tiles, so the saving is a little smaller for
small T (T = 1: none).

Conventions. Tensors are (m, n) or (…, m, n); leading dims are flattened into one batch axis
(a reshape, which copies only when the leading dims cannot be viewed as one), and the batch is
grid axis 1. Any strides are accepted — views, transposes, slices run without ``.contiguous()``;
the kernels take every tensor's strides (contiguous inputs are faster on a GPU: their loads
are coalesced). Sizes need not be multiples of the block (masked tails). Dtypes: float32,
float16, bfloat16; products accumulate in fp32 (fp32 inputs with ``input_precision="ieee"``,
i.e. no TF32), the output has the input's dtype. The results of :func:`syrk` and
:func:`sym_poly` are exactly symmetric (bit for bit). ``out=`` takes a preallocated result
(right shape, dtype and device, not overlapping an input). An input that is not symmetric
where symmetry is assumed (``A`` of :func:`sym_poly`) is not checked: the result is then the
upper triangle of b A + c A A, mirrored.

Compiled or interpreted. Triton's ``@triton.jit`` decides at *decoration* time: with
``TRITON_INTERPRET=1`` in the environment it returns an ``InterpretedFunction``, which runs
each program of the grid one after another in Python/NumPy on the CPU (copying CUDA tensors to
the host and back), otherwise a ``JITFunction``, compiled for the GPU on first launch
(triton 3.x, ``triton/runtime/jit.py``: ``if knobs.runtime.interpret: return
InterpretedFunction(fn, …)``). A module that decorates its kernels at import therefore fixes
the mode at import. Here the kernels are plain functions in :mod:`._triton`, wrapped on first
use and cached per mode, and the mode is read at every call: :func:`interpreting` (that is,
``TRITON_INTERPRET=1``) → interpreter, for CPU and CUDA tensors alike, as in Triton;
otherwise compiled, CUDA tensors only. Triton's own helpers (``tl.zeros``, ...) are decorated
when *Triton* is imported, though, so the variable must already be set then: a process
picks one mode at its first ``import triton``, and a call in the other mode raises a
RuntimeError that says so (the test-suite sets ``TRITON_INTERPRET=1`` at start-up on
machines without CUDA).

Interpreter caveats (Triton 3.9): its ``tl.dot`` cannot multiply bf16 (it multiplies the raw
bits), so for bf16 the kernels upcast their tiles to fp32 first there (exact: a bf16·bf16
product fits in fp32); and it rounds fp32 → bf16 towards zero where a GPU rounds to nearest,
so interpreted bf16 results are within 2⁻⁷ relative instead of 2⁻⁸. fp32 and fp16 behave as
on a GPU.

Nothing here imports Triton until a kernel runs (or :func:`available` is asked): without
Triton, this module imports, :func:`available` is False and the kernels raise RuntimeError.
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
_MAX_GRID_Y = 65535  # CUDA's limit on grid axis 1: larger batches are launched in chunks
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


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _output(
    fn: str, out: torch.Tensor | None, shape: tuple[int, ...], like: torch.Tensor, *inputs
) -> torch.Tensor:
    """``out`` checked against the expected shape, dtype and device, or a new tensor."""
    if out is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{fn}: out must be a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ValueError(f"{fn}: out has shape {tuple(out.shape)}, expected {shape}")
    _check_same(fn, "out", out, "the input", like)
    if any(_overlaps(out, t) for t in inputs):
        raise ValueError(
            f"{fn}: out must not share memory with an input (it is read while written)"
        )
    return out


# -- launching --------------------------------------------------------------------------------


def _shape3(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, rows, cols) of t, batch = the product of its leading dims (1 for a matrix)."""
    return (math.prod(t.shape[:-2]), *t.shape[-2:])


def _batched(t: torch.Tensor) -> torch.Tensor:
    """t as (batch, rows, cols): a view for 2-D and 3-D tensors, a reshape beyond."""
    return t.reshape(_shape3(t))


def _launch(kernel, tiles: int, tensors: list[torch.Tensor], args: list, **meta: Any) -> None:
    """kernel[tiles, batch](*tensors, *args, *strides, **meta), in batch chunks of ≤ 65535.

    ``tensors`` are (batch, rows, cols); their strides follow ``args``, three per tensor.
    """
    batch = tensors[0].shape[0]
    for lo in range(0, batch, _MAX_GRID_Y):
        chunk = [t[lo : lo + _MAX_GRID_Y] for t in tensors]
        strides = [s for t in chunk for s in t.stride()]
        kernel[(tiles, chunk[0].shape[0])](*chunk, *args, *strides, **meta)


def _write_back(out: torch.Tensor, compute) -> torch.Tensor:
    """Run ``compute(out3)`` on a (batch, rows, cols) view of ``out`` (or on a temporary,
    copied into ``out``, when its leading dims cannot be viewed as one)."""
    try:
        out3 = out.view(_shape3(out))
    except RuntimeError:
        tmp = torch.empty(out.shape, dtype=out.dtype, device=out.device)
        compute(tmp.view(_shape3(tmp)))
        return out.copy_(tmp)
    compute(out3)
    return out


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# -- the kernels ------------------------------------------------------------------------------


def syrk(X: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """A = X Xᵀ for X of shape (…, m, n): A is (…, m, m), symmetric bit for bit.

    A[r, c] = Σ_k X[r, k] X[c, k]. Only the T(T+1)/2 tiles with tile row ≤ tile column are
    computed (T = ⌈m / BLOCK⌉), each written to A and, transposed, to its mirror: m²n FLOPs
    instead of the 2m²n of ``X @ X.mT``. fp32 accumulation, result in X's dtype.
    """
    _check_matrix("syrk", "X", X)
    m, n = X.shape[-2:]
    out = _output("syrk", out, (*X.shape[:-2], m, m), X, X)
    if out.numel() == 0:
        return out
    kernels, block, meta = _setup("syrk", X)
    T = _cdiv(m, block)

    def compute(A3: torch.Tensor) -> None:
        X3 = _batched(X)
        _launch(kernels["syrk_kernel"], T * (T + 1) // 2, [X3, A3], [m, n], BLOCK=block, **meta)

    return _write_back(out, compute)


def sym_poly(A: torch.Tensor, b: float, c: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """B = b·A + c·A A for symmetric A of shape (…, m, m); B is symmetric bit for bit.

    A A is symmetric when A is, so as in :func:`syrk` only the upper tiles are computed and
    mirrored: m³ FLOPs instead of 2m³. The b·A term costs no extra pass: each program loads
    its A tile in the epilogue and returns b·A + c·(A A) rounded once from fp32. A's symmetry
    is assumed, not checked.
    """
    _check_matrix("sym_poly", "A", A)
    m = A.shape[-1]
    if A.shape[-2] != m:
        raise ValueError(f"sym_poly: A must be square, shape (..., m, m); got {tuple(A.shape)}")
    out = _output("sym_poly", out, tuple(A.shape), A, A)
    if out.numel() == 0:
        return out
    kernels, block, meta = _setup("sym_poly", A)
    T = _cdiv(m, block)

    def compute(B3: torch.Tensor) -> None:
        A3 = _batched(A)
        args = [m, float(b), float(c)]
        _launch(kernels["sym_poly_kernel"], T * (T + 1) // 2, [A3, B3], args, BLOCK=block, **meta)

    return _write_back(out, compute)


def ns_update(
    X: torch.Tensor, B: torch.Tensor, a: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """X_new = a·X + B X for X (…, m, n) and B (…, m, m): 2m²n FLOPs, a·X in the epilogue.

    B X is not symmetric, so this is an ordinary tiled product over ⌈m / BLOCK⌉·⌈n / BLOCK⌉
    tiles; each program adds a·X[tile] in fp32 before rounding. ``out`` must not be X (X is
    read by other programs while a tile is written).
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
    out = _output("ns_update", out, tuple(X.shape), X, X, B)
    if out.numel() == 0:
        return out
    kernels, block, meta = _setup("ns_update", X)
    tiles = _cdiv(m, block) * _cdiv(n, block)

    def compute(Y3: torch.Tensor) -> None:
        X3, B3 = _batched(X), _batched(B)
        args = [m, n, float(a)]
        kernel = kernels["ns_update_kernel"]
        _launch(kernel, tiles, [X3, B3, Y3], args, BLOCK_M=block, BLOCK_N=block, **meta)

    return _write_back(out, compute)


def ns_step(X: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    """One Newton–Schulz step a·X + (b·A + c·A A)·X with A = X Xᵀ, as a new tensor.

    Three launches, :func:`syrk`, :func:`sym_poly`, :func:`ns_update`; A and B (…, m, m) are
    allocated once per call. 3m²n + m³ FLOPs for X of shape m×n (the caller transposes so that
    m ≤ n: the cost is quadratic in m and only linear in n).
    """
    A = syrk(X)
    B = sym_poly(A, b, c)
    return ns_update(X, B, a)
