"""Data sources. Nothing is ever downloaded: data is generated from a seed or read from disk.

``TeacherTask``: regression on the outputs of a fixed random "teacher" network,

    y = v·tanh(s·W x / √d_in) / √k,   x ~ N(0, I_d_in),   W_ij, v_i ~ N(0, 1),  k = teacher width,

a task that never runs out of fresh samples, so "more data" simply means more steps.
"""

from __future__ import annotations

import torch


class TeacherTask:
    """Fresh ``(x, y)`` batches from a fixed random one-hidden-layer tanh teacher.

    ``scale`` (s above) sets how nonlinear the target is; the irreducible loss is zero.
    """

    def __init__(self, d_in: int = 32, width: int = 256, scale: float = 2.0, seed: int = 0):
        if d_in < 1 or width < 1:
            raise ValueError(f"TeacherTask: d_in and width must be ≥ 1, got {d_in}, {width}")
        g = torch.Generator().manual_seed(seed)
        self.d_in, self.width, self.scale = d_in, width, scale
        self.W = torch.randn(width, d_in, generator=g) * (scale / d_in**0.5)
        self.v = torch.randn(width, generator=g) / width**0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The target ``y`` (shape ``(batch, 1)``) for inputs ``x`` (shape ``(batch, d_in)``)."""
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(
                f"TeacherTask expects x of shape (batch, {self.d_in}), got {tuple(x.shape)}"
            )
        W, v = self.W.to(x), self.v.to(x)
        return (torch.tanh(x @ W.T) @ v).unsqueeze(-1)

    def batch(
        self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh batch ``(x, y)`` drawn on the CPU from ``generator``, moved to ``device``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        x = torch.randn(batch_size, self.d_in, generator=generator)
        return x.to(device), self(x).to(device)
