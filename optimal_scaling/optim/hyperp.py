r"""HyperP: Muon on the Frobenius sphere, and why weight decay does nothing there.

Each matrix W keeps the Frobenius norm r = ‖W₀‖_F it had when the optimizer first updated it
(recorded, before that first update, in the state as ``init_norm``). One step is a Muon step
followed by a projection back onto the sphere:

    W' ← Muon step of W                (momentum, orthogonalize, W·(1 − ηλ), − η·s·O)
    W  ← r · W' / ‖W'‖_F

Weight decay is a radial move, and the projection removes radial moves. Exactly: on the sphere,
(1 − ηλ)·W − η·s·O = (1 − ηλ)·(W − η'·s·O) with η' = η/(1 − ηλ), and the projection forgets
the factor (1 − ηλ). So a step with weight decay λ equals a step without it at the learning rate
η' = η + η²λ + O(η³): the two differ by O(η²), i.e. not at first order.
:func:`weight_decay_gap` measures that difference; halving η divides it by about 4.
"""

from __future__ import annotations

import torch
from torch import Tensor

from optimal_scaling.optim._checks import describe
from optimal_scaling.optim.muon import Muon

__all__ = ["HyperP", "weight_decay_gap"]


class HyperP(Muon):
    """Muon whose matrices stay on the sphere ‖W‖_F = ‖W₀‖_F; see the module docstring.

    Same arguments as :class:`~optimal_scaling.optim.muon.Muon`. A matrix that is all zeros when
    first updated has no sphere to stay on and raises a ValueError.
    """

    who = "HyperP"
    state_keys = ("momentum_buffer", "init_norm")

    def _init_state(self, p: Tensor, state: dict, name: str | None) -> None:
        if "init_norm" not in state:  # (a Muon state loaded into HyperP: its current norm)
            radius = torch.linalg.vector_norm(p)
            if p.device.type not in ("cuda", "meta") and p.numel() and not radius > 0:
                # (no sync on CUDA: a zero matrix gives NaN there; meta holds no values)
                raise ValueError(
                    f"HyperP: {describe(p, name)} has Frobenius norm 0, so there is no sphere "
                    "to keep it on; initialize it before the first step"
                )
            state["init_norm"] = radius
        super()._init_state(p, state, name)

    def _after_update(self, p: Tensor, state: dict) -> None:
        p.mul_(state["init_norm"] / torch.linalg.vector_norm(p))  # W ← r·W/‖W‖_F


def weight_decay_gap(W: Tensor, G: Tensor, lr: float, weight_decay: float, **muon_kwargs) -> float:
    """max |W_λ − W_0| after one HyperP step from W with gradient G, with and without decay.

    W_λ uses ``weight_decay``, W_0 none; everything else (``lr``, ``muon_kwargs``) is shared.
    The gap is O(lr²) (see the module docstring): halving ``lr`` divides it by about 4. Work in
    float64 (W, G and ``dtype=torch.float64``) to see the ratio cleanly at small ``lr``.
    """
    out = []
    for wd in (weight_decay, 0.0):
        p = W.detach().clone().requires_grad_(True)
        p.grad = G.detach().clone()
        HyperP([p], lr=lr, weight_decay=wd, **muon_kwargs).step()
        out.append(p.detach())
    return float((out[0] - out[1]).abs().max())
