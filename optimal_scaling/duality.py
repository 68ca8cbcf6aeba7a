r"""Duality maps (linear minimization oracles): a norm, its dual norm, the maximizer, an init.

Steepest descent under a norm ‖·‖ solves

    Δw* = argmin_Δ  ⟨G, Δ⟩ + (λ/2)·‖Δ‖²  =  −(‖G‖†/λ)·dualize(G),

where ⟨G, A⟩ = Σ G_ij A_ij is the Frobenius inner product, ‖G‖† = max_{‖A‖≤1} ⟨G, A⟩ is the
dual norm, and dualize(G) is that maximizer: ‖dualize(G)‖ = 1 and ⟨G, dualize(G)⟩ = ‖G‖†.
(Its negation, −dualize(G), is the linear minimization oracle of the unit ball.) Each map below
also knows the matching init: a random tensor of norm exactly 1 in the map's own norm.

    ===============  ======================  ==========================  =======================
    map              norm ‖W‖                dual norm ‖G‖†              dualize(G)
    ===============  ======================  ==========================  =======================
    Spectral         √(d_in/d_out)·σ_max(W)  √(d_out/d_in)·‖G‖_nuclear   √(d_out/d_in)·UVᵀ
    ColNorm          max_j ‖col_j‖_RMS       Σ_j √d_out·‖col_j(G)‖_2     col_j/‖col_j‖_RMS
    RowNorm          max_i √d_in·‖row_i‖_2   Σ_i ‖row_i(G)‖_2/√d_in      row_i/(√d_in·‖row_i‖_2)
    Sign (scaled)    d_in·max_ij |W_ij|      (1/d_in)·Σ|G_ij|            (1/d_in)·sign(G)
    Sign (unscaled)  max_ij |W_ij|           Σ|G_ij|                     sign(G)
    BiasRMS          ‖b‖_2/√n                √n·‖g‖_2                    g/‖g‖_RMS
    ConvSpectral     k·max_t ‖W_t‖_RMS→RMS   (1/k)·Σ_t √(o/i)·‖G_t‖_nuc  √(o/i)·U_tV_tᵀ/k
    ===============  ======================  ==========================  =======================

(G = UΣVᵀ is a reduced SVD; k = the number of kernel taps, kh·kw in 2-D, o = out channels,
i = in channels; Conv1DSpectral, Conv2DSpectral and Conv3DSpectral are its 1-, 2- and 3-D
kernels.) Every map is batched over leading dimensions: matrices are ``(..., d_out, d_in)``,
conv weights ``(..., out, in, *kernel)``; norms return ``shape[:-event_ndim]``. A zero
gradient dualizes to zeros (never NaN): a zero column (ColNorm), row (RowNorm), entry (Sign)
or matrix (Spectral) gives a zero block in dualize(G), and both identities still hold whenever
G ≠ 0.

Use :data:`MAPS` / :func:`get_map` to build a map by name, and :func:`steepest_descent_step`
for the update above.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from optimal_scaling.norms import _l1_to_inf, _l1_to_rms, _rms_to_inf, _rms_to_rms, check_tensor

__all__ = [
    "MAPS",
    "BiasRMS",
    "ColNorm",
    "CONV_MAPS",
    "Conv1DSpectral",
    "Conv2DSpectral",
    "Conv3DSpectral",
    "ConvSpectral",
    "DualityMap",
    "RowNorm",
    "Sign",
    "Spectral",
    "get_map",
    "steepest_descent_step",
]

SPECTRAL_METHODS: tuple[str, ...] = ("svd", "newton_schulz", "muon")


def _safe_div(x: Tensor, n: Tensor) -> Tensor:
    """x/n in x's dtype, with 0 where n == 0 (n broadcasts against x; it may be float64)."""
    q = x / n.clamp_min(torch.finfo(n.dtype).tiny)
    return torch.where(n > 0, q, torch.zeros_like(q)).to(x.dtype)


def _l2(G: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """‖·‖₂ along ``dim`` accumulated in float64: the squares of tiny fp32/bf16 entries
    (≲ 10⁻¹⁹) would underflow to 0 in their own dtype and make a nonzero gradient dualize to 0."""
    return torch.linalg.vector_norm(G, dim=dim, keepdim=keepdim, dtype=torch.float64)


def _batch_view(x: Tensor, event_ndim: int) -> Tensor:
    """Append ``event_ndim`` singleton dims to a per-batch quantity so it broadcasts."""
    return x.reshape(*x.shape, *([1] * event_ndim))


class DualityMap(ABC):
    """A norm on one kind of parameter, with its dual norm, duality map and init.

    Subclasses set ``name``, ``event_ndim`` (the trailing dims one element has: 2 for a matrix,
    1 for a vector, 4 for a conv weight) and implement ``_norm``, ``_dual_norm``, ``_dualize``,
    ``_init`` on validated input. ``check_finite=False`` skips the NaN/inf scan of the inputs
    (that scan synchronizes with a GPU).
    """

    name: ClassVar[str] = ""
    event_ndim: ClassVar[int] = 2
    event_desc: ClassVar[str] = "a matrix (..., d_out, d_in)"

    def __init__(self, *, check_finite: bool = True) -> None:
        self.check_finite = check_finite

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ----------------------------------------------------------------- validation
    def _check(self, x: Tensor) -> Tensor:
        return check_tensor(
            x,
            who=type(self).__name__,
            event_ndim=self.event_ndim,
            desc=self.event_desc,
            check_finite=self.check_finite,
        )

    def _check_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        who = type(self).__name__
        if isinstance(shape, int):
            shape = (shape,)
        try:
            ok = all(int(s) == s and not isinstance(s, bool) for s in shape)
        except (TypeError, ValueError):
            ok = False
        if not ok:  # int(4.5) would silently give 4
            raise TypeError(f"{who}.init: shape must be a sequence of ints, got {shape!r}")
        shape = tuple(int(s) for s in shape)
        if len(shape) < self.event_ndim:
            raise ValueError(f"{who}.init: expected {self.event_desc}, got shape {shape}")
        if any(s < 1 for s in shape):
            raise ValueError(f"{who}.init: every dimension must be positive, got shape {shape}")
        return shape

    def _check_pair(self, G: Tensor, A: Tensor) -> tuple[Tensor, Tensor]:
        G, A = self._check(G), self._check(A)
        if G.shape != A.shape:
            raise ValueError(
                f"{type(self).__name__}: shapes differ, {tuple(G.shape)} vs {tuple(A.shape)}"
            )
        return G, A

    # ----------------------------------------------------------------- public API
    def inner(self, G: Tensor, A: Tensor) -> Tensor:
        """⟨G, A⟩ = Σ G·A over the event dims (batched over leading dims)."""
        G, A = self._check_pair(G, A)
        dt = torch.promote_types(G.dtype, A.dtype)
        dims = tuple(range(-self.event_ndim, 0))
        return (G.to(dt) * A.to(dt)).sum(dim=dims)

    def norm(self, W: Tensor) -> Tensor:
        """‖W‖ in this map's norm, of shape ``W.shape[:-event_ndim]``."""
        return self._norm(self._check(W))

    def dual_norm(self, G: Tensor) -> Tensor:
        """‖G‖† = max_{‖A‖≤1} ⟨G, A⟩, of shape ``G.shape[:-event_ndim]``."""
        return self._dual_norm(self._check(G))

    def dualize(self, G: Tensor) -> Tensor:
        """The maximizer A* of ⟨G, A⟩ over ‖A‖ ≤ 1: ‖A*‖ = 1, ⟨G, A*⟩ = ‖G‖†; 0 ↦ 0.

        Returned in G's dtype (computed in float32 for half-precision input).
        """
        out = self._dualize(self._check(G))
        return out.to(G.dtype)

    def init(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """A random tensor of ``shape`` with norm exactly 1 in this map's norm.

        Drawn on the generator's device (the CPU without one) in float32/float64, then cast to
        ``dtype`` and moved to ``device``.
        """
        shape = self._check_shape(shape)
        if not isinstance(dtype, torch.dtype):
            raise TypeError(f"{type(self).__name__}.init: dtype must be a torch.dtype such as "
                            f"torch.float32, got {dtype!r}")  # fmt: skip
        if not dtype.is_floating_point:
            raise TypeError(f"{type(self).__name__}.init: dtype must be floating, got {dtype}")
        work = torch.float64 if dtype == torch.float64 else torch.float32
        gen_device = generator.device if generator is not None else torch.device("cpu")
        out = self._init(shape, generator, work, gen_device)
        return out.to(device=device if device is not None else out.device, dtype=dtype)

    # ----------------------------------------------------------------- subclass hooks
    @abstractmethod
    def _norm(self, W: Tensor) -> Tensor: ...

    @abstractmethod
    def _dual_norm(self, G: Tensor) -> Tensor: ...

    @abstractmethod
    def _dualize(self, G: Tensor) -> Tensor: ...

    @abstractmethod
    def _init(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None,
        dtype: torch.dtype,
        device: torch.device,
    ) -> Tensor: ...


# --------------------------------------------------------------------------- spectral helpers
def _orthogonalize(G: Tensor) -> Tensor:
    """U·Vᵀ from the reduced SVD of G (batched), dropping numerically zero singular values.

    The dropped directions make this the polar factor of G on its range (what Newton–Schulz
    converges to): a partial isometry with every nonzero singular value 1, and 0 for G = 0.
    G with NaN or inf entries gives NaN (LAPACK's SVD would raise on the CPU, CUDA's return
    NaN): unchecked bad input propagates, on every device, the way it does through Newton–Schulz.
    """
    try:
        U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    except torch.linalg.LinAlgError:
        if bool(torch.isfinite(G).all()):
            raise
        return torch.full_like(G, math.nan)
    tol = S[..., :1] * (max(G.shape[-2:]) * torch.finfo(G.dtype).eps)
    keep = ((S > tol) & (S > 0)).to(G.dtype)
    return (U * keep.unsqueeze(-2)) @ Vh


def _semi_orthogonal(
    shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype, device
) -> Tensor:
    """A random (..., m, n) matrix with orthonormal columns (m ≥ n) or rows (m < n).

    The Q factor of a Gaussian matrix with signs fixed by diag(R) > 0 (Haar distributed).
    """
    m, n = shape[-2:]
    A = torch.randn(shape, generator=generator, dtype=dtype, device=device)
    tall = m >= n
    Q, R = torch.linalg.qr(A if tall else A.mT)
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    Q = Q * torch.where(d < 0, -1.0, 1.0).to(dtype).unsqueeze(-2)
    return Q if tall else Q.mT


class _SpectralMethod:
    def _set_method(self, method: str) -> None:
        if method not in SPECTRAL_METHODS:
            raise ValueError(
                f"{type(self).__name__}: unknown method {method!r}; valid: "
                f"{', '.join(SPECTRAL_METHODS)}"
            )
        self.method = method

    def _orth(self, G: Tensor) -> Tensor:
        if self.method == "newton_schulz":
            # 8 Polar Express steps: within about 1 % of U Vᵀ for singular values in
            # [10⁻³, 1]·‖G‖_F (smaller ones are not resolved, as with any Newton–Schulz).
            from optimal_scaling.newton_schulz import orthogonalize

            # float32 on the CPU, bfloat16 on CUDA (as Muon); no host sync on CUDA
            check = None if self.check_finite else False  # unchecked: no host sync
            return orthogonalize(G, steps=8, schedule="polar_express", check=check)
        if self.method == "muon":
            # Muon's quintic, 5 steps: singular values land in about [0.68, 1.2], not at 1
            from optimal_scaling.newton_schulz import orthogonalize

            check = None if self.check_finite else False
            return orthogonalize(G, steps=5, schedule="muon", check=check)
        return _orthogonalize(G)


# --------------------------------------------------------------------------- the maps
class Spectral(_SpectralMethod, DualityMap):
    r"""The RMS→RMS operator norm of a linear layer (Muon / Scion's hidden-layer choice).

    norm ‖W‖ = √(d_in/d_out)·σ_max(W); dual ‖G‖† = √(d_out/d_in)·‖G‖_nuclear = √(d_out/d_in)·Σσ_i;
    dualize(G) = √(d_out/d_in)·U Vᵀ from the reduced SVD G = UΣVᵀ: the orthogonalized gradient,
    all of whose (nonzero) singular values are equal. init: a random semi-orthogonal matrix (QR
    of a Gaussian, sign-corrected) times √(d_out/d_in). ``method="svd"`` computes UVᵀ exactly;
    ``method="newton_schulz"`` approximates it with :mod:`optimal_scaling.newton_schulz` (8
    Polar Express steps), ``method="muon"`` with Muon's quintic (5 steps, as Muon and the
    norm-transfer paper) — which leaves singular values in [0.68, 1.13] when every σ ≥
    10⁻²·‖G‖_F and up to about 1.20 below that (smaller ones still, under ~1.5·10⁻³·‖G‖_F, end
    under 0.68), so there ‖dualize(G)‖ is only about 1, not exactly.
    """

    name = "spectral"

    def __init__(self, method: str = "svd", *, check_finite: bool = True) -> None:
        super().__init__(check_finite=check_finite)
        self._set_method(method)

    def __repr__(self) -> str:
        return f"Spectral(method={self.method!r})"

    def _norm(self, W: Tensor) -> Tensor:
        return _rms_to_rms(W)

    def _dual_norm(self, G: Tensor) -> Tensor:
        d_out, d_in = G.shape[-2:]
        return math.sqrt(d_out / d_in) * torch.linalg.matrix_norm(G, ord="nuc")

    def _dualize(self, G: Tensor) -> Tensor:
        d_out, d_in = G.shape[-2:]
        return math.sqrt(d_out / d_in) * self._orth(G)

    def _init(self, shape, generator, dtype, device) -> Tensor:
        d_out, d_in = shape[-2:]
        return math.sqrt(d_out / d_in) * _semi_orthogonal(shape, generator, dtype, device)


class ColNorm(DualityMap):
    r"""The ℓ1→RMS operator norm: the largest column RMS (Scion's choice for embeddings).

    norm ‖W‖ = max_j ‖col_j‖_RMS = max_j ‖W[:, j]‖_2/√d_out; dual ‖G‖† = Σ_j √d_out·‖col_j(G)‖_2;
    dualize(G): col_j(G)/‖col_j(G)‖_RMS (zero columns stay zero); init: a Gaussian with every
    column normalized to RMS 1. Columns are the input dimension of a (d_out, d_in) matrix, as
    in ``nn.Linear``; an ``nn.Embedding`` stores (vocab, d), so pass its weight transposed
    (Scion's groups do this with ``transpose=True``).
    """

    name = "colnorm"

    def _norm(self, W: Tensor) -> Tensor:
        return _l1_to_rms(W)

    def _dual_norm(self, G: Tensor) -> Tensor:
        return (math.sqrt(G.shape[-2]) * _l2(G, dim=-2).sum(-1)).to(G.dtype)

    def _dualize(self, G: Tensor) -> Tensor:
        col_rms = _l2(G, dim=-2, keepdim=True) / math.sqrt(G.shape[-2])
        return _safe_div(G, col_rms)

    def _init(self, shape, generator, dtype, device) -> Tensor:
        A = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return A / (torch.linalg.vector_norm(A, dim=-2, keepdim=True) / math.sqrt(shape[-2]))


class RowNorm(DualityMap):
    r"""The RMS→ℓ∞ operator norm: √d_in times the largest row ℓ2 norm (Scion's readout choice).

    norm ‖W‖ = max_i √d_in·‖row_i‖_2 = max_i d_in·‖row_i‖_RMS; dual ‖G‖† = Σ_i ‖row_i(G)‖_2/√d_in;
    dualize(G): (1/d_in)·row_i(G)/‖row_i(G)‖_RMS = row_i(G)/(√d_in·‖row_i(G)‖_2) (zero rows stay
    zero); init: a Gaussian with every row rescaled to ‖row_i‖_2 = 1/√d_in (row RMS 1/d_in), so
    the norm is exactly 1.
    """

    name = "rownorm"

    def _norm(self, W: Tensor) -> Tensor:
        return _rms_to_inf(W)

    def _dual_norm(self, G: Tensor) -> Tensor:
        return (_l2(G, dim=-1).sum(-1) / math.sqrt(G.shape[-1])).to(G.dtype)

    def _dualize(self, G: Tensor) -> Tensor:
        scale = math.sqrt(G.shape[-1]) * _l2(G, dim=-1, keepdim=True)
        return _safe_div(G, scale)

    def _init(self, shape, generator, dtype, device) -> Tensor:
        A = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return A / (math.sqrt(shape[-1]) * torch.linalg.vector_norm(A, dim=-1, keepdim=True))


class Sign(DualityMap):
    r"""The max-of-max norm, whose duality map is the sign of the gradient (sign descent).

    ``scaled=True`` (Scion's choice): norm ‖W‖ = d_in·max_ij |W_ij| (the operator norm from the
    mean-ℓ1 norm ‖x‖_1/d_in to ℓ∞), dual ‖G‖† = (1/d_in)·Σ|G_ij|, dualize(G) = (1/d_in)·sign(G).
    ``scaled=False``: norm max_ij |W_ij| (the ℓ1→ℓ∞ operator norm), dual Σ|G_ij|,
    dualize(G) = sign(G). sign(0) = 0 (torch.sign): a zero entry of G contributes nothing to
    ⟨G, A⟩, so leaving it 0 keeps both identities (⟨G, dualize(G)⟩ = ‖G‖†, and
    ‖dualize(G)‖ = 1 as long as one entry is nonzero) and makes dualize(0) = 0. init: random
    signs times 1/d_in (scaled) or 1 (unscaled).
    """

    name = "sign"

    def __init__(self, scaled: bool = True, *, check_finite: bool = True) -> None:
        super().__init__(check_finite=check_finite)
        self.scaled = bool(scaled)

    def __repr__(self) -> str:
        return f"Sign(scaled={self.scaled})"

    def _scale(self, d_in: int) -> float:
        return float(d_in) if self.scaled else 1.0

    def _norm(self, W: Tensor) -> Tensor:
        return self._scale(W.shape[-1]) * _l1_to_inf(W)

    def _dual_norm(self, G: Tensor) -> Tensor:
        return G.abs().sum(dim=(-2, -1)) / self._scale(G.shape[-1])

    def _dualize(self, G: Tensor) -> Tensor:
        return torch.sign(G) / self._scale(G.shape[-1])

    def _init(self, shape, generator, dtype, device) -> Tensor:
        bits = torch.randint(0, 2, shape, generator=generator, device=device).to(dtype)
        return (2 * bits - 1) / self._scale(shape[-1])


class BiasRMS(DualityMap):
    r"""The RMS norm of a bias vector (n,).

    norm ‖b‖ = ‖b‖_RMS = ‖b‖_2/√n; dual ‖g‖† = √n·‖g‖_2; dualize(g) = g/‖g‖_RMS (0 ↦ 0).
    init: zeros, the usual bias init and the one exception to "init has norm 1" (zero has
    norm 0). By default only a single vector is accepted, so that a weight matrix passed by
    mistake raises; ``batched=True`` treats ``(..., n)`` as a batch of vectors.
    """

    name = "bias_rms"
    event_ndim = 1
    event_desc = "a bias vector (n,)"

    def __init__(self, batched: bool = False, *, check_finite: bool = True) -> None:
        super().__init__(check_finite=check_finite)
        self.batched = bool(batched)

    def __repr__(self) -> str:
        return f"BiasRMS(batched={self.batched})"

    def _check(self, x: Tensor) -> Tensor:
        x = super()._check(x)
        if x.ndim != 1 and not self.batched:
            raise ValueError(
                f"BiasRMS: expected a bias vector (n,), got shape {tuple(x.shape)}; use a matrix "
                "map (e.g. 'spectral') for weights, or BiasRMS(batched=True) for a batch"
            )
        return x

    def _check_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = super()._check_shape(shape)
        if len(shape) != 1 and not self.batched:
            raise ValueError(f"BiasRMS.init: expected a bias vector shape (n,), got {shape}")
        return shape

    def _norm(self, W: Tensor) -> Tensor:
        return torch.linalg.vector_norm(W, dim=-1) / math.sqrt(W.shape[-1])

    def _dual_norm(self, G: Tensor) -> Tensor:
        return (math.sqrt(G.shape[-1]) * _l2(G, dim=-1)).to(G.dtype)

    def _dualize(self, G: Tensor) -> Tensor:
        return _safe_div(G, _l2(G, dim=-1, keepdim=True) / math.sqrt(G.shape[-1]))

    def _init(self, shape, generator, dtype, device) -> Tensor:
        return torch.zeros(shape, dtype=dtype, device=device)


class ConvSpectral(_SpectralMethod, DualityMap):
    r"""Spectral norm for conv weights (out, in, *kernel): one RMS→RMS norm per kernel tap.

    A conv layer is k = (number of kernel positions) linear maps W_t = W[:, :, t] (out × in),
    one per tap, whose outputs are summed: y(p) = Σ_t W_t x(p + t). If every input position
    has RMS at most 1, each output position has RMS ≤ Σ_t ‖W_t‖_{RMS→RMS} ≤ k·max_t
    ‖W_t‖_{RMS→RMS}, so the norm

        ‖W‖ = k·max_t √(in/out)·σ_max(W_t)

    bounds the layer's RMS→RMS gain (ignoring boundary effects). It is a max over taps, so its
    dual is a sum over taps, ‖G‖† = (1/k)·Σ_t √(out/in)·‖G_t‖_nuclear, maximized tap by tap:
    dualize(G)_t = √(out/in)·U_t V_tᵀ/k. init: an independent semi-orthogonal matrix per tap
    times √(out/in)/k (norm exactly 1). With a 1×…×1 kernel this is :class:`Spectral`.
    Subclasses fix the number of kernel dims: :class:`Conv1DSpectral` (``nn.Conv1d``, 3-D
    weights), :class:`Conv2DSpectral` (4-D), :class:`Conv3DSpectral` (5-D).
    """

    kernel_ndim: ClassVar[int] = 2

    def __init__(self, method: str = "svd", *, check_finite: bool = True) -> None:
        super().__init__(check_finite=check_finite)
        self._set_method(method)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r})"

    def _taps(self, W: Tensor) -> Tensor:
        """(..., out, in, *kernel) → (..., *kernel, out, in)."""
        n = self.kernel_ndim
        return W.movedim((-n - 2, -n - 1), (-2, -1))

    def _untaps(self, T: Tensor) -> Tensor:
        """(..., *kernel, out, in) → (..., out, in, *kernel)."""
        n = self.kernel_ndim
        return T.movedim((-2, -1), (-n - 2, -n - 1))

    def _kernel(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """(out, in, k) of a weight shape, k the number of taps."""
        n = self.kernel_ndim
        return shape[-n - 2], shape[-n - 1], math.prod(shape[-n:])

    def _norm(self, W: Tensor) -> Tensor:
        _, _, k = self._kernel(W.shape)
        return k * _rms_to_rms(self._taps(W)).amax(dim=tuple(range(-self.kernel_ndim, 0)))

    def _dual_norm(self, G: Tensor) -> Tensor:
        out, inp, k = self._kernel(G.shape)
        nuc = torch.linalg.matrix_norm(self._taps(G), ord="nuc")
        return math.sqrt(out / inp) * nuc.sum(dim=tuple(range(-self.kernel_ndim, 0))) / k

    def _dualize(self, G: Tensor) -> Tensor:
        out, inp, k = self._kernel(G.shape)
        return self._untaps(self._orth(self._taps(G))) * (math.sqrt(out / inp) / k)

    def _init(self, shape, generator, dtype, device) -> Tensor:
        out, inp, k = self._kernel(shape)
        n = self.kernel_ndim
        tap_shape = (*shape[: -n - 2], *shape[-n:], out, inp)
        Q = _semi_orthogonal(tap_shape, generator, dtype, device)
        return self._untaps(Q) * (math.sqrt(out / inp) / k)


class Conv1DSpectral(ConvSpectral):
    """:class:`ConvSpectral` for ``nn.Conv1d`` weights (out, in, k)."""

    name = "conv1d_spectral"
    kernel_ndim = 1
    event_ndim = 3
    event_desc = "a conv1d weight (..., out, in, k)"


class Conv2DSpectral(ConvSpectral):
    """:class:`ConvSpectral` for ``nn.Conv2d`` weights (out, in, kh, kw)."""

    name = "conv2d_spectral"
    kernel_ndim = 2
    event_ndim = 4
    event_desc = "a conv weight (..., out, in, kh, kw)"


class Conv3DSpectral(ConvSpectral):
    """:class:`ConvSpectral` for ``nn.Conv3d`` weights (out, in, kd, kh, kw)."""

    name = "conv3d_spectral"
    kernel_ndim = 3
    event_ndim = 5
    event_desc = "a conv3d weight (..., out, in, kd, kh, kw)"


#: The conv map for a weight with ``ndim`` dims (3, 4 or 5).
CONV_MAPS: dict[int, str] = {3: "conv1d_spectral", 4: "conv2d_spectral", 5: "conv3d_spectral"}


#: Map classes by name; build one with :func:`get_map`.
MAPS: dict[str, type[DualityMap]] = {
    "spectral": Spectral,
    "colnorm": ColNorm,
    "rownorm": RowNorm,
    "sign": Sign,
    "bias_rms": BiasRMS,
    "conv1d_spectral": Conv1DSpectral,
    "conv2d_spectral": Conv2DSpectral,
    "conv3d_spectral": Conv3DSpectral,
}


def get_map(name: str, **kwargs) -> DualityMap:
    """Build the duality map ``name`` (a key of :data:`MAPS`) with constructor ``kwargs``.

    >>> get_map("sign", scaled=False)
    Sign(scaled=False)
    """
    if not isinstance(name, str) or name.strip().lower() not in MAPS:
        raise ValueError(f"unknown duality map {name!r}; valid names: {', '.join(MAPS)}")
    return MAPS[name.strip().lower()](**kwargs)


def steepest_descent_step(G: Tensor, lmo: DualityMap | str, sharpness: float = 1.0) -> Tensor:
    """The steepest-descent update under ``lmo``'s norm: Δw = −(‖G‖†/λ)·dualize(G).

    It minimizes the model ⟨G, Δw⟩ + (λ/2)·‖Δw‖² (λ = ``sharpness`` > 0): writing Δw = −c·A with
    ‖A‖ = 1, the model is −c·⟨G, A⟩ + (λ/2)c², minimized by A = dualize(G) and c = ‖G‖†/λ, with
    minimum value −(‖G‖†)²/(2λ). ``lmo`` is a :class:`DualityMap` or a name from :data:`MAPS`.
    Returned in G's dtype; batched like the map.
    """
    if isinstance(lmo, str):
        lmo = get_map(lmo)
    if not isinstance(lmo, DualityMap):
        raise TypeError(
            f"steepest_descent_step: lmo must be a DualityMap or a name, got {type(lmo).__name__}"
        )
    if isinstance(sharpness, bool) or not isinstance(sharpness, (int, float)):
        raise TypeError(f"steepest_descent_step: sharpness must be a number, got {sharpness!r}")
    if not (math.isfinite(sharpness) and sharpness > 0):
        raise ValueError(
            f"steepest_descent_step: sharpness must be finite and > 0, got {sharpness}"
        )
    Gc = lmo._check(G)
    scale = _batch_view(lmo._dual_norm(Gc), lmo.event_ndim) / sharpness
    return (-scale * lmo._dualize(Gc)).to(G.dtype)
