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

Tile configurations. Each compiled launch takes one of :data:`CONFIGS` (tile sizes, the
reduction depth BLOCK_K, the update kernel's tile-group height GROUP_M, warps and pipeline
stages): the one :func:`tune` measured fastest at the nearest measured shape for this GPU and
dtype, read from the table :func:`tuned_table` loads (the file named by
``OPTIMAL_SCALING_KERNEL_CONFIGS``, else the package's ``kernels/tuned.json``), or the first
candidate when the table has nothing for this GPU. ``config=`` on each kernel overrides the
choice. The interpreter runs 16×16×16 tiles (GROUP_M = 2), which make the tests' small
matrices span several tiles, so the off-diagonal, mirror, grouping and tail paths all run.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CONFIGS",
    "DTYPES",
    "INTERPRETED",
    "available",
    "best_entries",
    "config_for",
    "interpreting",
    "ns_step",
    "ns_update",
    "sym_poly",
    "syrk",
    "tune",
    "tuned_table",
    "write_tuned",
]

DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: Candidate tile configurations of the compiled kernels, the first of each the default.
#: ``sym_kernel`` (A = X Xᵀ and B = b·A + c·A²) writes BLOCK×BLOCK output tiles; the update
#: ``ns_update_kernel`` BLOCK_M×BLOCK_N tiles in groups of GROUP_M tile rows. The 128-tiles
#: with 8 warps are what an H100 needed to get near cuBLAS at 4096² and beyond (issue 11).
CONFIGS: dict[str, list[dict[str, int]]] = {
    "sym_kernel": [
        {"BLOCK": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 3},
        {"BLOCK": 64, "BLOCK_K": 64, "num_warps": 4, "num_stages": 4},
        {"BLOCK": 128, "BLOCK_K": 32, "num_warps": 4, "num_stages": 4},
        {"BLOCK": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3},
        {"BLOCK": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 4},
    ],
    "ns_update_kernel": [
        {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 1, "num_warps": 4,
         "num_stages": 3},
        {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 32, "GROUP_M": 8, "num_warps": 4,
         "num_stages": 4},
        {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32, "GROUP_M": 8, "num_warps": 4,
         "num_stages": 4},
        {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 8,
         "num_stages": 3},
        {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "GROUP_M": 8, "num_warps": 8,
         "num_stages": 3},
    ],
}  # fmt: skip
#: The interpreter's configuration (it pays per program and per op, not per FLOP).
INTERPRETED: dict[str, dict[str, int]] = {
    "sym_kernel": {"BLOCK": 16, "BLOCK_K": 16},
    "ns_update_kernel": {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 2},
}
_LAUNCH = ("num_warps", "num_stages")  # launch options, not kernel arguments
_TUNED_ENV = "OPTIMAL_SCALING_KERNEL_CONFIGS"
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


def _kernels(fn: str, t: torch.Tensor) -> dict[str, Any]:
    """The kernels (by name) for a launch on ``t`` in the current mode, or a clear error."""
    triton = _load_triton()
    if triton is None:
        raise RuntimeError(
            f"{fn}: Triton is not installed (pip install triton, Linux only); use the torch "
            "path of optimal_scaling.newton_schulz instead"
        )
    interpret = interpreting()
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
    return _built[interpret]


# -- tile configurations --------------------------------------------------------------------

_tuned_cache: dict[str, dict] = {}


def tuned_table(path: str | Path | None = None) -> dict:
    """The measured table of best configurations: ``{"device": …, "entries": [...]}``.

    Read from ``path``, else the file named by ``OPTIMAL_SCALING_KERNEL_CONFIGS``, else the
    package's ``kernels/tuned.json``; ``{"entries": []}`` when there is none, except that a
    file named by ``OPTIMAL_SCALING_KERNEL_CONFIGS`` must exist (FileNotFoundError). Each entry:
    ``kernel``, ``device`` (the GPU's name), ``dtype``, ``M``, ``K``, ``batch`` (the problem
    it was measured at; 1 when absent) and ``config`` (one of :data:`CONFIGS`), with the
    times measured.
    """
    path = Path(path or os.environ.get(_TUNED_ENV) or Path(__file__).with_name("tuned.json"))
    key = str(path)
    if key not in _tuned_cache:
        if not path.is_file():
            if os.environ.get(_TUNED_ENV) and str(path) == os.environ[_TUNED_ENV]:
                raise FileNotFoundError(f"{_TUNED_ENV}={path}: no such file")
            _tuned_cache[key] = {"entries": []}
        else:
            table = json.loads(path.read_text())
            if not isinstance(table, dict) or not isinstance(table.get("entries"), list):
                raise ValueError(f"{path}: a kernel-configuration table needs an 'entries' list")
            for e in table["entries"]:
                bad = {"kernel", "device", "dtype", "M", "K", "config"} - set(e)
                if bad or e["kernel"] not in CONFIGS:
                    raise ValueError(f"{path}: bad entry {e} (missing {sorted(bad)} or unknown "
                                     "kernel)")  # fmt: skip
            _tuned_cache[key] = table
    return _tuned_cache[key]


def config_for(kernel: str, M: int, K: int, dtype: torch.dtype, device: str = "",
               batch: int = 1) -> dict:  # fmt: skip
    """The tile configuration a launch of ``kernel`` uses for ``batch`` (M, K) problems.

    Interpreted: :data:`INTERPRETED`. Compiled: the measured best at the nearest measured
    problem (distance |log₂ M − log₂ M'| + |log₂ K − log₂ K'| + |log₂ batch − log₂ batch'|)
    among the table's entries for this kernel, dtype and GPU name ``device``; :data:`CONFIGS`'
    first when there is none. (M, K) are (rows, reduction) for ``sym_kernel`` and (rows of
    X, columns of X) for the update; an entry without ``batch`` was measured at batch 1.
    """
    if kernel not in CONFIGS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {sorted(CONFIGS)}")
    if interpreting():
        return dict(INTERPRETED[kernel])
    table = os.environ.get(_TUNED_ENV, "")  # part of the key: a new table, a new answer
    return dict(_lookup(kernel, M, K, batch, str(dtype).removeprefix("torch."), device, table))


@functools.lru_cache(maxsize=4096)
def _lookup(kernel: str, M: int, K: int, batch: int, dtype: str, device: str,
            table: str) -> dict:  # fmt: skip
    """config_for's table search, once per (kernel, problem, dtype, GPU, table): launches
    repeat the same shapes every step, and host work is what small matrices pay for."""
    entries = [e for e in tuned_table(table or None)["entries"] if e["kernel"] == kernel
               and e["dtype"] == dtype and e["device"] == device]  # fmt: skip
    if not entries:
        return CONFIGS[kernel][0]

    def distance(e: dict) -> float:
        return (abs(math.log2(max(M, 1) / e["M"])) + abs(math.log2(max(K, 1) / e["K"]))
                + abs(math.log2(max(batch, 1) / e.get("batch", 1))))  # fmt: skip

    return min(entries, key=distance)["config"]


def _check_config(fn: str, kernel: str, config: dict) -> dict:
    need = set(INTERPRETED[kernel])
    missing = need - set(config)
    extra = set(config) - need - set(_LAUNCH)
    if missing or extra:
        raise ValueError(f"{fn}: a {kernel} configuration needs the keys {sorted(need)} (and "
                         f"optionally {list(_LAUNCH)}); got {sorted(config)}")  # fmt: skip
    for k in need - {"GROUP_M"}:
        v = config[k]
        if not isinstance(v, int) or v < 16 or v & (v - 1):
            raise ValueError(f"{fn}: {k} must be a power of two ≥ 16, got {v!r}")
    if "GROUP_M" in config and (not isinstance(config["GROUP_M"], int) or config["GROUP_M"] < 1):
        raise ValueError(f"{fn}: GROUP_M must be a positive int, got {config['GROUP_M']!r}")
    return config


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


@functools.cache
def _gpu_name(index: int | None) -> str:
    return torch.cuda.get_device_name(index)


def _run(fn: str, kernel: str, inputs: list[torch.Tensor], out_shape: tuple[int, ...],
         args: list, tiles: Callable[[dict], int], dims: tuple[int, int],
         config: dict | None, **constants: Any) -> torch.Tensor:  # fmt: skip
    """Launch ``kernel`` on ``inputs`` into a new tensor of ``out_shape``: the one launch path.

    Every tensor is seen as (batch, rows, cols) (a view, or a copy when the leading dims of an
    input cannot be viewed as one); the grid is (``tiles(config)``, batch); strides follow
    ``args``, three per tensor; the tile configuration is ``config`` or :func:`config_for`
    at ``dims``, and ``constants`` are the kernel's other compile-time switches.
    """
    out = torch.empty(out_shape, dtype=inputs[0].dtype, device=inputs[0].device)
    if out.numel() == 0:
        return out
    kernels = _kernels(fn, inputs[0])
    t = inputs[0]
    if config is None:
        config = config_for(kernel, *dims, t.dtype, _gpu_name(t.device.index) if t.is_cuda else "",
                            batch=_shape3(out)[0])  # fmt: skip
    config = _check_config(fn, kernel, dict(config))
    if interpreting():  # the interpreter takes no launch options
        config = {k: v for k, v in config.items() if k not in _LAUNCH}
    batch = _shape3(out)[0]
    if batch > _MAX_GRID_Y:
        raise ValueError(f"{fn}: a batch of {batch} matrices exceeds CUDA's grid limit "
                         f"{_MAX_GRID_Y}; split it")  # fmt: skip
    tensors = [t.reshape(_shape3(t)) for t in (*inputs, out)]
    strides = [s for t in tensors for s in t.stride()]
    # UPCAST: the interpreter's tl.dot cannot multiply bf16 (see _triton's docstring)
    upcast = interpreting() and t.dtype == torch.bfloat16
    kernels[kernel][(tiles(config), batch)](*tensors, *args, *strides, UPCAST=upcast,
                                            **config, **constants)  # fmt: skip
    return out


def syrk(X: torch.Tensor, config: dict | None = None) -> torch.Tensor:
    """A = X Xᵀ for X of shape (…, m, n): A is (…, m, m), symmetric bit for bit.

    A[r, c] = Σ_k X[r, k] X[c, k]. Only the T(T+1)/2 tiles with tile row ≤ tile column are
    computed (T = ⌈m / BLOCK⌉), each written to A and, transposed, to its mirror: m²n FLOPs
    instead of the 2m²n of ``X @ X.mT``. fp32 accumulation, result in X's dtype. ``config``:
    a ``sym_kernel`` tile configuration instead of the tuned or default one.
    """
    _check_matrix("syrk", "X", X)
    m, n = X.shape[-2:]
    return _run("syrk", "sym_kernel", [X], (*X.shape[:-2], m, m), [m, n, 1.0, 0.0],
                lambda c: _cdiv(m, c["BLOCK"]) * (_cdiv(m, c["BLOCK"]) + 1) // 2,
                (m, n), config, EPILOGUE=False)  # fmt: skip


def sym_poly(A: torch.Tensor, b: float, c: float, config: dict | None = None) -> torch.Tensor:
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
                lambda cf: _cdiv(m, cf["BLOCK"]) * (_cdiv(m, cf["BLOCK"]) + 1) // 2,
                (m, m), config, EPILOGUE=True)  # fmt: skip


def ns_update(X: torch.Tensor, B: torch.Tensor, a: float,
              config: dict | None = None) -> torch.Tensor:  # fmt: skip
    """X_new = a·X + B X for X (…, m, n) and B (…, m, m): 2m²n FLOPs, a·X in the epilogue.

    B X is not symmetric, so this is an ordinary tiled product over ⌈m / BLOCK_M⌉·⌈n / BLOCK_N⌉
    tiles, visited in groups of GROUP_M tile rows; each program adds a·X[tile] in fp32 before
    rounding.
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
                lambda c: _cdiv(m, c["BLOCK_M"]) * _cdiv(n, c["BLOCK_N"]), (m, n), config)


def ns_step(X: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    """One Newton–Schulz step a·X + (b·A + c·A A)·X with A = X Xᵀ, as a new tensor.

    Three launches, :func:`syrk`, :func:`sym_poly`, :func:`ns_update`; A and B (…, m, m) are
    allocated once per call. 3m²n + m³ FLOPs for X of shape m×n (the caller transposes so that
    m ≤ n: the cost is quadratic in m and only linear in n).
    """
    A = syrk(X)
    B = sym_poly(A, b, c)
    return ns_update(X, B, a)


# -- tuning ---------------------------------------------------------------------------------


def _cuda_timer(fn: Callable[[], object]) -> float:
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=10, rep=50, return_mode="median"))


def tune(
    shapes: Sequence[tuple[int, ...]],
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cuda",
    timer: Callable[[Callable[[], object]], float] | None = None,
    configs: dict[str, list[dict]] | None = None,
    after_shape: Callable[[list[dict]], object] | None = None,
) -> list[dict]:
    """Time every candidate configuration of both kernels at each shape (one row per try).

    ``after_shape(rows)`` is called with the rows so far after each shape (the command writes
    the table then, so a run stopped part-way keeps the shapes it finished).

    For X of shape (…, m, n) with m ≤ n (the orientation ``orthogonalize`` uses): the
    symmetric kernel as :func:`syrk` at (M, K) = (m, n) and as :func:`sym_poly` at (m, m),
    the update at (m, n). ``timer(fn)`` returns milliseconds (default: Triton's ``do_bench``,
    median, on CUDA); ``configs`` defaults to :data:`CONFIGS`. A configuration that fails (too
    much shared memory for the GPU) gets ``ms = inf`` and its error. Rows: ``kernel``,
    ``M``, ``K``, ``batch``, ``dtype``, ``device``, ``index`` (into the candidate list),
    ``config``, ``ms``, ``error``.
    """
    configs = configs or CONFIGS
    timer = timer or _cuda_timer
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    rows = []
    for shape in shapes:
        *lead, m, n = shape
        if m > n:
            raise ValueError(f"tune: shapes are (…, m, n) with m ≤ n; got {tuple(shape)}")
        X = torch.randn(*lead, m, n, device=device).to(dtype) / n**0.5
        A = X @ X.mT  # the kernels' inputs from torch: a kernel that fails to compile
        B = -4.775 * A + 2.0315 * (A @ A)  # only loses its own rows
        calls = {  # a square X tunes the symmetric kernel once, at (m, m)
            ("sym_kernel", m, n): lambda c, X=X: syrk(X, c),
            ("sym_kernel", m, m): lambda c, A=A: sym_poly(A, -4.775, 2.0315, c),
            ("ns_update_kernel", m, n): lambda c, X=X, B=B: ns_update(X, B, 3.4445, c),
        }
        for (kernel, M, K), call in calls.items():
            for i, config in enumerate(configs[kernel]):
                row = {"kernel": kernel, "M": M, "K": K, "batch": math.prod(lead),
                       "dtype": str(dtype).removeprefix("torch."), "device": name, "index": i,
                       "config": dict(config), "ms": math.inf, "error": ""}  # fmt: skip
                try:
                    call(config)  # compile and check it runs before timing
                    row["ms"] = timer(lambda call=call, config=config: call(config))
                except Exception as e:  # out of resources, a compile error: record, go on
                    row["error"] = f"{type(e).__name__}: {e}"[:300]
                rows.append(row)
        if after_shape is not None:
            after_shape(rows)
    return rows


def best_entries(rows: list[dict]) -> list[dict]:
    """From :func:`tune`'s rows, one entry per (kernel, M, K, batch, dtype, device): the
    fastest configuration, with its time and the default's (``ms``, ``default_ms``)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["kernel"], r["M"], r["K"], r.get("batch", 1), r["dtype"], r["device"])
        groups.setdefault(key, []).append(r)
    entries = []
    for (kernel, M, K, batch, dtype, device), rs in groups.items():
        best = min(rs, key=lambda r: r["ms"])
        if not math.isfinite(best["ms"]):
            continue
        default = next((r["ms"] for r in rs if r["index"] == 0), math.nan)
        entries.append({"kernel": kernel, "device": device, "dtype": dtype, "M": M, "K": K,
                        "batch": batch, "config": best["config"], "ms": best["ms"],
                        "default_ms": default})  # fmt: skip
    return entries


def _finite(obj: Any) -> Any:
    """``obj`` with every inf/NaN float as None (strict JSON: a failed try's time is null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_tuned(path: str | Path, entries: list[dict], **meta: Any) -> Path:
    """Write a configuration table :func:`tuned_table` reads (JSON), atomically."""
    from optimal_scaling.results import atomic_write

    text = json.dumps(_finite({**meta, "entries": entries}), indent=1, default=str)
    out = atomic_write(Path(path), lambda f: f.write(text.encode()))
    _tuned_cache.pop(str(Path(path)), None)
    _lookup.cache_clear()
    return out
