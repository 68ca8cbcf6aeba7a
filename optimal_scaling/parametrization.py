r"""abc-parametrizations: how init, forward multipliers and learning rates scale with width.

An abc-parametrization gives each weight matrix ``W`` of a layer three width exponents:
a forward multiplier ``n^{-a}`` (the layer computes ``n^{-a}·W x``), an init
``W ~ N(0, n^{-2b})`` and a learning rate ``η·n^{-c}``. A model built at width ``n`` is
compared with a *base* model of width ``n₀``, where the hyperparameters were tuned, and every
rule below is written with the width ratios of each tensor,

    r_in = fan_in / fan_in₀,   r_out = fan_out / fan_out₀,

so that a preset reproduces its base model exactly at ``n = n₀``. Each parameter has a role:
``input`` (first layer or embeddings: only fan_out grows), ``hidden`` (both grow), ``output``
(readout: only fan_in grows), ``bias`` and ``gain`` (vectors of size fan_out).

μP, Tensor Programs V, **Table 3 form** (``form="table3"``, the default here), with σ the
standard init 1/√fan_in (1 for embeddings, whose one-hot inputs have fan_in 1 in effect):

    ==================  ================  ======================  ============
                        input & biases    output                  hidden
    ==================  ================  ======================  ============
    init variance       1/fan_in          1/fan_in²  (σ₀²/r_in²)  1/fan_in
    multiplier          1                 1                       1
    SGD LR              fan_out (r_out)   1/fan_in  (1/r_in)      1
    Adam LR             1                 1/fan_in  (1/r_in)      1/fan_in (1/r_in)
    Adam ε              1/r_out           1                       1/r_out
    ==================  ================  ======================  ============

**Table 8 form** (``form="table8"``, the one microsoft/mup implements) differs only in the
output layer, by the abc symmetry (a, b, c) → (a+θ, b−θ, c−θ) for Adam (c−2θ for SGD) with
θ = 1: a fixed init σ₀, a multiplier 1/r_in, Adam LR 1 (SGD LR r_in) and Adam ε 1/r_in. Both
forms train the same function without weight decay (the symmetry does not cover it: decoupled
decay shrinks by lr·wd, and the output layer's lr differs between the forms); Table 8 also
allows tied embeddings.

Adam's ε must scale like the gradient entries of its tensor, or it swamps the update at
large width: under μP the gradient of every tensor scales like the backpropagated signal at
its output, 1/r_out (the output layer's is Θ(1) in Table 3, Θ(1/n) in Table 8).

Other presets:

* ``sp``: the standard parametrization (init std 1/√fan_in, everything else fixed; the exponent
  of PyTorch's default ``nn.Linear`` init, whose uniform draw has std 1/√(3·fan_in)).
* ``ntk``: N(0, σ₀²) weights with multiplier 1/√r_in (the same function at init as SP),
  constant learning rates. With SGD, training falls into the kernel regime as width grows
  (the features freeze); with Adam, whose update entries are Θ(lr) whatever the width, the
  features' updates grow with width instead (unstable at a fixed learning rate).
* ``spectral``: init and learning rate from the spectral condition (Yang, Simon & Bernstein):
  σ = (1/√fan_in)·min(1, √(fan_out/fan_in)) (fan_in = 1 for embeddings), SGD LR ∝ fan_out/fan_in,
  Adam LR ∝ 1/fan_in. Its exponents are μP's (Table 3); only the constants differ.

Depth (``depth_alpha``): every residual branch is multiplied by (L/L₀)^−α; hidden-matrix
learning rates by (L/L₀)^(α−1) with Adam and (L/L₀)^(2α−1) with SGD. α = ½ is depth-μP,
α = 1 is CompleteP. Attention logits use 1/d_head under μP and spectral (written
√d_head₀/d_head so the base model keeps 1/√d_head₀), 1/√d_head otherwise.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import nn

from optimal_scaling._validate import check_int

PRESETS = ("sp", "mup", "ntk", "spectral")
ALIASES = {"mup_adam": ("mup", "adam"), "mup_sgd": ("mup", "sgd")}
OPTIMIZERS = ("adam", "sgd")
FORMS = ("table3", "table8")
ROLES = ("input", "hidden", "output", "bias", "gain")


@dataclass(frozen=True)
class ParamRule:
    """What a parametrization decides for one parameter tensor."""

    name: str
    role: str
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    r_in: float
    r_out: float
    init_std: float | None  # None: constant init (biases 0, gains 1)
    multiplier: float  # forward multiplier of the owning module (weights only)
    lr_mult: float
    eps_mult: float


def _owner(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model


def _fans(model: nn.Module, name: str, p: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a tensor; embeddings read one-hot inputs of size num_embeddings."""
    if p.ndim == 1:
        return 1, p.shape[0]
    if p.ndim != 2:
        raise ValueError(f"parametrization: {name} has shape {tuple(p.shape)}; expected 1-D or 2-D")
    if isinstance(_owner(model, name), nn.Embedding):
        return p.shape[0], p.shape[1]
    return p.shape[1], p.shape[0]


class Parametrization:
    """A width (and optionally depth) scaling rule for init, multipliers and learning rates.

    >>> from optimal_scaling.models import GPT
    >>> par = Parametrization("mup", base_width=64, optimizer="adam")
    >>> model = par.apply(GPT(width=256))                       # re-init + set multipliers
    >>> opt = torch.optim.AdamW(par.param_groups(model, lr=3e-3))
    >>> lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    >>> lrs["wte.weight"], lrs["blocks.0.mlp.fc.weight"]        # hidden: 3e-3 · 64/256
    (0.003, 0.00075)

    ``name`` is one of ``sp``, ``mup``, ``ntk``, ``spectral`` (or ``mup_adam``/``mup_sgd``).
    """

    def __init__(
        self,
        name: str = "sp",
        base_width: int | None = None,
        optimizer: str = "adam",
        form: str = "table3",
        depth_alpha: float | None = None,
        base_depth: int | None = None,
    ) -> None:
        if name in ALIASES:
            name, optimizer = ALIASES[name]
        if name not in PRESETS:
            raise ValueError(
                f"unknown parametrization {name!r}; choose from {list(PRESETS) + list(ALIASES)}"
            )
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose from {list(OPTIMIZERS)}")
        if form not in FORMS:
            raise ValueError(f"unknown μP form {form!r}; choose from {list(FORMS)}")
        bad_alpha = isinstance(depth_alpha, bool) or depth_alpha not in (0.5, 1.0)
        if depth_alpha is not None and bad_alpha:
            raise ValueError(
                f"depth_alpha must be 0.5 (depth-μP) or 1 (CompleteP), got {depth_alpha}"
            )
        if base_width is not None:  # numpy integers count, bools do not
            base_width = check_int("Parametrization", "base_width", base_width, low=1,
                                   note="or None")  # fmt: skip
        if (depth_alpha is None) != (base_depth is None):
            raise ValueError("depth scaling needs both depth_alpha and base_depth")
        if base_depth is not None:
            base_depth = check_int("Parametrization", "base_depth", base_depth, low=1)
        if name != "sp" and base_width is None:
            raise ValueError(f"{name!r} scales with the width ratio to a base width: give "
                             "base_width (without it every model would count as the base, "
                             "i.e. standard parametrization)")  # fmt: skip
        self.name, self.base_width, self.optimizer, self.form = name, base_width, optimizer, form
        self.depth_alpha, self.base_depth = depth_alpha, base_depth

    def __repr__(self) -> str:
        depth = f", depth_alpha={self.depth_alpha}, base_depth={self.base_depth}" * (
            self.depth_alpha is not None
        )
        form = f", form={self.form!r}" * (self.name == "mup")
        return (
            f"Parametrization({self.name!r}, base_width={self.base_width}, "
            f"optimizer={self.optimizer!r}{form}{depth})"
        )

    # ------------------------------------------------------------------ the rules
    def _base_model(self, model: nn.Module) -> nn.Module:
        config = getattr(model, "config", None)
        if config is None or "width" not in config or not hasattr(model, "param_roles"):
            raise TypeError(
                f"{type(model).__name__} is not a width-parametrized model: it needs a `config` "
                "dict with a 'width' and a `param_roles()` method (see optimal_scaling.models)"
            )
        # Same depth, base width: depth scaling is a separate factor (see _depth_ratio).
        width = self.base_width or config["width"]
        try:
            with torch.device("meta"):
                return type(model)(**{**config, "width": width})
        except ValueError as exc:
            raise ValueError(f"the base model (this model at base_width {width}) cannot be "
                             f"built: {exc}") from None

    def _depth_ratio(self, model: nn.Module) -> float:
        if self.depth_alpha is None:
            return 1.0
        if not any(hasattr(m, "branch_multiplier") for m in model.modules()):
            raise ValueError(f"{type(model).__name__} has no residual branches to scale with depth")
        return model.config["depth"] / self.base_depth

    def rules(self, model: nn.Module) -> list[ParamRule]:
        """The init std, multiplier, LR and ε multipliers of every parameter of ``model``."""
        base, roles, depth = self._base_model(model), model.param_roles(), self._depth_ratio(model)
        return [
            self._rule_for(model, base, roles, depth, name, p)
            for name, p in model.named_parameters()
        ]

    def _rule_for(
        self,
        model: nn.Module,
        base: nn.Module,
        roles: dict[str, str],
        depth_ratio: float,
        name: str,
        p: torch.Tensor,
    ) -> ParamRule:
        role = roles[name]
        if role not in ROLES:
            raise ValueError(f"{name}: unknown role {role!r}; expected one of {ROLES}")
        fan_in, fan_out = _fans(model, name, p)
        base_in, base_out = _fans(base, name, base.get_parameter(name))
        r_in, r_out = fan_in / base_in, fan_out / base_out
        std, mult, lr, eps = self._rule(model, name, role, fan_in, fan_out, base_in, r_in, r_out)
        if role == "hidden" and depth_ratio != 1.0:
            alpha = self.depth_alpha
            lr *= depth_ratio ** (alpha - 1 if self.optimizer == "adam" else 2 * alpha - 1)
        return ParamRule(
            name, role, tuple(p.shape), fan_in, fan_out, r_in, r_out, std, mult, lr, eps
        )

    def _rule(self, model, name, role, fan_in, fan_out, base_in, r_in, r_out):
        """(init std, multiplier, lr multiplier, eps multiplier) of one tensor."""
        adam = self.optimizer == "adam"
        if role in ("bias", "gain"):
            lr = 1.0 if adam or self.name in ("sp", "ntk") else r_out
            eps = 1.0 if self.name in ("sp", "ntk") else 1 / r_out
            return None, 1.0, lr, eps
        embedding = isinstance(_owner(model, name), nn.Embedding)
        # σ: the standard init of this tensor, at this width and at the base width
        sigma = 1.0 if embedding else fan_in**-0.5
        sigma0 = 1.0 if embedding else base_in**-0.5
        if self.name == "sp":
            return sigma, 1.0, 1.0, 1.0
        if self.name == "ntk":
            return sigma0, r_in**-0.5, 1.0, 1.0
        if self.name == "spectral":
            fi = 1 if embedding else fan_in
            std = fi**-0.5 * min(1.0, math.sqrt(fan_out / fi))
            lr = 1 / r_in if adam else r_out / r_in
            return std, 1.0, lr, 1 / r_out
        # μP
        if role == "input":
            return sigma, 1.0, (1.0 if adam else r_out), 1 / r_out
        if role == "hidden":
            return sigma, 1.0, (1 / r_in if adam else 1.0), 1 / r_out
        if self.form == "table3":  # output
            return sigma0 / r_in, 1.0, 1 / r_in, 1.0
        return sigma0, 1 / r_in, (1.0 if adam else r_in), 1 / r_in

    def table(self, model: nn.Module) -> pd.DataFrame:
        """The rules as a DataFrame, one row per parameter."""
        return pd.DataFrame([asdict(r) for r in self.rules(model)]).set_index("name")

    # ------------------------------------------------------------------ applying them
    def _logit_scale(self, head_dim: int, base_head_dim: int) -> float:
        if self.name in ("mup", "spectral"):
            return math.sqrt(base_head_dim) / head_dim
        return head_dim**-0.5

    @torch.no_grad()
    def apply(self, model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
        """Re-initialize ``model`` and set its multipliers; return it.

        Weights get N(0, init_std²) (drawn on the CPU from ``generator`` when given, so
        results do not depend on the device), biases 0, gains 1 (a tied embedding gets the
        output layer's init: as an N(0, 1) head it would make the logits' std ≈ √width at
        init); module multipliers,
        attention logit scales and residual-branch multipliers are set.
        """
        if self.name == "mup" and self.form == "table3" and _tied(model):
            raise ValueError("tied embeddings need μP in Table 8 form (form='table8')")
        if self.name == "spectral" and _tied(model):
            raise ValueError("tied embeddings cannot follow the spectral rules: the input and "
                             "the output layer need different inits and learning rates")
        base, roles, depth = self._base_model(model), model.param_roles(), self._depth_ratio(model)
        unique = dict(model.named_parameters())
        for name, p in model.named_parameters(remove_duplicate=False):
            rule = self._rule_for(model, base, roles, depth, name, p)
            owner = _owner(model, name)
            if rule.role in ("input", "hidden", "output"):
                if hasattr(owner, "multiplier"):
                    owner.multiplier = rule.multiplier
                elif rule.multiplier != 1.0:
                    raise ValueError(f"{name}: its module has no forward multiplier")
            if name not in unique:  # a tied alias: the head sharing the embedding ...
                if rule.role == "output" and rule.init_std is not None:  # ... sets its init,
                    sample = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                    p.copy_(sample.mul_(rule.init_std).to(p.dtype))  # so logits start O(1)
                continue
            if rule.init_std is None:
                p.fill_(1.0 if rule.role == "gain" else 0.0)
            else:
                sample = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                p.copy_(sample.mul_(rule.init_std).to(p.dtype))
        attn = [m for m in model.modules() if hasattr(m, "logit_scale")]
        base_attn = [m for m in base.modules() if hasattr(m, "logit_scale")]
        for m, m0 in zip(attn, base_attn, strict=True):
            m.logit_scale = self._logit_scale(m.head_dim, m0.head_dim)
        beta = depth ** -(self.depth_alpha or 0.0)
        for m in model.modules():
            if hasattr(m, "branch_multiplier"):
                m.branch_multiplier = beta
        if hasattr(model, "scale_branch_init"):  # the model's own rule after any re-init
            model.scale_branch_init()
        return model

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float = 0.0, eps: float = 1e-8
    ) -> list[dict]:
        """Plain ``torch.optim`` parameter groups, one per parameter tensor.

        Each group holds ``lr·lr_mult`` and, for Adam, ``eps·eps_mult``; weight decay goes to
        matrices only. Extra keys ``name`` and ``role`` label the group for logging (torch
        optimizers keep and ignore them). ``lr`` and ``weight_decay`` must be finite and ≥ 0,
        ``eps`` finite and > 0 (torch checks only its own defaults, not per-group values).
        """
        for name, value, positive in (("lr", lr, False), ("weight_decay", weight_decay, False),
                                      ("eps", eps, True)):  # fmt: skip
            if isinstance(value, torch.Tensor) and value.numel() == 1:  # torch accepts these
                value = value.item()
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not math.isfinite(value) or value < 0 or (positive and value == 0)):
                raise ValueError(f"param_groups: {name} must be a finite number "
                                 f"{'> 0' if positive else '≥ 0'}, got {value!r}")  # fmt: skip
        params = dict(model.named_parameters())
        groups = []
        for rule in self.rules(model):
            group = {
                "params": [params[rule.name]],
                "lr": lr * rule.lr_mult,
                "name": rule.name,
                "role": rule.role,
                "weight_decay": weight_decay if rule.role not in ("bias", "gain") else 0.0,
            }
            if self.optimizer == "adam":
                group["eps"] = eps * rule.eps_mult
            groups.append(group)
        return groups


def _tied(model: nn.Module) -> bool:
    seen: set[int] = set()
    for m in model.modules():
        for p in m.parameters(recurse=False):
            if id(p) in seen:
                return True
            seen.add(id(p))
    return False
