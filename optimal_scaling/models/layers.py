"""Building blocks that carry a *forward multiplier*, the ``a`` of an abc-parametrization.

A parametrization (see :mod:`optimal_scaling.parametrization`) sets three things per layer:
the init std of its weights, a constant ``multiplier`` applied in the forward pass, and the
learning rate. The first and last live on tensors and optimizer groups; the multiplier lives
here, on the module:

    Linear:     y = multiplier · (x Wᵀ) + b
    Embedding:  y = multiplier · W[token]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Linear(nn.Linear):
    """``nn.Linear`` with a forward multiplier (1 by default) and init N(0, 1/fan_in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.multiplier = 1.0

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=self.in_features**-0.5)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)
        if self.multiplier != 1.0:
            y = y * self.multiplier
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return super().extra_repr() + f", multiplier={self.multiplier:g}"


class Embedding(nn.Embedding):
    """``nn.Embedding`` (init N(0, 1)) with a forward multiplier."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.multiplier = 1.0

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        y = super().forward(idx)
        return y * self.multiplier if self.multiplier != 1.0 else y


class RMSNorm(nn.Module):
    """x / RMS(x) · g, with RMS(x) = √(mean(x²) + ε); the gain g is optional."""

    def __init__(self, dim: int, gain: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(dim)) if gain else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (self.dim,), self.weight, self.eps)
