r"""Newton–Schulz orthogonalization: U Vᵀ from G = U Σ Vᵀ without an SVD.

An odd matrix polynomial acts on singular values alone: for X = U Σ Vᵀ,

    p(X) = a X + b X Xᵀ X + c (X Xᵀ)² X = U p(Σ) Vᵀ,   p(σ) = a σ + b σ³ + c σ⁵.

Normalize so every σ ≤ 1 (divide by the Frobenius norm, with a small safety margin), then
apply a few polynomials chosen to push every σ in (0, 1] towards 1. One step is three lines,

    A = X Xᵀ,   B = b A + c A A,   X ← a X + B X,

computed on the short side (X is transposed so that m ≤ n). Schedules:

* ``"cubic"``: Newton–Schulz's (1.5, −0.5, 0), which converges to 1 but slowly from small σ;
* ``"muon"``: Muon's quintic (3.4445, −4.7750, 2.0315), steep at 0 and *not* convergent to 1:
  one step peaks at 1.20, and after 5 steps singular values that started in [10⁻², 1]·‖X‖_F
  end in [0.68, 1.13] (measured by :func:`response`); those between 1.5·10⁻³ and 10⁻² can
  end anywhere up to 1.20, and only those below about 1.5·10⁻³ end under 0.68;
* ``"polar_express"``: one minimax-optimal quintic per step, designed by
  :func:`polar_express_coefficients`;
* a list of (a, b, c) triples, one per step (the last one repeats if there are more steps).

Two back ends compute a step. The torch path fuses each line into one BLAS call,
``addmm``/``baddbmm`` (β·C + α·A·B), so no separate elementwise kernel runs over A or X
(not free on a GPU all the same: on an H100 the fused steps took 1.27–1.32× the three bare
products at 4096², ``benchmarks/GPU_NOTES.md``). The
Triton path (:mod:`optimal_scaling.kernels`, CUDA) also uses the symmetry of A and A·A to
compute only one triangle of each. FLOPs per step for X of shape m×n (m ≤ n):

    dense:      2m²n (X Xᵀ) + 2m³ (A A) + 2m²n (B X) = 4m²n + 2m³
    symmetric:   m²n        +  m³       + 2m²n       = 3m²n +  m³   (at most 1.5× fewer)

The torch path can use the symmetry too, with BLAS calls alone (``panel_rows`` of
:func:`torch_steps`): split the rows of A into k panels of r rows and compute only the panels'
parts on and below the diagonal, A[i, :(i+1)r] = X[i] X[:(i+1)r]ᵀ (a fraction (k+1)/2k of
the products' FLOPs), then mirror the blocks above the diagonal (a copy of the transpose);
A·A = A·Aᵀ likewise. On CUDA, matrices whose short side is ≥ :data:`PANEL_FROM` use
:data:`PANEL_ROWS`-row panels: large enough that each panel product still fills the GPU.

Small problems are bounded by launches, not arithmetic: with :data:`CUDA_GRAPHS` on (the
default; ``OPTIMAL_SCALING_CUDA_GRAPHS=0`` turns it off), the torch path of a CUDA problem up
to :data:`GRAPH_MAX_FLOPS` per step is replayed from a CUDA graph from its second call with
the same shape and settings on (:mod:`optimal_scaling.graphs`). On an H100 that took the
package from 0.76–0.87× to 0.21–0.30× of the eager textbook step's time at matrices of up to
2²⁰ entries, and Muon's optimizer step from 4.0 to 1.8 ms (``benchmarks/GPU_NOTES.md``).
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from optimal_scaling._validate import check_int, check_number
from optimal_scaling.graphs import GraphCache

CUBIC = (1.5, -0.5, 0.0)
MUON = (3.4445, -4.7750, 2.0315)
SCHEDULES = ("cubic", "muon", "polar_express")
BACKENDS = ("auto", "torch", "triton")


def _minimax_quintic(lo: float, hi: float, iters: int = 100) -> tuple[float, float, float]:
    """The odd quintic p minimizing max |1 − p(x)| on [lo, hi] (Remez exchange).

    At the optimum the error equioscillates at 4 points: both ends and p's two critical
    points, p(x_i) = 1 ∓ E alternately. Solve that linear system, move the inner points to
    p's new critical points (roots of p'(x) = a + 3b x² + 5c x⁴), repeat.
    """
    xs = np.array([lo, lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3, hi])
    signs = np.array([-1.0, 1.0, -1.0, 1.0])
    a = b = c = 0.0
    for _ in range(iters):
        system = np.stack([xs, xs**3, xs**5, -signs], axis=1)
        a, b, c, _err = np.linalg.solve(system, np.ones(4))
        y = np.roots([5 * c, 3 * b, a])  # y = x²
        y = np.sort(y[np.isreal(y) & (y.real > 0)].real)
        crit = np.sqrt(y)
        crit = crit[(crit > lo) & (crit < hi)]
        if len(crit) != 2:
            break
        new = np.array([lo, crit[0], crit[1], hi])
        if np.allclose(new, xs, rtol=1e-14, atol=0):
            break
        xs = new
    return float(a), float(b), float(c)


#: The cushion that reproduces the published first triple (8.2872, −23.5959, 17.3004)
#: to within 2.2·10⁻⁴ (2.11·10⁻⁴ measured; Polar Express, lecture 04).
PUBLISHED_CUSHION = 0.02407

#: The published 8-step Polar Express schedule for ℓ = 10⁻³, before the ÷1.01 safety factor
#: (which its users apply to every step but the last). The design below reproduces it to ~10⁻⁵
#: relative to each step's largest coefficient (absolute ≤ 2.2·10⁻⁴, on the first triple).
PUBLISHED_POLAR_EXPRESS = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)


def polar_express_coefficients(
    steps: int = 5,
    lower: float = 1e-3,
    cushion: float = PUBLISHED_CUSHION,
    safety: float = 1.01,
) -> list[tuple[float, float, float]]:
    """Design one quintic per step (Polar Express), for singular values in [lower, 1].

    Per step: the minimax quintic on [max(ℓ, cushion·u), u]; rescaled so that
    1 − p(ℓ) = p(u) − 1; then ℓ ← p(ℓ), u ← 2 − ℓ. Finally every triple but the last is
    divided by ``safety`` (a/s, b/s³, c/s⁵, i.e. p(x/s)) — after the design, so the intervals
    follow the undivided polynomials, as in the published schedule
    (:data:`PUBLISHED_POLAR_EXPRESS`, reproduced for ℓ = 10⁻³ to ~10⁻⁵ relative to each step's
    largest coefficient). The first triple
    before the safety factor is the published (8.2872, −23.5959, 17.3004) to within 2.2·10⁻⁴;
    cushion 0.024 gives (8.2878, −23.6006, 17.3045), 0.02 gives (8.320, −23.859, 17.531).
    Once the interval has collapsed onto 1 (late steps without a safety factor), the minimax
    quintic is the limit (15/8, −10/8, 3/8) with p(1) = 1, p′(1) = p″(1) = 0, scaled to
    the interval's centre. Needs an int ``steps`` ≥ 1, 0 < ``lower`` < 1, ``cushion`` ≥ 0 and
    ``safety`` ≥ 1.
    """
    who = "polar_express_coefficients"
    steps = check_int(who, "steps", steps, low=1)
    lower = check_number(who, "lower", lower, low=0, high=1, low_open=True, high_open=True)
    cushion = check_number(who, "cushion", cushion, low=0)
    safety = check_number(who, "safety", safety, low=1)
    return list(_polar_express(steps, lower, cushion, safety))


@functools.lru_cache(maxsize=64)
def _polar_express(
    steps: int, lower: float, cushion: float, safety: float
) -> tuple[tuple[float, float, float], ...]:
    """The designed schedule, cached (designing it takes ~20 ms)."""
    if steps < 1 or not 0 < lower < 1 or cushion < 0 or safety < 1:
        raise ValueError(
            f"need steps ≥ 1, 0 < lower < 1, cushion ≥ 0, safety ≥ 1; got {steps}, {lower}, "
            f"{cushion}, {safety}"
        )
    lo, hi = lower, 1.0
    out = []
    for _ in range(steps):
        left = max(lo, cushion * hi)
        if hi - left < 1e-7 * hi:  # collapsed: the Remez system is singular; use the limit
            m = (left + hi) / 2
            a, b, c = 15 / 8 / m, -10 / 8 / m**3, 3 / 8 / m**5
        else:
            a, b, c = _minimax_quintic(left, hi)
        p = lambda x, a=a, b=b, c=c: a * x + b * x**3 + c * x**5  # noqa: E731
        t = 2.0 / (p(lo) + p(hi))
        a, b, c = a * t, b * t, c * t
        out.append((a, b, c))
        lo = a * lo + b * lo**3 + c * lo**5  # the interval follows the undivided polynomial,
        hi = 2.0 - lo  # as in the published design; the safety factor is applied afterwards
    return tuple((a / safety, b / safety**3, c / safety**5) if k < steps - 1 else (a, b, c)
                 for k, (a, b, c) in enumerate(out))  # fmt: skip


def coefficients(schedule: str | Sequence[Sequence[float]], steps: int) -> list[tuple]:
    """The (a, b, c) triple of every step of a schedule (none for ``steps = 0``)."""
    if isinstance(schedule, str):
        if schedule == "polar_express" and steps == 0:
            return []
        if schedule == "cubic":
            return [CUBIC] * steps
        if schedule == "muon":
            return [MUON] * steps
        if schedule == "polar_express":
            return polar_express_coefficients(steps)
        raise ValueError(f"unknown schedule {schedule!r}; choose from {SCHEDULES} or give triples")
    triples = [tuple(float(v) for v in t) for t in schedule]
    if not triples or any(len(t) != 3 for t in triples):
        raise ValueError("a custom schedule is a non-empty list of (a, b, c) triples")
    return [triples[min(k, len(triples) - 1)] for k in range(steps)]


def response(sigma, schedule: str | Sequence = "muon", steps: int = 5) -> np.ndarray:
    """p_k ∘ … ∘ p_1 applied to scalar singular values (already divided by ‖X‖_F), for an int
    ``steps`` ≥ 0 (0: the values unchanged)."""
    steps = check_int("response", "steps", steps)
    try:
        s = np.asarray(sigma, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"response: sigma must be numbers, got {sigma!r:.60}") from None
    for a, b, c in coefficients(schedule, steps):
        s = a * s + b * s**3 + c * s**5
    return s


def step_flops(m: int, n: int, symmetric: bool = False) -> int:
    """FLOPs of one step on an m×n matrix (m ≤ n after the transpose; one multiply-add = 2).

    Dense: 4m²n + 2m³. Computing one triangle of the symmetric X Xᵀ and A A: 3m²n + m³.
    """
    m, n = min(m, n), max(m, n)
    return 3 * m * m * n + m**3 if symmetric else 4 * m * m * n + 2 * m**3


def torch_steps(
    X: torch.Tensor,
    triples: Sequence[tuple[float, float, float]],
    panel_rows: int | None = None,
) -> torch.Tensor:
    """Steps X ← a X + (b A + c A²) X, A = X Xᵀ, three BLAS calls each, no temporaries.

    ``addmm(C, A, B, beta=β, alpha=α)`` computes β·C + α·A·B in one call, so b·A and a·X need
    no elementwise kernel of their own, and every product writes into a buffer allocated
    once (A, B and a second X; the two X buffers alternate). X is (m, n) or (batch, m, n);
    it is overwritten. ``panel_rows = r`` (< m) computes A and B = bA + cA·A by row panels of
    r rows, only on and below the diagonal, and mirrors the rest (see the module docstring):
    the same result up to rounding, with fewer FLOPs and more, smaller BLAS calls.
    """
    if not triples:
        return X
    if panel_rows is not None and (isinstance(panel_rows, bool) or not isinstance(
            panel_rows, int) or panel_rows < 1):  # fmt: skip
        raise ValueError(f"torch_steps: panel_rows must be a positive int, got {panel_rows!r}")
    mm, addmm = (torch.mm, torch.addmm) if X.ndim == 2 else (torch.bmm, torch.baddbmm)
    m = X.shape[-2]
    A = X.new_empty(*X.shape[:-1], m)
    B = torch.empty_like(A)
    Y = torch.empty_like(X)
    edges = None if panel_rows is None or panel_rows >= m else [*range(0, m, panel_rows), m]
    XT, YT = X.mT, Y.mT  # (views made once: each op costs a launch's worth of host time)
    for a, b, c in triples:
        if edges is None:
            mm(X, XT, out=A)
            addmm(A, A, A, beta=b, alpha=c, out=B)
        else:
            for lo, hi in itertools.pairwise(edges):  # A[i, :hi] = X[i] X[:hi]ᵀ
                mm(X[..., lo:hi, :], X[..., :hi, :].mT, out=A[..., lo:hi, :hi])
            _mirror_lower(A, edges)
            for lo, hi in itertools.pairwise(edges):  # B[i, :hi] = bA[i, :hi] + cA[i] A[:hi]ᵀ
                addmm(A[..., lo:hi, :hi], A[..., lo:hi, :], A[..., :hi, :].mT, beta=b,
                      alpha=c, out=B[..., lo:hi, :hi])  # fmt: skip
            _mirror_lower(B, edges)
        addmm(X, B, X, beta=a, out=Y)
        X, Y, XT, YT = Y, X, YT, XT
    return X


def _mirror_lower(S: torch.Tensor, edges: Sequence[int]) -> None:
    """Fill the blocks of S above the block diagonal from those below: S[i, j] = S[j, i]ᵀ."""
    for lo, hi in itertools.pairwise(edges):
        if hi < S.shape[-1]:
            S[..., lo:hi, hi:].copy_(S[..., hi:, lo:hi].mT)


def torch_step(X: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    """One step on a copy of X: a X + (b A + c A²) X with A = X Xᵀ."""
    return torch_steps(X.clone(), [(a, b, c)])


def reference_step(X: torch.Tensor, a: float, b: float, c: float) -> torch.Tensor:
    """The textbook step, written from the formula: three matmuls and separate sums."""
    A = X @ X.mT
    B = b * A + c * (A @ A)
    return a * X + B @ X


#: Where ``backend="auto"`` sends a CUDA tensor to the Triton kernels: (device-name substring,
#: compute dtype, smallest short side m) for which the kernels were *measured* faster than the
#: torch path. Empty until a GPU benchmark shows a win: on an H100 (torch 2.11, Triton 3.6,
#: bf16, 5 Muon steps, tuned tiles, issue 11) the kernels took 1.01–1.10× the torch path's
#: time at 4096² and beyond, 1.2× at a batch of 64 matrices 512² and 2.9–13× at the other
#: shapes below (``benchmarks/GPU_NOTES.md``), so "auto" uses the torch path on CUDA.
TRITON_FASTER: list[tuple[str, torch.dtype, int]] = []

#: On CUDA, the torch path computes A and A·A by row panels (:func:`torch_steps`) of
#: ``PANEL_ROWS`` rows when the short side is at least ``PANEL_FROM``. Measured on an H100
#: (bf16, 5 Muon steps): 0.85× the dense path's time at 8192², 0.91× at 4096×16384, and no
#: gain at 4096² (1.00×; 1024-row panels 1.08×), where each panel product is too small.
PANEL_FROM = 4096
PANEL_ROWS = 2048

#: Replay the torch path from CUDA graphs (:mod:`optimal_scaling.graphs`) for problems of at
#: most ``GRAPH_MAX_FLOPS`` dense FLOPs per step (batch·(4m²n + 2m³); 2³⁶ ≈ 6.9·10¹⁰ takes in
#: 2048² and a batch of 64 matrices 512²): below that the launches set much of the time (on
#: an H100 the graphs took single matrices up to 2²⁰ entries from 0.76–0.87× to 0.21–0.30× of
#: the eager textbook step, 2048² from 0.93× to 0.67×, and gained nothing at the batch of 64,
#: whose work is on the GPU). On unless ``OPTIMAL_SCALING_CUDA_GRAPHS=0``; ``GRAPHS.clear()``
#: frees the graphs.
CUDA_GRAPHS = os.environ.get("OPTIMAL_SCALING_CUDA_GRAPHS", "1") != "0"
GRAPH_MAX_FLOPS = 2**36
GRAPHS = GraphCache(maxsize=32)


def panel_rows(X: torch.Tensor) -> int | None:
    """The row panels the torch path uses for X (…, m, n), m ≤ n: None (dense) or a size."""
    return PANEL_ROWS if X.is_cuda and X.shape[-2] >= PANEL_FROM else None


def _graphed(X: torch.Tensor) -> bool:
    """Whether the torch path of X (…, m, n) is replayed from a CUDA graph."""
    if not (CUDA_GRAPHS and X.is_cuda):
        return False
    batch = math.prod(X.shape[:-2])
    return batch * step_flops(*X.shape[-2:]) <= GRAPH_MAX_FLOPS


def _triton_measured_faster(X: torch.Tensor, dtype: torch.dtype) -> bool:
    if not TRITON_FASTER or not X.is_cuda:
        return False
    name = torch.cuda.get_device_name(X.device)
    m = min(X.shape[-2:])
    return any(dev in name and dtype == dt and m >= lo for dev, dt, lo in TRITON_FASTER)


def _backend(backend: str, X: torch.Tensor, dtype: torch.dtype) -> str:
    """Which implementation runs: "triton" (CUDA, or Triton's interpreter) or "torch"."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if backend == "torch" or (backend == "auto" and not _triton_measured_faster(X, dtype)):
        return "torch"
    from optimal_scaling import kernels

    usable = kernels.available(X) and dtype in kernels.DTYPES
    if backend == "triton" and not usable:
        if dtype not in kernels.DTYPES:
            raise TypeError(f"the Triton kernels compute in {kernels.DTYPES}, not {dtype}")
        raise RuntimeError(
            "backend='triton' needs Triton and a CUDA tensor (or TRITON_INTERPRET=1 for "
            f"Triton's CPU interpreter); got a {X.device.type} tensor"
        )
    return "triton" if usable else "torch"


def normalize(
    X: torch.Tensor, margin: float = 1.01, eps: float = 0.0, check: bool = True
) -> torch.Tensor:
    """X / (margin·‖X‖_F + eps) per matrix, in fp32 (fp64 for fp64 input); zeros stay zeros.

    ‖X‖_F is accumulated in float64, where the squares of any fp32/bf16/fp16 entry neither
    overflow nor underflow, and the scale is applied as two factors √s·√s that stay inside the
    fp32 range: huge and tiny matrices normalize like moderate ones, in one pass for the norm.
    float64 input is first divided by its largest entry (one more pass, no sync), so entries
    near 10^±200 normalize too.
    ``check=True`` raises a ValueError for NaN or inf (one host sync); ``check=False`` syncs
    never: NaN or inf in a matrix make that matrix's result NaN. A tensor on the ``meta``
    device (shapes only) is never checked.
    """
    check = check and X.device.type != "meta"
    acc = torch.promote_types(X.dtype, torch.float32)
    if X.dtype == torch.float64:  # squares of float64 entries can over- or underflow:
        peak = X.abs().amax(dim=(-2, -1), keepdim=True)  # divide by the largest entry first
        peak = torch.where(peak > 0, peak, 1.0)
        # X/(m‖X‖ + ε) = X'/(m‖X'‖ + ε/peak) with X' = X/peak; ε = 0 stays 0 (0/peak would
        # be 0·(1/peak), NaN for a subnormal peak)
        X, eps = X / peak, (eps / peak if eps else 0.0)
    norm = torch.linalg.vector_norm(X, dim=(-2, -1), keepdim=True, dtype=torch.float64)
    if check and not bool(torch.isfinite(norm).all()):
        raise ValueError("orthogonalize: the input contains NaN or inf")
    denom = norm.mul_(margin)
    if isinstance(eps, torch.Tensor) or eps:
        denom.add_(eps)
    # 1/0 = inf → 0 (zeros stay zeros); NaN stays NaN; an inf norm gives 0, and 0·inf = NaN
    half = denom.reciprocal_().nan_to_num_(nan=math.nan, posinf=0.0).sqrt_().to(acc)
    return X * half * half  # (X's dtype promotes to acc)


def orthogonalize(
    G: torch.Tensor,
    steps: int = 5,
    schedule: str | Sequence = "muon",
    dtype: torch.dtype | None = None,
    margin: float = 1.01,
    eps: float = 0.0,
    backend: str = "auto",
    check: bool | None = None,
) -> torch.Tensor:
    """Approximate U Vᵀ for G of shape (..., m, n) with ``steps`` Newton–Schulz steps.

    X = G / (margin·‖G‖_F + eps) per matrix (:func:`normalize`; the original Muon uses margin 1,
    eps 10⁻⁷; margin ≥ 1 keeps every σ ≤ 1 since σ_max ≤ ‖G‖_F), transposed so that m ≤ n, then
    the steps in ``dtype`` (default: float32 on the CPU, bfloat16 on CUDA); the result has G's
    dtype and shape. A zero matrix gives zeros. ``check`` (default: on for CPU tensors, off for
    CUDA ones): NaN or inf in G raise a ValueError; unchecked, nothing waits for the GPU (no
    host synchronization) and a matrix with NaN or inf gives NaN. ``backend``: ``"torch"``,
    ``"triton"`` (the kernels of :mod:`optimal_scaling.kernels`), or ``"auto"``: the torch path,
    except on the GPUs and shapes where the kernels were measured faster
    (:data:`TRITON_FASTER`). On CUDA the torch path uses row panels for large matrices and,
    unchecked, CUDA graphs for small problems (:data:`CUDA_GRAPHS`; module docstring). No
    gradient flows through it: G is detached (an update direction, not a differentiable map).
    """
    if not isinstance(G, torch.Tensor) or G.ndim < 2:
        shape = tuple(G.shape) if isinstance(G, torch.Tensor) else type(G).__name__
        raise ValueError(f"orthogonalize expects a matrix (..., m, n), got {shape}")
    if not G.is_floating_point():
        raise TypeError(f"orthogonalize expects a floating-point tensor, got {G.dtype}")
    G = G.detach()
    steps = check_int("orthogonalize", "steps", steps, low=0)
    for name, value, low in (("margin", margin, 1.0), ("eps", eps, 0.0)):
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not math.isfinite(value) or not value >= low):
            why = (" (σ_max ≤ ‖G‖_F: below 1, a low-rank G has σ > 1, where the steps "
                   "diverge)") if name == "margin" and isinstance(value, numbers.Real) else ""
            raise ValueError(f"orthogonalize: {name} must be a finite number ≥ {low:g}, got "
                             f"{value!r}{why}")  # fmt: skip
    triples = coefficients(schedule, steps)
    dtype = dtype or (torch.bfloat16 if G.is_cuda else torch.float32)
    if dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        raise TypeError(f"orthogonalize computes in a floating dtype, got {dtype}")
    use = _backend(backend, G, dtype)
    if G.numel() == 0:
        return G.clone()
    check = not G.is_cuda if check is None else check
    run = functools.partial(_orthogonalize, triples=triples, dtype=dtype, margin=margin,
                            eps=eps, check=check, use=use)  # fmt: skip
    if use == "torch" and not check and _graphed(G):
        return GRAPHS(_graph_key(G, dtype, triples, margin, eps), run, G)
    return run(G)


def orthogonalize_each(
    matrices: Sequence[torch.Tensor],
    orth: Callable[[torch.Tensor], torch.Tensor],
    merge_transposes: bool = True,
) -> list[torch.Tensor]:
    """``orth`` of every matrix, one batched call per shape: [orth(M) for M in matrices].

    Matrices are stacked by shape (dtype and device too) and ``orth`` gets each stack
    (batch, m, n) with m ≤ n: tall matrices go in transposed, and their results come back
    transposed, which is exact for U Vᵀ (orth(Mᵀ) = orth(M)ᵀ). ``merge_transposes``: a
    d_out × d_in and a d_in × d_out matrix share one stack (fewer, larger calls).
    """
    buckets: dict[tuple, list[int]] = {}
    for k, M in enumerate(matrices):
        shape = sorted(M.shape) if merge_transposes else tuple(M.shape)
        buckets.setdefault((*shape, M.dtype, M.device), []).append(k)
    out: list[torch.Tensor | None] = [None] * len(matrices)
    for index in buckets.values():
        tall = [matrices[k].shape[0] > matrices[k].shape[1] for k in index]
        W = torch.stack([matrices[k].mT if t else matrices[k]
                         for k, t in zip(index, tall, strict=True)])  # fmt: skip
        for k, t, o in zip(index, tall, orth(W).unbind(0), strict=True):
            out[k] = o.mT if t else o
    return out  # type: ignore[return-value]


def _graph_key(G: torch.Tensor, dtype: torch.dtype, triples, margin: float, eps: float) -> tuple:
    """Everything that fixes the kernels a CUDA graph of :func:`_orthogonalize` holds: the
    problem, the settings, and the global modes that change what a product launches."""
    matmul = torch.backends.cuda.matmul
    return (tuple(G.shape), G.dtype, G.device, dtype, tuple(triples), margin, eps,
            torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cuda"),
            matmul.allow_tf32, matmul.allow_bf16_reduced_precision_reduction,
            matmul.allow_fp16_reduced_precision_reduction, PANEL_FROM, PANEL_ROWS)  # fmt: skip


def _orthogonalize(
    G: torch.Tensor,
    triples: Sequence[tuple[float, float, float]],
    dtype: torch.dtype,
    margin: float,
    eps: float,
    check: bool,
    use: str,
) -> torch.Tensor:
    """The work of :func:`orthogonalize` on validated arguments (what a CUDA graph holds)."""
    shape = G.shape
    X = G.reshape(-1, *shape[-2:]) if G.ndim > 3 else G
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = X.mT
    X = normalize(X, margin, eps, check).to(dtype, memory_format=torch.contiguous_format)
    if use == "triton":
        from optimal_scaling.kernels import ns_step

        for a, b, c in triples:
            X = ns_step(X, a, b, c)
    else:
        X = torch_steps(X, triples, panel_rows(X))
    if tall:
        X = X.mT
    return (X if X.shape == shape else X.reshape(shape)).to(G.dtype)
