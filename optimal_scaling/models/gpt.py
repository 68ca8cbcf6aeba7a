"""A compact decoder-only transformer (GPT) whose width, depth and parametrization are knobs.

    tokens ─▶ wte + wpe ─▶ [ x += β·Attn(norm(x));  x += β·MLP(norm(x)) ] × depth ─▶ norm ─▶ head

* pre-RMSNorm blocks; causal attention through ``F.scaled_dot_product_attention`` with a
  settable logit scale (1/√d_head by default, μP's 1/d_head when a parametrization asks);
* ``norm_before_linear=True`` puts an RMSNorm before *every* linear layer (also before the
  attention output projection and the second MLP matrix), as in the norm-transfer setting;
* ``tied=True`` shares the token embedding with the output head (initialized as the head,
  N(0, 1/width), so the logits start O(1); as an N(0, 1) embedding their std would be √width);
* ``β`` (``branch_multiplier``, 1 by default) scales the residual branches for depth scaling.

Llama-style knobs (all off by default; the norm-transfer preset turns every one on):

* ``positions="rope"``: rotary position embeddings on q and k (no learned position table):
  the pair (x_{2i}, x_{2i+1}) at position t is rotated by the angle t·θ_i, θ_i = 10000^(−2i/d_head);
* ``mlp="swiglu"``: proj(silu(gate(x)) ⊙ up(x)), two separate hidden matrices, no GELU;
* ``qk_norm=True``: RMSNorm of every head's query and key before their dot product;
* ``norm_gain=False``: every RMSNorm is parameter-free (x/RMS(x), no gain);
* ``scaled_branch_init=True``: the last linear layer of each residual branch (attention output,
  MLP down projection) is multiplied by 1/√(2·depth) after initialization
  (:meth:`GPT.scale_branch_init`; re-applied by whoever re-initializes the weights).

Every parameter has a role (``input``: embeddings, ``hidden``: block matrices, ``output``: the
head, ``gain``: norm gains, ``bias``) that parametrizations act on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from optimal_scaling._validate import check_int
from optimal_scaling.models.layers import Embedding, Linear, RMSNorm


def rotary_tables(context: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of t·θ_i, θ_i = 10000^(−2i/head_dim), each of shape (context, head_dim/2)."""
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
    theta = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(context, dtype=torch.float64), theta)
    return angles.cos().float(), angles.sin().float()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_{2i}, x_{2i+1}) of x (..., t, d) by the angles of its position."""
    t = x.shape[-2]
    c, s = cos[:t].to(x.dtype), sin[:t].to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * c - odd * s, even * s + odd * c), dim=-1).flatten(-2)


class Attention(nn.Module):
    """Multi-head causal self-attention; ``logit_scale`` multiplies q·k (default 1/√d_head)."""

    def __init__(self, width: int, n_heads: int, bias: bool, norm_before_linear: bool,
                 qk_norm: bool = False, gain: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.n_heads, self.head_dim = n_heads, width // n_heads
        self.logit_scale = self.head_dim**-0.5
        self.qkv = Linear(width, 3 * width, bias=bias)
        self.proj = Linear(width, width, bias=bias)
        self.proj_norm = RMSNorm(width, gain) if norm_before_linear else nn.Identity()
        self.q_norm = RMSNorm(self.head_dim, gain) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, gain) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> torch.Tensor:  # fmt: skip
        q, k, v = rearrange(
            self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.n_heads
        )
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.logit_scale)
        return self.proj(self.proj_norm(rearrange(y, "b h t d -> b t (h d)")))


class FeedForward(nn.Module):
    """width → mlp_ratio·width → GELU → width, or SwiGLU: proj(silu(gate(x)) ⊙ up(x))."""

    def __init__(self, width: int, ratio: int, bias: bool, norm_before_linear: bool,
                 kind: str = "gelu", gain: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.kind = kind
        self.fc = Linear(width, ratio * width, bias=bias)  # the gate for SwiGLU
        self.up = Linear(width, ratio * width, bias=bias) if kind == "swiglu" else None
        self.proj = Linear(ratio * width, width, bias=bias)
        self.proj_norm = RMSNorm(ratio * width, gain) if norm_before_linear else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.fc(x)) * self.up(x) if self.up is not None else F.gelu(self.fc(x))
        return self.proj(self.proj_norm(h))


class Block(nn.Module):
    """x ← x + β·Attn(norm(x)); x ← x + β·MLP(norm(x))."""

    def __init__(self, width, n_heads, mlp_ratio, bias, norm_before_linear, mlp="gelu",
                 qk_norm=False, gain=True) -> None:  # fmt: skip
        super().__init__()
        self.branch_multiplier = 1.0
        self.attn_norm = RMSNorm(width, gain)
        self.attn = Attention(width, n_heads, bias, norm_before_linear, qk_norm, gain)
        self.mlp_norm = RMSNorm(width, gain)
        self.mlp = FeedForward(width, mlp_ratio, bias, norm_before_linear, mlp, gain)

    def forward(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        x = x + self.branch_multiplier * self.attn(self.attn_norm(x), rope)
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
        positions: str = "learned",
        mlp: str = "gelu",
        qk_norm: bool = False,
        norm_gain: bool = True,
        scaled_branch_init: bool = False,
    ) -> None:
        super().__init__()
        sizes = self.check_sizes(vocab_size, context, width, depth, n_heads, mlp_ratio,
                                 positions, mlp)  # fmt: skip
        vocab_size, context, width, depth, n_heads, mlp_ratio = sizes.values()  # as ints
        self.config = dict(sizes, tied=tied, norm_before_linear=norm_before_linear, bias=bias,
                           positions=positions, mlp=mlp, qk_norm=qk_norm, norm_gain=norm_gain,
                           scaled_branch_init=scaled_branch_init)  # fmt: skip
        self.vocab_size, self.context, self.width, self.depth = vocab_size, context, width, depth
        self.wte = Embedding(vocab_size, width)
        self.wpe = Embedding(context, width) if positions == "learned" else None
        if positions == "rope":
            cos, sin = rotary_tables(context, width // n_heads)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.blocks = nn.ModuleList(
            Block(width, n_heads, mlp_ratio, bias, norm_before_linear, mlp, qk_norm, norm_gain)
            for _ in range(depth)
        )
        self.norm = RMSNorm(width, norm_gain)
        self.head = Linear(width, vocab_size, bias=False)
        if tied:  # the shared tensor starts as the head, N(0, 1/width): logits O(1) at init
            self.head.weight = self.wte.weight
            nn.init.normal_(self.wte.weight, std=width**-0.5)
        self.scale_branch_init()

    @torch.no_grad()
    def scale_branch_init(self) -> None:
        """With ``scaled_branch_init``, multiply each branch's last linear by 1/√(2·depth).

        Call it again after anything re-initializes the weights (a parametrization's or an
        optimizer's init); without the option it does nothing.
        """
        if not self.config["scaled_branch_init"]:
            return
        factor = (2 * self.depth) ** -0.5
        for block in self.blocks:
            block.attn.proj.weight.mul_(factor)
            block.mlp.proj.weight.mul_(factor)

    @staticmethod
    def check_sizes(
        vocab_size: int, context: int, width: int, depth: int, n_heads: int, mlp_ratio: int,
        positions: str = "learned", mlp: str = "gelu",
    ) -> dict[str, int]:
        """Raise a ValueError naming the size or option that cannot build a GPT; return the
        sizes."""
        sizes = {
            "vocab_size": vocab_size,
            "context": context,
            "width": width,
            "depth": depth,
            "n_heads": n_heads,
            "mlp_ratio": mlp_ratio,
        }
        sizes = {name: check_int("GPT", name, value, low=1) for name, value in sizes.items()}
        width, n_heads = sizes["width"], sizes["n_heads"]
        if width % n_heads:
            raise ValueError(f"GPT: width {width} is not divisible by n_heads {n_heads}")
        if positions not in ("learned", "rope"):
            raise ValueError(f"GPT: unknown positions {positions!r}; choose learned or rope")
        if mlp not in ("gelu", "swiglu"):
            raise ValueError(f"GPT: unknown mlp {mlp!r}; choose gelu or swiglu")
        if positions == "rope" and (width // n_heads) % 2:
            raise ValueError(f"GPT: rope needs an even head dimension, got width {width} / "
                             f"n_heads {n_heads} = {width // n_heads}")  # fmt: skip
        return sizes

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, time, vocab) for token ids of shape (batch, time), each id in
        [0, vocab_size) (checked for CPU tensors)."""
        if idx.ndim != 2:
            raise ValueError(
                f"GPT expects token ids of shape (batch, time), got {tuple(idx.shape)}"
            )
        if idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"GPT expects token ids of dtype int64 or int32, got {idx.dtype} "
                            "(convert with idx.long())")  # fmt: skip
        t = idx.shape[1]
        if t > self.context:
            raise ValueError(f"sequence length {t} exceeds the model's context {self.context}")
        vocab = self.wte.num_embeddings
        # checked on the CPU only (on a GPU the check would wait for the device each call),
        # and not inside torch.compile (it would break the graph)
        eager_cpu = idx.device.type == "cpu" and not torch.compiler.is_compiling()
        if eager_cpu and idx.numel() and not 0 <= int(idx.min()) <= int(idx.max()) < vocab:
            raise ValueError(f"GPT: token ids must lie in [0, {vocab}), got ids from "
                             f"{int(idx.min())} to {int(idx.max())}")  # fmt: skip
        x = self.wte(idx)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(t, device=idx.device))
        else:
            rope = (self.rope_cos, self.rope_sin)
        for block in self.blocks:
            x = block(x, rope)
        return self.head(self.norm(x))

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, new_tokens: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """Extend each row of ``idx`` by ``new_tokens`` tokens, one at a time.

        Token t+1 is drawn from softmax(logits_t / temperature) with ``generator`` (on the
        model's device), or is the argmax when ``temperature`` is 0 (greedy). The model sees
        at most its last ``context`` tokens. Returns ``(batch, time + new_tokens)``; the
        model's train/eval mode is left as it was.
        """
        check_int("generate", "new_tokens", new_tokens)
        if not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"generate: temperature must be finite and ≥ 0, got {temperature}")
        if idx.ndim != 2 or idx.shape[1] < 1:
            raise ValueError(f"generate: the prompt is (batch, time) with time ≥ 1 token, got "
                             f"shape {tuple(idx.shape)}")  # fmt: skip
        if generator is not None and generator.device.type != idx.device.type:
            raise ValueError(f"generate: the generator is on {generator.device} but the tokens "
                             f"are on {idx.device}; use torch.Generator(device=...)")  # fmt: skip
        was_training = self.training
        self.eval()
        try:
            for _ in range(new_tokens):
                logits = self(idx[:, -self.context :])[:, -1].float()
                if temperature == 0:
                    nxt = logits.argmax(-1, keepdim=True)
                else:  # shift by the max first: a tiny temperature cannot overflow to inf − inf
                    shifted = logits - logits.max(-1, keepdim=True).values
                    probs = torch.softmax(shifted / temperature, dim=-1)
                    nxt = torch.multinomial(probs, 1, generator=generator)
                idx = torch.cat([idx, nxt], dim=1)
        finally:
            self.train(was_training)
        return idx

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
            n -= 0 if self.wpe is None else self.wpe.weight.numel()
            n -= 0 if self.config["tied"] else self.wte.weight.numel()
        return n
