"""A compact decoder-only transformer (GPT) whose width, depth and parametrization are knobs.

    tokens ─▶ wte + wpe ─▶ [ x += β·Attn(norm(x));  x += β·MLP(norm(x)) ] × depth ─▶ norm ─▶ head

* pre-RMSNorm blocks; causal attention through ``F.scaled_dot_product_attention`` with a
  settable logit scale (1/√d_head by default, μP's 1/d_head when a parametrization asks);
* ``norm_before_linear=True`` puts an RMSNorm before *every* linear layer (also before the
  attention output projection and the second MLP matrix), as in the norm-transfer setting;
* ``tied=True`` shares the token embedding with the output head;
* ``β`` (``branch_multiplier``, 1 by default) scales the residual branches for depth scaling.

Every parameter has a role (``input``: embeddings, ``hidden``: block matrices, ``output``: the
head, ``gain``: norm gains, ``bias``) that parametrizations act on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from optimal_scaling.models.layers import Embedding, Linear, RMSNorm


class Attention(nn.Module):
    """Multi-head causal self-attention; ``logit_scale`` multiplies q·k (default 1/√d_head)."""

    def __init__(self, width: int, n_heads: int, bias: bool, norm_before_linear: bool) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, width // n_heads
        self.logit_scale = self.head_dim**-0.5
        self.qkv = Linear(width, 3 * width, bias=bias)
        self.proj = Linear(width, width, bias=bias)
        self.proj_norm = RMSNorm(width) if norm_before_linear else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(
            self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.n_heads
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.logit_scale)
        return self.proj(self.proj_norm(rearrange(y, "b h t d -> b t (h d)")))


class FeedForward(nn.Module):
    """width → mlp_ratio·width → GELU → width."""

    def __init__(self, width: int, ratio: int, bias: bool, norm_before_linear: bool) -> None:
        super().__init__()
        self.fc = Linear(width, ratio * width, bias=bias)
        self.proj = Linear(ratio * width, width, bias=bias)
        self.proj_norm = RMSNorm(ratio * width) if norm_before_linear else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.proj_norm(F.gelu(self.fc(x))))


class Block(nn.Module):
    """x ← x + β·Attn(norm(x)); x ← x + β·MLP(norm(x))."""

    def __init__(self, width, n_heads, mlp_ratio, bias, norm_before_linear) -> None:
        super().__init__()
        self.branch_multiplier = 1.0
        self.attn_norm = RMSNorm(width)
        self.attn = Attention(width, n_heads, bias, norm_before_linear)
        self.mlp_norm = RMSNorm(width)
        self.mlp = FeedForward(width, mlp_ratio, bias, norm_before_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.branch_multiplier * self.attn(self.attn_norm(x))
        return x + self.branch_multiplier * self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    """Decoder-only transformer over ``vocab_size`` tokens and ``context`` positions."""

    def __init__(
        self,
        vocab_size: int = 256,
        context: int = 64,
        width: int = 128,
        depth: int = 2,
        n_heads: int = 4,
        mlp_ratio: int = 4,
        tied: bool = False,
        norm_before_linear: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        sizes = self.check_sizes(vocab_size, context, width, depth, n_heads, mlp_ratio)
        self.config = dict(sizes, tied=tied, norm_before_linear=norm_before_linear, bias=bias)
        self.vocab_size, self.context, self.width, self.depth = vocab_size, context, width, depth
        self.wte = Embedding(vocab_size, width)
        self.wpe = Embedding(context, width)
        self.blocks = nn.ModuleList(
            Block(width, n_heads, mlp_ratio, bias, norm_before_linear) for _ in range(depth)
        )
        self.norm = RMSNorm(width)
        self.head = Linear(width, vocab_size, bias=False)
        if tied:
            self.head.weight = self.wte.weight

    @staticmethod
    def check_sizes(
        vocab_size: int, context: int, width: int, depth: int, n_heads: int, mlp_ratio: int
    ) -> dict[str, int]:
        """Raise a ValueError naming the size that cannot build a GPT; return the sizes."""
        sizes = {
            "vocab_size": vocab_size,
            "context": context,
            "width": width,
            "depth": depth,
            "n_heads": n_heads,
            "mlp_ratio": mlp_ratio,
        }
        for name, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPT: {name} must be a positive int, got {value!r}")
        if width % n_heads:
            raise ValueError(f"GPT: width {width} is not divisible by n_heads {n_heads}")
        return sizes

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, time, vocab) for token ids of shape (batch, time)."""
        if idx.ndim != 2:
            raise ValueError(
                f"GPT expects token ids of shape (batch, time), got {tuple(idx.shape)}"
            )
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"GPT expects integer token ids, got {idx.dtype}")
        t = idx.shape[1]
        if t > self.context:
            raise ValueError(f"sequence length {t} exceeds the model's context {self.context}")
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def param_roles(self) -> dict[str, str]:
        """Role of every parameter: input, hidden, output, gain or bias."""
        roles = {}
        for name, p in self.named_parameters(remove_duplicate=False):  # head.weight when tied
            if name.startswith(("wte.", "wpe.")):
                roles[name] = "input"
            elif name.startswith("head."):
                roles[name] = "output"
            elif name.endswith("bias"):
                roles[name] = "bias"
            elif p.ndim == 1:
                roles[name] = "gain"
            else:
                roles[name] = "hidden"
        return roles

    def num_params(self, non_embedding: bool = False) -> int:
        """Trainable scalars (optionally without the embeddings, as in scaling-law counts)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wpe.weight.numel() + (0 if self.config["tied"] else self.wte.weight.numel())
        return n
