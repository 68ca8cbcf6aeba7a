r"""Induced operator norms of weight matrices, and a warm-started power iteration.

A weight matrix ``W`` has shape ``(..., d_out, d_in)`` (the ``torch.nn.Linear`` layout); leading
dimensions are a batch, and every norm below returns a tensor of shape ``W.shape[:-2]`` (a 0-dim
tensor for a plain matrix). The vector norms are

    ‖x‖_1 = Σ|x_i|,   ‖x‖_2 = √(Σ x_i²),   ‖x‖_∞ = max|x_i|,   ‖x‖_RMS = ‖x‖_2/√d,

and the operator norm induced by an input norm α and an output norm β is

    ‖W‖_{α→β} = max_{x≠0} ‖Wx‖_β / ‖x‖_α.

The closed forms implemented here (``col_j = W[:, j]``, ``row_i = W[i, :]``):

    ==========  ==============================================  ===========================
    name        closed form                                     where the max is attained
    ==========  ==============================================  ===========================
    spectral    σ_max(W)                      (ℓ2 → ℓ2)         top right singular vector
    rms->rms    √(d_in/d_out)·σ_max(W)        (RMS → RMS)       top right singular vector
    l1->rms     max_j ‖col_j‖_2/√d_out        (ℓ1 → RMS)        a basis vector e_j
    rms->inf    max_i √d_in·‖row_i‖_2         (RMS → ℓ∞)        x ∝ row_i
    l1->inf     max_ij |W_ij|                 (ℓ1 → ℓ∞)         a basis vector e_j
    l1->l2      max_j ‖col_j‖_2               (ℓ1 → ℓ2)         a basis vector e_j
    ==========  ==============================================  ===========================

An ℓ1 input norm is maximized at a vertex of the ℓ1 ball (a basis vector), so ℓ1→β norms are the
largest β-norm of a column; an ℓ∞ output norm splits into one problem per row, each solved by
Cauchy–Schwarz at x ∝ row_i. :func:`induced_norm_bruteforce` evaluates the definition directly
(over random vectors plus these candidates), which is how the tests check the closed forms.

:class:`PowerIteration` keeps one right-singular-vector estimate per key between calls, so that
tracking σ_max(W) at every training step costs 2·iters + 1 matrix-vector products (5 at the
default 2 iterations) instead of an SVD.

Inputs are validated: a tensor of a real floating dtype, at least 2-D, non-empty, finite. Half
precision (float16/bfloat16) is upcast to float32 for the computation; float32/float64 are kept.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import torch
from torch import Tensor

from optimal_scaling._validate import check_int

__all__ = [
    "NORMS",
    "NORM_PAIRS",
    "VECTOR_NORMS",
    "PowerIteration",
    "check_tensor",
    "induced_norm_bruteforce",
    "l1_to_inf",
    "l1_to_l2",
    "l1_to_rms",
    "operator_norm",
    "rms",
    "rms_to_inf",
    "rms_to_rms",
    "spectral",
    "spectral_estimate",
    "vector_norm",
]

#: The operator-norm names understood by :func:`operator_norm`.
NORMS: tuple[str, ...] = ("spectral", "rms->rms", "l1->rms", "rms->inf", "l1->inf", "l1->l2")

#: Each operator norm as the (input, output) vector norms that induce it.
NORM_PAIRS: dict[str, tuple[str, str]] = {
    "spectral": ("l2", "l2"),
    "rms->rms": ("rms", "rms"),
    "l1->rms": ("l1", "rms"),
    "rms->inf": ("rms", "inf"),
    "l1->inf": ("l1", "inf"),
    "l1->l2": ("l1", "l2"),
}

#: The vector-norm names understood by :func:`vector_norm` and :func:`induced_norm_bruteforce`.
VECTOR_NORMS: tuple[str, ...] = ("l1", "l2", "rms", "inf")

_EVENT_DESC = {1: "a vector (..., n)", 2: "a matrix (..., d_out, d_in)"}


# ---------------------------------------------------------------------------- validation
def check_tensor(
    x: object,
    *,
    who: str,
    event_ndim: int = 2,
    desc: str | None = None,
    check_finite: bool = True,
) -> Tensor:
    """Validate ``x`` and return it in a compute dtype (float32 or float64).

    Raises ``TypeError`` for a non-tensor or a non-real-floating dtype, ``ValueError`` for fewer
    than ``event_ndim`` dimensions, an empty tensor, or (with ``check_finite``) NaN/inf entries.
    Every message starts with ``who``. Half-precision input is upcast to float32.
    ``check_finite=False`` skips the NaN/inf scan (which synchronizes with a GPU).
    """
    desc = desc or _EVENT_DESC.get(event_ndim, f"a tensor with at least {event_ndim} dims")
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: expected a torch.Tensor ({desc}), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{who}: expected a real floating-point tensor (float32 or float64), got {x.dtype}"
        )
    if x.ndim < event_ndim:
        raise ValueError(f"{who}: expected {desc}, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{who}: got an empty tensor of shape {tuple(x.shape)}")
    if check_finite and not bool(torch.isfinite(x).all()):
        bad = "NaN" if bool(torch.isnan(x).any()) else "inf"
        raise ValueError(f"{who}: input contains {bad} entries (shape {tuple(x.shape)})")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x


def _check_name(name: object, valid: tuple[str, ...], what: str) -> str:
    if isinstance(name, str):
        key = name.strip().lower().replace("→", "->")
        if key in valid:
            return key
    raise ValueError(f"unknown {what} {name!r}; valid names: {', '.join(valid)}")


# ---------------------------------------------------------------------------- vector norms
def vector_norm(x: Tensor, kind: str, dim: int = -1) -> Tensor:
    """The vector norm ``kind`` ∈ {"l1", "l2", "rms", "inf"} of ``x`` along ``dim``.

    ‖x‖_1 = Σ|x_i|, ‖x‖_2 = √Σx_i², ‖x‖_RMS = ‖x‖_2/√d, ‖x‖_∞ = max|x_i|.
    """
    kind = _check_name(kind, VECTOR_NORMS, "vector norm")
    if kind == "l1":
        return x.abs().sum(dim)
    if kind == "l2":
        return torch.linalg.vector_norm(x, dim=dim)
    if kind == "rms":
        return torch.linalg.vector_norm(x, dim=dim) / math.sqrt(x.shape[dim])
    return x.abs().amax(dim)


def rms(x: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Entrywise root-mean-square: ``‖x‖_F/√numel`` (over ``dim`` if given).

    Meant as a monitor (activations, updates), so NaN/inf propagate into the result instead of
    raising; only non-float input is an error.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"rms: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"rms: expected a real floating-point tensor, got {x.dtype}")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x.square().mean(dim=dim).sqrt() if dim is not None else x.square().mean().sqrt()


# ---------------------------------------------------------------------------- closed forms
# Unchecked kernels (also used by optimal_scaling.duality after its own validation).
def _spectral(W: Tensor) -> Tensor:
    return torch.linalg.matrix_norm(W, ord=2)


def _rms_to_rms(W: Tensor) -> Tensor:
    d_out, d_in = W.shape[-2:]
    return math.sqrt(d_in / d_out) * _spectral(W)


def _l1_to_l2(W: Tensor) -> Tensor:
    return torch.linalg.vector_norm(W, dim=-2).amax(-1)


def _l1_to_rms(W: Tensor) -> Tensor:
    return _l1_to_l2(W) / math.sqrt(W.shape[-2])


def _rms_to_inf(W: Tensor) -> Tensor:
    return math.sqrt(W.shape[-1]) * torch.linalg.vector_norm(W, dim=-1).amax(-1)


def _l1_to_inf(W: Tensor) -> Tensor:
    return W.abs().amax(dim=(-2, -1))


def spectral(W: Tensor) -> Tensor:
    """σ_max(W) = ‖W‖_{ℓ2→ℓ2}, exactly (an SVD), batched over leading dims."""
    return _spectral(check_tensor(W, who="spectral"))


def rms_to_rms(W: Tensor) -> Tensor:
    """‖W‖_{RMS→RMS} = √(d_in/d_out)·σ_max(W)."""
    return _rms_to_rms(check_tensor(W, who="rms_to_rms"))


def l1_to_rms(W: Tensor) -> Tensor:
    """‖W‖_{ℓ1→RMS} = max_j ‖col_j‖_RMS = max_j ‖W[:, j]‖_2/√d_out."""
    return _l1_to_rms(check_tensor(W, who="l1_to_rms"))


def rms_to_inf(W: Tensor) -> Tensor:
    """‖W‖_{RMS→ℓ∞} = max_i √d_in·‖row_i‖_2 = max_i d_in·‖row_i‖_RMS."""
    return _rms_to_inf(check_tensor(W, who="rms_to_inf"))


def l1_to_inf(W: Tensor) -> Tensor:
    """‖W‖_{ℓ1→ℓ∞} = max_ij |W_ij|."""
    return _l1_to_inf(check_tensor(W, who="l1_to_inf"))


def l1_to_l2(W: Tensor) -> Tensor:
    """‖W‖_{ℓ1→ℓ2} = max_j ‖col_j‖_2."""
    return _l1_to_l2(check_tensor(W, who="l1_to_l2"))


_KERNELS = {
    "spectral": _spectral,
    "rms->rms": _rms_to_rms,
    "l1->rms": _l1_to_rms,
    "rms->inf": _rms_to_inf,
    "l1->inf": _l1_to_inf,
    "l1->l2": _l1_to_l2,
}


def operator_norm(W: Tensor, name: str) -> Tensor:
    """The operator norm ``name`` (one of :data:`NORMS`) of ``W``, batched over leading dims.

    ``"rms→rms"`` (a Unicode arrow) is accepted as a spelling of ``"rms->rms"``.
    """
    key = _check_name(name, NORMS, "operator norm")
    return _KERNELS[key](check_tensor(W, who=f"operator_norm({key!r})"))


# ---------------------------------------------------------------------------- brute force
def induced_norm_bruteforce(
    W: Tensor,
    alpha: str,
    beta: str,
    samples: int = 4096,
    generator: torch.Generator | None = None,
    extra: Tensor | None = None,
) -> Tensor:
    """max over candidate vectors x of ‖Wx‖_β/‖x‖_α, the definition of ‖W‖_{α→β}, searched.

    For a plain 2-D ``W`` (d_out, d_in) and α, β ∈ {"l1", "l2", "rms", "inf"}. The candidates are
    ``samples`` Gaussian vectors, the basis vectors e_j (the vertices of the ℓ1 ball), the rows
    of W and their signs (the maximizers for a ℓ∞ output norm), sign vectors (the vertices of
    the ℓ∞ ball: all 2^d_in of them when d_in ≤ 12, else ``samples`` random ones), and the rows
    of ``extra`` (k, d_in) if given (e.g. the top right singular vector). The result is a lower
    bound on the true norm, exact whenever a maximizer is among the candidates. Computed in
    float64; returns a 0-dim tensor of W's compute dtype (float32 for half precision).
    """
    W = check_tensor(W, who="induced_norm_bruteforce")
    if W.ndim != 2:
        raise ValueError(
            f"induced_norm_bruteforce: expected a plain matrix (d_out, d_in), got shape "
            f"{tuple(W.shape)}"
        )
    alpha = _check_name(alpha, VECTOR_NORMS, "vector norm")
    beta = _check_name(beta, VECTOR_NORMS, "vector norm")
    samples = check_int("induced_norm_bruteforce", "samples", samples, low=1)
    dtype = W.dtype
    W = W.detach().to("cpu", torch.float64)
    d_in = W.shape[1]
    gen_kw = {"generator": generator} if generator is not None else {}
    basis = torch.eye(d_in, dtype=torch.float64)
    if d_in <= 12:
        codes = torch.arange(2**d_in).unsqueeze(1) >> torch.arange(d_in)
        signs = (codes & 1).to(torch.float64) * 2 - 1
    else:
        signs = torch.randint(0, 2, (samples, d_in), **gen_kw).to(torch.float64) * 2 - 1
    parts = [
        torch.randn(samples, d_in, dtype=torch.float64, **gen_kw),
        basis,  # -e_j is redundant: every norm here is symmetric
        W,
        torch.sign(W),
        signs,
    ]
    if extra is not None:
        extra = check_tensor(extra, who="induced_norm_bruteforce(extra)", event_ndim=1)
        if extra.shape[-1] != d_in:  # a reshape would silently regroup the entries
            raise ValueError(f"induced_norm_bruteforce: extra holds vectors of length "
                             f"{extra.shape[-1]}, W takes {d_in}")  # fmt: skip
        parts.append(extra.detach().to("cpu", torch.float64).reshape(-1, d_in))
    X = torch.cat(parts)
    X = X[vector_norm(X, alpha) > 0]
    ratios = vector_norm(X @ W.T, beta) / vector_norm(X, alpha)
    return ratios.max().to(dtype)


# ---------------------------------------------------------------------------- power iteration
def _random_unit(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else "cpu"
    v = torch.randn(shape, generator=generator, dtype=torch.float64, device=device)
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def _power_iterate(W: Tensor, v: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """``iters`` alternating steps u = Wv/‖Wv‖, v = Wᵀu/‖Wᵀu‖; returns (‖Wv‖, v).

    Where an update is zero (a zero matrix) the previous v is kept, so zeros give σ = 0.
    """
    tiny = torch.finfo(W.dtype).tiny
    for _ in range(iters):
        u = (W @ v.unsqueeze(-1)).squeeze(-1)
        u = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(tiny)
        w = (W.mT @ u.unsqueeze(-1)).squeeze(-1)
        n = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
        v = torch.where(n > 0, w / n.clamp_min(tiny), v)
    sigma = torch.linalg.vector_norm((W @ v.unsqueeze(-1)).squeeze(-1), dim=-1)
    return sigma, v


def _check_iters(iters: object, who: str) -> int:
    return check_int(who, "iters", iters, low=0)


@torch.no_grad()
def spectral_estimate(
    W: Tensor, iters: int = 20, generator: torch.Generator | None = None
) -> Tensor:
    """σ_max(W) by ``iters`` steps of power iteration on WᵀW from a random (cold) start.

    A lower bound on σ_max: the vector converges like (σ₂/σ₁)^(2·iters), the estimate's
    relative error falls like (σ₂/σ₁)^(4·iters) (a Rayleigh quotient); batched over leading dims;
    zero matrices give 0. The start vector is drawn from ``generator`` (default: torch's global
    RNG on the CPU). Gradients are not tracked.
    """
    iters = _check_iters(iters, "spectral_estimate")
    W = check_tensor(W, who="spectral_estimate").detach()
    v = _random_unit((*W.shape[:-2], W.shape[-1]), generator).to(W.device, W.dtype)
    return _power_iterate(W, v, iters)[0]


class PowerIteration:
    """σ_max(W) by power iteration, warm-started from the vector it found last time.

    >>> W = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    >>> exact = torch.linalg.matrix_norm(W, ord=2)
    >>> est = PowerIteration(iters=2, seed=0)
    >>> [round(float(est(W, key="W") / exact), 3) for step in range(5)]  # 5 mat-vecs a call
    [0.881, 0.949, 0.979, 0.991, 0.996]
    >>> round(float(est.rms_to_rms(W, key="W") / exact), 3)  # √(d_in/d_out)·σ_max = √½·σ
    0.706

    One right-singular-vector estimate v (shape ``W.shape[:-2] + (d_in,)``) is stored per
    ``key`` (default: the shape of W, so give distinct keys to distinct tensors of equal shape).
    Each call runs ``iters`` steps of v ← Wᵀ(Wv)/‖·‖ and returns ‖Wv‖ ≤ σ_max(W), batched
    over leading dims. A key seen for the first time, or whose shape changed, starts from a
    fresh random vector drawn from this object's own generator (seeded by ``seed``). Once v has
    converged for W, a slightly changed W (one training step later) needs only 1–2 iterations:
    the warm start is the point. Zero matrices give 0 (the stored vector is kept). Computation
    runs without autograd; ``check_finite=False`` skips the NaN/inf check (a GPU sync).
    """

    def __init__(self, iters: int = 2, seed: int | None = None, check_finite: bool = True):
        self.iters = _check_iters(iters, "PowerIteration")
        self.check_finite = check_finite
        self._generator = torch.Generator()
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)
        self._vectors: dict[Hashable, Tensor] = {}

    def __repr__(self) -> str:
        return f"PowerIteration(iters={self.iters}, tracked={len(self._vectors)})"

    def __len__(self) -> int:
        return len(self._vectors)

    def vector(self, key: Hashable) -> Tensor | None:
        """The stored right-singular-vector estimate for ``key`` (None if there is none)."""
        return self._vectors.get(key)

    def reset(self, key: Hashable | None = None) -> None:
        """Forget the stored vector for ``key``, or all of them when ``key`` is None."""
        if key is None:
            self._vectors.clear()
        else:
            self._vectors.pop(key, None)

    @torch.no_grad()
    def __call__(self, W: Tensor, key: Hashable | None = None, iters: int | None = None) -> Tensor:
        """The σ_max(W) estimate (shape ``W.shape[:-2]``), updating the stored vector."""
        W = check_tensor(W, who="PowerIteration", check_finite=self.check_finite).detach()
        iters = self.iters if iters is None else _check_iters(iters, "PowerIteration")
        key = tuple(W.shape) if key is None else key
        shape = (*W.shape[:-2], W.shape[-1])
        v = self._vectors.get(key)
        if v is None or tuple(v.shape) != shape:
            v = _random_unit(shape, self._generator)
        v = v.to(W.device, W.dtype)
        sigma, v = _power_iterate(W, v, iters)
        self._vectors[key] = v
        return sigma

    def rms_to_rms(
        self, W: Tensor, key: Hashable | None = None, iters: int | None = None
    ) -> Tensor:
        """The ‖W‖_{RMS→RMS} = √(d_in/d_out)·σ_max(W) estimate."""
        d_out, d_in = W.shape[-2:] if isinstance(W, Tensor) and W.ndim >= 2 else (1, 1)
        return math.sqrt(d_in / d_out) * self(W, key=key, iters=iters)
