"""Layer roles, and the norm each role is measured and updated in: one table, one guesser.

Every parameter has a role: ``input`` (embeddings), ``hidden`` (matrices inside the network),
``output`` (the readout), ``gain`` (norm gains) or ``bias``. Models from
:mod:`optimal_scaling.models` say so themselves (``param_roles()``); for any other model
:func:`param_roles` guesses: an ``nn.Embedding`` weight is ``input``, any other tensor with
two or more dimensions ``hidden`` (a readout counts as hidden there: name it by giving the
model a ``param_roles()``), a 1-D tensor ``bias`` if its name ends in "bias", else ``gain``.

:data:`PRESETS` is the table of role → norm (names of :mod:`optimal_scaling.duality` maps);
Scion's ``norm="auto"`` uses ``"colnorm-spectral-sign"``, the norm tracker and the
norm-transfer setting ``"colnorm-spectral-rownorm"``. An ``nn.Embedding`` weight is stored
(vocab, d), the transpose of the map one-hot → vector: its norm is taken on Wᵀ
(:func:`transposed`).
"""

from __future__ import annotations

from torch import nn

__all__ = ["PRESETS", "ROLES", "param_roles", "transposed"]

ROLES: tuple[str, ...] = ("input", "hidden", "output", "gain", "bias")

#: role → norm, per preset. Gains and biases take the RMS norm of a vector.
PRESETS: dict[str, dict[str, str]] = {
    "colnorm-spectral-sign": {
        "input": "colnorm", "hidden": "spectral", "output": "sign",
        "gain": "bias_rms", "bias": "bias_rms",
    },
    "colnorm-spectral-rownorm": {
        "input": "colnorm", "hidden": "spectral", "output": "rownorm",
        "gain": "bias_rms", "bias": "bias_rms",
    },
}  # fmt: skip


def _owner(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model


def param_roles(model: nn.Module) -> dict[str, str]:
    """The role of every distinct parameter (its first name when shared), checked.

    From ``model.param_roles()`` when the model has one, else guessed (module docstring).
    """
    declared = model.param_roles() if hasattr(model, "param_roles") else None
    roles = {}
    for name, p in model.named_parameters():
        if declared is not None:
            role = declared[name]
        elif isinstance(_owner(model, name), nn.Embedding):
            role = "input"
        elif p.ndim >= 2:
            role = "hidden"
        else:
            role = "bias" if name.endswith("bias") else "gain"
        if role not in ROLES:
            raise ValueError(f"{name}: unknown role {role!r}; expected one of {ROLES}")
        roles[name] = role
    return roles


def transposed(model: nn.Module, name: str) -> bool:
    """Whether parameter ``name`` is stored as the transpose of its map (an embedding table)."""
    return isinstance(_owner(model, name), nn.Embedding)
