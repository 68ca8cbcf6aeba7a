"""A plain multilayer perceptron with named layer roles.

``MLP(d_in, width, d_out, depth)`` stacks ``depth`` linear layers::

    x ──input──▶ φ ──hidden[0]──▶ φ ── … ──hidden[depth−3]──▶ φ ──output──▶ y
      d_in→width       width→width                 width→width       width→d_out

so it has ``depth − 2`` hidden (width×width) matrices. The names ``input``, ``hidden`` and
``output`` are the roles that parametrizations (μP and friends) act on. With biases, the
parameter count is

    N = (d_in + 1)·w + (depth − 2)·(w + 1)·w + (w + 1)·d_out,

and without them N = d_in·w + (depth − 2)·w² + w·d_out.
"""

from __future__ import annotations

import torch
from torch import nn

from optimal_scaling._validate import check_int
from optimal_scaling.models.layers import Linear

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


class MLP(nn.Module):
    """Multilayer perceptron: ``depth`` linear layers of width ``width`` (``depth ≥ 2``).

    Weights start from N(0, 1/fan_in) and biases from zero (the standard parametrization);
    a :class:`~optimal_scaling.parametrization.Parametrization` can re-initialize them.
    """

    def __init__(
        self,
        d_in: int,
        width: int,
        d_out: int,
        depth: int = 3,
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        d_in, width, d_out = (check_int("MLP", name, value, low=1) for name, value in
                              (("d_in", d_in), ("width", width), ("d_out", d_out)))  # fmt: skip
        depth = check_int("MLP", "depth", depth, low=2, note="(it counts linear layers)")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"MLP: unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}"
            )
        self.config = dict(
            d_in=d_in, width=width, d_out=d_out, depth=depth, activation=activation, bias=bias
        )
        self.d_in, self.width, self.d_out, self.depth = d_in, width, d_out, depth
        self.input = Linear(d_in, width, bias=bias)
        self.hidden = nn.ModuleList(Linear(width, width, bias=bias) for _ in range(depth - 2))
        self.output = Linear(width, d_out, bias=bias)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise ValueError(
                f"MLP expects inputs with last dimension {self.d_in}, got {tuple(x.shape)}"
            )
        h = self.act(self.input(x))
        for layer in self.hidden:
            h = self.act(layer(h))
        return self.output(h)

    def param_roles(self) -> dict[str, str]:
        """Role of every parameter: ``input``, ``hidden``, ``output`` or ``bias``."""
        roles = {}
        for name, _ in self.named_parameters():
            layer = name.split(".")[0]
            roles[name] = "bias" if name.endswith("bias") else layer
        return roles

    def num_params(self) -> int:
        """Number of trainable scalars, counted from the tensors themselves."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
