"""Roles: declarations are found through wrappers and parents, and checked against the module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optimal_scaling.models import GPT
from optimal_scaling.optim import muon_with_adamw, scion_groups
from optimal_scaling.roles import param_roles
from optimal_scaling.tracking import NormTracker


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(vocab_size=32, context=8, width=16, depth=1, n_heads=2, mlp_ratio=2)


class WithProbe(nn.Module):
    """A parent that declares nothing: the GPT inside declares its own parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_gpt()
        self.probe = nn.Linear(16, 3)


def expected_roles(prefix: str) -> dict[str, str]:
    return {prefix + n: r for n, r in tiny_gpt().param_roles().items()}


@pytest.mark.parametrize(
    "wrap, prefix",
    [
        (lambda m: m, ""),
        (torch.compile, "_orig_mod."),  # compiled lazily: building the wrapper compiles nothing
        (lambda m: nn.ModuleDict({"module": m}), "module."),  # the shape of DDP(model)
    ],
    ids=["bare", "compiled", "wrapped"],
)
def test_declared_roles_survive_wrapping(wrap, prefix):
    model = wrap(tiny_gpt())
    roles = param_roles(model)
    assert roles == expected_roles(prefix)
    assert roles[prefix + "head.weight"] == "output"  # a guess would say hidden
    sign = [g for g in scion_groups(model) if g["norm"] == "sign"]
    assert [n for g in sign for n, _ in g["params"]] == [prefix + "head.weight"]
    muon = muon_with_adamw(model).optimizers[0]
    muon_names = {id(p) for g in muon.param_groups for p in g["params"]}
    assert id(dict(model.named_parameters())[prefix + "head.weight"]) not in muon_names
    tracker = NormTracker(model)
    assert tracker.params[prefix + "head.weight"][1] == "output"


def test_a_parent_keeps_the_childs_roles_and_guesses_only_its_own():
    roles = param_roles(WithProbe())
    assert {n: r for n, r in roles.items() if n.startswith("net.")} == expected_roles("net.")
    assert roles["probe.weight"] == "hidden" and roles["probe.bias"] == "bias"


def test_an_outer_declaration_wins_over_an_inner_one():
    class Outer(WithProbe):
        def param_roles(self):
            roles = {f"net.{n}": "hidden" for n, _ in self.net.named_parameters(
                remove_duplicate=False)}  # fmt: skip
            return roles | {"probe.weight": "output", "probe.bias": "bias"}

    roles = param_roles(Outer())
    assert roles["probe.weight"] == "output" and roles["net.head.weight"] == "hidden"


class Declared(nn.Module):
    def __init__(self, roles: dict[str, str]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.roles = roles

    def param_roles(self):
        return self.roles


FULL = {"fc.weight": "hidden", "fc.bias": "bias", "frozen.weight": "hidden",
        "frozen.bias": "bias"}  # fmt: skip


def test_a_declaration_must_name_every_parameter_frozen_ones_included():
    assert param_roles(Declared(FULL)) == FULL
    partial = {k: v for k, v in FULL.items() if not k.startswith("frozen.")}
    with pytest.raises(ValueError, match=r"Declared.param_roles\(\) gives no role for "
                       r"\['frozen.bias', 'frozen.weight'\].*frozen and tied"):  # fmt: skip
        param_roles(Declared(partial))
    with pytest.raises(ValueError, match=r"at 'inner'.*gives no role for \['fc.bias'\]"):
        param_roles(nn.ModuleDict({"inner": Declared({k: v for k, v in FULL.items()
                                                       if k != "fc.bias"})}))  # fmt: skip


def test_a_declaration_may_not_name_parameters_the_module_lacks():
    with pytest.raises(ValueError, match=r"names parameters the module does not have: "
                       r"\['fc.wieght'\]"):  # fmt: skip
        param_roles(Declared(FULL | {"fc.wieght": "hidden"}))


def test_an_unknown_role_names_the_parameter_and_who_declared_it():
    with pytest.raises(ValueError, match=r"fc.weight: unknown role 'matrix' from Declared"):
        param_roles(Declared(FULL | {"fc.weight": "matrix"}))


def test_scion_refuses_only_ties_whose_uses_want_different_norms():
    class SharedHidden(nn.Module):  # one matrix applied twice: both uses are hidden
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = self.a

    groups = scion_groups(SharedHidden())
    assert [[n for n, _ in g["params"]] for g in groups] == [["a.weight"]]

    torch.manual_seed(0)
    tied = GPT(vocab_size=32, context=8, width=16, depth=1, n_heads=2, mlp_ratio=2, tied=True)
    with pytest.raises(ValueError, match=r"shared as wte.weight \(input, stored transposed\), "
                       r"head.weight \(output\).*untie them.*or freeze"):  # fmt: skip
        scion_groups(tied)
    tied.wte.weight.requires_grad_(False)  # a frozen tied table has no update to norm
    names = [n for g in scion_groups(tied) for n, _ in g["params"]]
    assert "wte.weight" not in names and "head.weight" not in names and names


def test_every_name_lists_the_later_names_of_a_shared_parameter():
    torch.manual_seed(0)
    tied = GPT(vocab_size=32, context=8, width=16, depth=1, n_heads=2, mlp_ratio=2, tied=True)
    first, every = param_roles(tied), param_roles(tied, every_name=True)
    assert "head.weight" not in first and every["head.weight"] == "output"
    assert set(every) - set(first) == {"head.weight"} and every["wte.weight"] == "input"
