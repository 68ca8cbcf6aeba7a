"""Layer roles, and the norm each role is measured and updated in: one table, one guesser.

Every parameter has a role: ``input`` (embeddings), ``hidden`` (matrices inside the network),
``output`` (the readout), ``gain`` (norm gains) or ``bias``. Models from
:mod:`optimal_scaling.models` say so themselves (``param_roles()``, found on the model or on any
submodule, so ``DDP(model)``, ``torch.compile(model)`` or a parent network keep them); for
parameters no module declares, :func:`param_roles` guesses: an ``nn.Embedding`` weight is
``input``, any other tensor with two or more dimensions ``hidden`` (a readout counts as hidden
there: name it by giving the model a ``param_roles()``), a 1-D tensor ``bias`` if its name ends
in "bias", else ``gain``.

:data:`PRESETS` is the table of role → norm (names of :mod:`optimal_scaling.duality` maps);
Scion's ``norm="auto"`` uses ``"colnorm-spectral-sign"``, the norm tracker and the
norm-transfer setting ``"colnorm-spectral-rownorm"``. An ``nn.Embedding`` weight is stored
(vocab, d), the transpose of the map one-hot → vector: its norm is taken on Wᵀ
(:func:`transposed`).
"""

from __future__ import annotations

from torch import nn

__all__ = ["PRESETS", "ROLES", "owner", "param_roles", "transposed"]

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


def owner(model: nn.Module, name: str) -> nn.Module:
    """The module that holds parameter ``name``."""
    return model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model


def _declarations(model: nn.Module) -> dict[str, tuple[str, str]]:
    """name → (role, declaring module's path), from every submodule whose class has ``param_roles``.

    Wrappers (DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``, a parent network) prefix the
    declared names with the path of the declaring module; an outer declaration wins over an inner
    one. A declaration must name each of its module's parameters (frozen and tied ones included)
    and nothing else.
    """
    found: dict[str, tuple[str, str]] = {}
    for path, module in model.named_modules():
        if not callable(getattr(type(module), "param_roles", None)):
            continue  # a class attribute: torch.compile forwards instance lookups to the model
        where = f"{type(module).__name__}.param_roles()" + (f" (at {path!r})" if path else "")
        declared = module.param_roles()
        names = {n for n, _ in module.named_parameters(remove_duplicate=False)}
        missing = sorted(names - set(declared))
        if missing:
            raise ValueError(
                f"{where} gives no role for {missing}; it must name every parameter of the "
                "module, frozen and tied ones included"
            )
        stray = sorted(set(declared) - names)
        if stray:
            raise ValueError(f"{where} names parameters the module does not have: {stray}")
        prefix = f"{path}." if path else ""
        for name, role in declared.items():
            found.setdefault(prefix + name, (role, where))
    return found


def _guess(model: nn.Module, name: str, p: nn.Parameter) -> str:
    if isinstance(owner(model, name), nn.Embedding):
        return "input"
    if p.ndim >= 2:
        return "hidden"
    return "bias" if name.endswith("bias") else "gain"


def param_roles(model: nn.Module, every_name: bool = False) -> dict[str, str]:
    """The role of every distinct parameter (its first name when shared), checked.

    Declared by ``param_roles()`` on the model or on any submodule (so a wrapped or compiled
    model keeps its roles), else guessed (module docstring). ``every_name=True`` also lists the
    later names of a shared parameter (the readout of tied embeddings), each with its own role.
    """
    declared = _declarations(model)
    roles = {}
    for name, p in model.named_parameters(remove_duplicate=not every_name):
        role, where = declared.get(name) or (_guess(model, name, p), "guessed")
        if role not in ROLES:
            raise ValueError(f"{name}: unknown role {role!r} from {where}; expected one of {ROLES}")
        roles[name] = role
    return roles


def transposed(model: nn.Module, name: str) -> bool:
    """Whether parameter ``name`` is stored as the transpose of its map (an embedding table)."""
    return isinstance(owner(model, name), nn.Embedding)
