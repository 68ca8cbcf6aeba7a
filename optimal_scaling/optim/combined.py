"""Several torch optimizers driven as one (Muon for the matrices, AdamW for the rest).

One ``torch.optim.Optimizer`` runs one algorithm, and Muon cannot update embeddings, gains or
biases. Rather than re-implementing AdamW inside Muon, :class:`CombinedOptimizer` holds a list of
ordinary optimizers over disjoint parameters and forwards ``step``, ``zero_grad``,
``state_dict`` and ``load_state_dict`` to each. ``param_groups`` is the concatenation of theirs
(the same dicts), so setting ``group["lr"]`` on it works. It is not itself a
``torch.optim.Optimizer``, so an ``LRScheduler`` cannot wrap it: give each member its own
scheduler (``combined.optimizers[i]``), or write the learning rates into ``param_groups``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from optimal_scaling.optim._checks import closure_loss

__all__ = ["CombinedOptimizer"]


class CombinedOptimizer:
    """Drive ``optimizers`` (over disjoint parameters) as one optimizer."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        optimizers = list(optimizers)
        if not optimizers:
            raise ValueError("CombinedOptimizer needs at least one optimizer")
        seen: set[int] = set()
        for opt in optimizers:
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(
                    f"CombinedOptimizer: expected torch optimizers, got {type(opt).__name__}"
                )
            ids = {id(p) for g in opt.param_groups for p in g["params"]}
            if ids & seen:
                raise ValueError("CombinedOptimizer: a parameter belongs to two optimizers")
            seen |= ids
        self.optimizers = optimizers

    def __repr__(self) -> str:
        inner = ", ".join(type(o).__name__ for o in self.optimizers)
        return f"CombinedOptimizer([{inner}])"

    @property
    def param_groups(self) -> list[dict]:
        """Every member's param groups, in order (the member's own dicts)."""
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Evaluate ``closure`` once (with gradients), then step every member."""
        loss = closure_loss(closure)
        for opt in self.optimizers:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        """``{"optimizers": [member.state_dict(), ...]}``."""
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get("optimizers") if isinstance(state_dict, dict) else None
        if not isinstance(saved, list) or len(saved) != len(self.optimizers):
            n = len(saved) if isinstance(saved, list) else "no"
            raise ValueError(
                f"CombinedOptimizer: the state dict holds {n} optimizers, this one "
                f"{len(self.optimizers)}"
            )
        for opt, sd in zip(self.optimizers, saved, strict=True):
            opt.load_state_dict(sd)
