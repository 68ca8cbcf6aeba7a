r"""Scaling laws: a catalogue of published fits, each evaluable, with its units and source.

A law is ``y = c · Π_v v^{a_v}`` in named variables: compute C (FLOPs), parameters N, data D
(tokens unless a law says otherwise). A law published only as a proportionality (``c`` is
None) can still be evaluated relative to an anchor: ``law.relative(D=2**30, anchor={"D":
2**20})`` is y(D)/y(anchor). :data:`HYPERPARAMETER_LAWS` holds the optimal learning rate and
batch size laws lecture 06 compares. For lecture 08: :data:`LOSS_LAWS`, the published
L(N, D) = E + A/N^α + B/D^β fits with their compute-optimal split; :data:`KAPLAN`, the
forms of Kaplan et al. (2020),

    L(N) = (N_c/N)^α_N,   L(D) = (D_c/D)^α_D,   L(C_min) = (C_c/C_min)^α_C,
    L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D;

:data:`OPTIMAL_EXPONENTS`; :func:`training_flops` (the GPT's exact count beside 6ND); and
data-constrained scaling (Muennighoff et al., 2023), :func:`effective_data`: a token seen
for the (R+1)-th time is worth less, U_D unique tokens repeated R_D more times count as

    D' = U_D + U_D·R*_D·(1 − exp(−R_D/R*_D)),

at most U_D·(1 + R*_D) however long one trains (R*_D ≈ 15.4), and likewise parameters in
excess of what U_D tokens can use (R*_N ≈ 5.3). The compute-optimal fitting procedures
themselves live in :mod:`optimal_scaling.compute_optimal`.

Common units (:func:`common_units`): at a model size N and data D, with C = 6·N·D, every law
gives a learning rate or a batch in tokens (a batch counted in sequences × the context); its
exponent in D at fixed N (a C exponent counts, since C ∝ D there) is comparable across all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from optimal_scaling._validate import check_int, check_number

__all__ = [
    "HYPERPARAMETER_LAWS",
    "KAPLAN",
    "LOSS_LAWS",
    "KaplanLaw",
    "data_constrained_loss",
    "effective_data",
    "OPTIMAL_EXPONENTS",
    "Law",
    "LossLaw",
    "catalogue",
    "loss_catalogue",
    "loss_laws_figure",
    "repetition_figure",
    "common_units",
    "training_flops",
]


@dataclass(frozen=True)
class Law:
    """``quantity = c · Π_v v^{exponents[v]}``; ``units`` say what each symbol counts.

    ``prefactor_comparable`` is False where the printed ``c`` cannot be put in common units
    (its units are not known): the law still evaluates, but :func:`common_units` gives NaN.
    """

    name: str
    quantity: str  # "lr" or "batch" (or "b_crit")
    c: float | None
    exponents: dict[str, float]
    units: dict[str, str]
    source: str
    note: str = ""
    uncertainty: dict[str, float] = field(default_factory=dict)
    prefactor_comparable: bool = True

    def __call__(self, **values: float | np.ndarray) -> np.ndarray:
        """The law's value (needs a prefactor; see :meth:`relative` otherwise)."""
        if self.c is None:
            raise ValueError(f"{self.name}: published as a proportionality only (no prefactor); "
                             "use .relative(..., anchor=...)")  # fmt: skip
        return self.c * self._product(values)

    def relative(self, anchor: dict[str, float], **values: float | np.ndarray) -> np.ndarray:
        """y(values) / y(anchor): defined for every law, with or without a prefactor."""
        return self._product(values) / self._product(anchor)

    def _product(self, values: dict) -> np.ndarray:
        missing = set(self.exponents) - set(values)
        extra = set(values) - set(self.exponents)
        if missing or extra:
            raise ValueError(f"{self.name}: needs values for {sorted(self.exponents)}; got "
                             f"{sorted(values)}")  # fmt: skip
        out = np.asarray(1.0)
        for v, a in self.exponents.items():
            x = np.asarray(values[v], dtype=float)
            if not np.all(np.isfinite(x) & (x > 0)):  # a law at infinite C or D is a limit
                raise ValueError(f"{self.name}: {v} must be positive and finite (not NaN or "
                                 f"inf), got {x}")  # fmt: skip
            out = out * x**a
        return out

    def formula(self) -> str:
        terms = " · ".join(f"{v}^{a:g}" for v, a in self.exponents.items())
        return f"{self.quantity} = {'∝' if self.c is None else f'{self.c:g} ·'} {terms}"


_TOKENS = "tokens"

#: Published optimal learning-rate and batch-size laws (D, B in tokens unless said).
HYPERPARAMETER_LAWS: dict[str, Law] = {
    law.name: law
    for law in (
        Law("DeepSeek η*", "lr", 0.3118, {"C": -0.125}, {"C": "training FLOPs"},
            "DeepSeek LLM (2024)", note="often quoted as 0.3188, a transcription error"),
        Law("DeepSeek B*", "batch", 0.2920, {"C": 0.3271},
            {"C": "training FLOPs", "batch": _TOKENS}, "DeepSeek LLM (2024)"),
        Law("Step Law η*", "lr", 1.79, {"N": -0.713, "D": 0.307},
            {"N": "non-embedding parameters", "D": _TOKENS}, "Predictable Scale I (Step Law)"),
        Law("Step Law B*", "batch", 0.58, {"D": 0.571}, {"D": _TOKENS, "batch": _TOKENS},
            "Predictable Scale I (Step Law)"),
        Law("Bjorck et al. η*", "lr", 1.3192e-5, {"N": -0.23, "D": -0.32},
            {"N": "parameters", "D": _TOKENS}, "Bjorck et al. (2024)",
            note="constant as printed in Step Law's table: with N and D as raw counts it gives "
                 "6e-11 at N=1e9, D=2e10, so its units differ; compare the exponents only",
            prefactor_comparable=False),
        Law("Porian et al. η*", "lr", 3.7, {"N": -0.36}, {"N": "parameters"},
            "Porian et al. (2024)"),
        Law("Porian et al. B*", "batch", 0.7576, {"N": 0.703},
            {"N": "parameters", "batch": _TOKENS}, "Porian et al. (2024)"),
        Law("Power Lines B_crit", "b_crit", None, {"D": 0.462}, {"D": _TOKENS},
            "Power Lines (2025), which reports two agreeing B_crit fits, 0.47 vs. 0.462"),
        Law("Norm transfer η*", "lr", None, {"D": -0.28}, {"D": _TOKENS},
            "Optimal Scaling Needs Optimal Norm (arXiv 2510.03871), Scion",
            uncertainty={"D": 0.07}),
        Law("Norm transfer B*", "batch", None, {"D": 0.45}, {"D": _TOKENS, "batch": "samples"},
            "Optimal Scaling Needs Optimal Norm (arXiv 2510.03871), Scion",
            uncertainty={"D": 0.07}),
        Law("HyperP η*", "lr", None, {"D": -0.32}, {"D": _TOKENS},
            "HyperP: the 'magic exponent' in the data horizon"),
    )
}  # fmt: skip


def catalogue(quantity: str | None = None) -> pd.DataFrame:
    """The laws as a table: name, quantity, formula, units, source, note; with ``quantity``
    ("lr", "batch" or "b_crit") only the laws of that quantity."""
    quantities = sorted({law.quantity for law in HYPERPARAMETER_LAWS.values()})
    if quantity is not None and quantity not in quantities:
        raise ValueError(f"catalogue: unknown quantity {quantity!r}; choose from {quantities}")
    rows = [{"name": law.name, "quantity": law.quantity, "formula": law.formula(),
             "units": ", ".join(f"{k}: {v}" for k, v in law.units.items()),
             "source": law.source, "note": law.note}
            for law in HYPERPARAMETER_LAWS.values()
            if quantity is None or law.quantity == quantity]  # fmt: skip
    return pd.DataFrame(rows)


def common_units(N: float, D: float, context: int = 4096,
                 anchor_D: float | None = None) -> pd.DataFrame:  # fmt: skip
    """Every law at one point (N parameters, D tokens, C = 6ND), side by side.

    Columns: ``name``, ``quantity``, ``d_exponent`` (of D at fixed N), ``value`` (lr, or a
    batch in tokens: laws in sequences are multiplied by ``context``; NaN for laws published
    as proportionalities and for prefactors of unknown units, ``Law.prefactor_comparable``)
    and, with ``anchor_D``, ``relative`` = y(D)/y(anchor_D) at fixed N.
    Parameter counts are taken as given (laws differ in whether embeddings count). N, D and
    ``anchor_D`` are finite numbers > 0, ``context`` an int ≥ 1.
    """
    who = "common_units"
    N = check_number(who, "N", N, low=0, low_open=True)  # as floats: numpy ints overflow
    D = check_number(who, "D", D, low=0, low_open=True)
    context = check_int(who, "context", context, low=1)
    if not math.isfinite(6 * N * D * context):
        raise ValueError(f"{who}: 6·N·D·context overflows, got {N}, {D}, {context}")
    if anchor_D is not None:
        anchor_D = check_number(who, "anchor_D (tokens)", anchor_D, low=0, low_open=True)
    rows = []
    for law in HYPERPARAMETER_LAWS.values():
        point = {"N": N, "D": D, "C": 6 * N * D}
        values = {v: point[v] for v in law.exponents}
        d_exp = law.exponents.get("D", 0.0) + law.exponents.get("C", 0.0)
        known = law.c is not None and law.prefactor_comparable
        value = float(law(**values)) if known else float("nan")
        if law.units.get("batch") == "samples":
            value *= context
        row = {"name": law.name, "quantity": law.quantity, "d_exponent": d_exp, "value": value}
        if anchor_D is not None:
            row["relative"] = (D / anchor_D) ** d_exp
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- compute
def training_flops(model, tokens: float, context: int | None = None) -> dict[str, float]:
    """Training FLOPs of a :class:`~optimal_scaling.models.GPT` on ``tokens`` tokens.

    Forward, per token: 2·fan_in·fan_out for every linear layer (the head included; embedding
    lookups are free), plus causal attention: a query at position t scores and mixes t + 1
    keys, 2·(t + 1)·width FLOPs for each, so on average 4·width·(T + 1)/2 per layer for
    context T. Training = 3 × forward (the backward pass costs twice the forward). Returned
    beside the usual approximations 6·N·D with N all parameters and with N the non-embedding
    ones. ``tokens`` is a finite number > 0; ``context`` (default: the model's) an int ≥ 1.
    """
    from torch import nn

    who = "training_flops"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{who}: model must be a GPT (a torch module), got {type(model).__name__}")
    check_number(who, "tokens", tokens, low=0, low_open=True)
    T = model.context if context is None else check_int(who, "context", context, low=1)
    linear = sum(2 * m.in_features * m.out_features for m in model.modules()
                 if isinstance(m, nn.Linear))  # fmt: skip
    attention = model.depth * 4 * model.width * (T + 1) / 2
    forward = linear + attention
    return {"exact": 3 * forward * tokens, "6ND": 6 * model.num_params() * tokens,
            "6ND non-embedding": 6 * model.num_params(non_embedding=True) * tokens,
            "attention share": attention / forward}  # fmt: skip


# --------------------------------------------------------------------------- L(N, D) laws
@dataclass(frozen=True)
class LossLaw:
    """L(N, D) = E + A/N^α + B/D^β (N parameters, D tokens) with its compute-optimal split.

    Under C = 6ND, minimizing L gives N_opt = G·(C/6)^a and D_opt = (C/6)^b / G with
    a = β/(α+β), b = α/(α+β) and G = (αA/(βB))^(1/(α+β)).
    """

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str
    note: str = ""

    def __call__(self, N, D):
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        if np.any(np.isnan(N) | (N <= 0)) or np.any(np.isnan(D) | (D <= 0)):
            raise ValueError(f"{self.name}: N and D must be positive (and not NaN)")
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    @property
    def a(self) -> float:
        return self.beta / self._exponent_sum("LossLaw.a")

    @property
    def b(self) -> float:
        return self.alpha / self._exponent_sum("LossLaw.b")

    def _exponent_sum(self, who: str) -> float:
        if self.alpha + self.beta == 0:
            raise ValueError(f"{who}: {self.name} has α + β = 0 (α={self.alpha:g}, "
                             f"β={self.beta:g}), so a = β/(α+β) and b = α/(α+β) are undefined")
        return self.alpha + self.beta

    def compute_optimal(self, C) -> tuple[np.ndarray, np.ndarray]:
        """(N_opt, D_opt) at compute C (FLOPs, C = 6ND)."""
        C = np.asarray(C, dtype=float)
        if not np.all((C > 0) & np.isfinite(C)):  # NaN fails too
            raise ValueError(f"{self.name}: C must be positive and finite, got {C}")
        if not min(self.A, self.B, self.alpha, self.beta) > 0:
            raise ValueError(f"{self.name}: a compute-optimal split needs A, B, α, β > 0; got "
                             f"A={self.A:g}, B={self.B:g}, α={self.alpha:g}, "
                             f"β={self.beta:g}")  # fmt: skip
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return G * (C / 6) ** self.a, (C / 6) ** self.b / G


#: Published parametric fits of L(N, D).
LOSS_LAWS: dict[str, LossLaw] = {
    law.name: law
    for law in (
        LossLaw("Chinchilla approach 3", 1.69, 406.4, 410.7, 0.34, 0.28,
                "Hoffmann et al. (2022)",
                note="Huber δ = 1e-3 on log-loss, L-BFGS from a grid of starts"),
        LossLaw("Approach 3 refit", 1.82, 482.0, 2085.0, 0.348, 0.366,
                "Besiroglu et al. (2024), on data extracted from Hoffmann et al.'s figure"),
    )
}  # fmt: skip

#: Published compute-optimal exponents N_opt ∝ C^a, D_opt ∝ C^b.
OPTIMAL_EXPONENTS = pd.DataFrame(
    [("Kaplan et al. (2020)", 0.73, 0.27),
     ("Chinchilla approach 1 (envelope)", 0.50, 0.50),
     ("Chinchilla approach 2 (IsoFLOP)", 0.49, 0.51),
     ("Chinchilla approach 3 (parametric)", 0.46, 0.54)],
    columns=["source", "a", "b"],
)  # fmt: skip


# --------------------------------------------------------------------------- Kaplan et al.
@dataclass(frozen=True)
class KaplanLaw:
    """Kaplan et al. (2020): pure power laws without an irreducible term (N non-embedding).

    ``N_c``, ``alpha_N``, ``D_c``, ``alpha_D``: the single-variable fits L(N) (trained to
    convergence) and L(D) (large model, early stopping); ``C_c`` (PF-days) and ``alpha_C``:
    L(C_min); ``joint``: (α_N, α_D, N_c, D_c) of the joint fit L(N, D), a separate fit with
    its own constants. Loss in nats per token on WebText2 with GPT-2's tokenizer: the
    constants do not transfer to other data or tokenizers; the exponents are the content.
    """

    N_c: float = 8.8e13
    alpha_N: float = 0.076
    D_c: float = 5.4e13
    alpha_D: float = 0.095
    C_c: float = 3.1e8  # PF-days
    alpha_C: float = 0.050
    joint: tuple[float, float, float, float] = (0.076, 0.103, 6.4e13, 1.8e13)
    source: str = "Kaplan et al. (2020), Scaling Laws for Neural Language Models"

    def of_N(self, N):
        """L(N) = (N_c/N)^α_N."""
        return (self.N_c / _positive(N, "N", "KaplanLaw.of_N")) ** self.alpha_N

    def of_D(self, D):
        """L(D) = (D_c/D)^α_D."""
        return (self.D_c / _positive(D, "D", "KaplanLaw.of_D")) ** self.alpha_D

    def of_C(self, C):
        """L(C_min) = (C_c/C_min)^α_C with C_min in FLOPs (1 PF-day = 8.64·10¹⁹ FLOPs)."""
        return (self.C_c * PF_DAY / _positive(C, "C", "KaplanLaw.of_C")) ** self.alpha_C

    def __call__(self, N, D):
        """L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D with the joint fit's constants."""
        aN, aD, Nc, Dc = self.joint
        N, D = _positive(N, "N", "KaplanLaw"), _positive(D, "D", "KaplanLaw")
        return ((Nc / N) ** (aN / aD) + Dc / D) ** aD


#: One petaFLOP/s-day in FLOPs.
PF_DAY = 1e15 * 86400

#: Kaplan et al.'s constants (their Table 2 / eqs. 1.1–1.5).
KAPLAN = KaplanLaw()


def _positive(x, name: str, who: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if np.any(~np.isfinite(x) | (x <= 0)):
        raise ValueError(f"{who}: {name} must be positive and finite, got {x}")
    return x


# --------------------------------------------------------------------------- repeated data
#: Muennighoff et al. (2023), "Scaling Data-Constrained Language Models": fitted half-lives.
R_STAR_D = 15.4
R_STAR_N = 5.3


def effective_data(unique, total, r_star: float = R_STAR_D) -> np.ndarray:
    """D' = U + U·R*·(1 − e^{−R/R*}) with R = total/unique − 1 repetitions beyond the first.

    ``unique`` U tokens trained on for ``total`` tokens (total ≥ unique). The same function
    with R*_N = :data:`R_STAR_N` gives effective parameters (U = the parameters U_D tokens
    can use, total = the model's). As R → ∞, D' → U·(1 + R*): repetition has a ceiling.
    """
    who = "effective_data"
    U, T = _positive(unique, "unique", who), _positive(total, "total", who)
    if np.any(T < U * (1 - 1e-12)):
        raise ValueError("effective_data: total must be at least unique (R = total/unique − 1 "
                         "≥ 0)")  # fmt: skip
    if not math.isfinite(r_star) or r_star <= 0:  # (R* → ∞ would be D' = total: no decay)
        raise ValueError(f"effective_data: r_star must be finite and positive, got {r_star}")
    R = np.maximum(T / U - 1, 0.0)
    return U + U * r_star * (1 - np.exp(-R / r_star))


def data_constrained_loss(law: LossLaw, N, D, unique) -> np.ndarray:
    """L(N, D') of a Chinchilla-form law with D replaced by the effective data D'."""
    return law(N, effective_data(unique, D))


def repetition_figure(max_epochs: float = 200.0, r_star: float = R_STAR_D):
    """Effective data D'/U against epochs D/U (log–log), beside fresh data and the ceiling.

    A plotly figure of :func:`effective_data` for U unique tokens: D' follows D for a few
    epochs, then bends to the ceiling U·(1 + R*). ``max_epochs`` > 1 and ``r_star`` > 0 are
    finite numbers.
    """
    import plotly.graph_objects as go

    max_epochs = check_number("repetition_figure", "max_epochs", max_epochs, low=1, low_open=True)
    r_star = check_number("repetition_figure", "r_star", r_star, low=0, low_open=True)
    epochs = np.geomspace(1, max_epochs, 80)
    fig = go.Figure()
    fig.add_scatter(x=epochs, y=epochs, name="fresh data (D' = D)", line={"dash": "dot"})
    fig.add_scatter(x=epochs, y=effective_data(1.0, epochs, r_star), name="effective data D'/U")
    fig.add_hline(y=1 + r_star, line_dash="dash",
                  annotation_text=f"ceiling 1 + R* = {1 + r_star:g}")  # fmt: skip
    fig.update_layout(xaxis={"type": "log", "title": "epochs D/U"},
                      yaxis={"type": "log", "title": "tokens / U"}, template="plotly_white",
                      title=f"Repeated tokens: diminishing value (R* = {r_star:g})")  # fmt: skip
    return fig


def loss_catalogue() -> pd.DataFrame:
    """The published loss laws as a table: name, formula with its constants, a, b, source."""
    rows = [{"name": law.name,
             "formula": f"{law.E} + {law.A}/N^{law.alpha} + {law.B}/D^{law.beta}",
             "a": law.a, "b": law.b, "source": law.source, "note": law.note}
            for law in LOSS_LAWS.values()]  # fmt: skip
    k = KAPLAN
    aN, aD, Nc, Dc = k.joint
    rows += [
        {"name": "Kaplan L(N)", "formula": f"({k.N_c:.2g}/N)^{k.alpha_N}", "source": k.source,
         "note": "N non-embedding, trained to convergence"},
        {"name": "Kaplan L(D)", "formula": f"({k.D_c:.2g}/D)^{k.alpha_D}", "source": k.source,
         "note": "large model, early stopping"},
        {"name": "Kaplan L(C_min)", "formula": f"({k.C_c:.2g} PF-days/C)^{k.alpha_C}",
         "source": k.source, "note": "compute-efficient frontier"},
        {"name": "Kaplan L(N, D)", "formula": f"[({Nc:.2g}/N)^({aN}/{aD}) + {Dc:.2g}/D]^{aD}",
         "source": k.source, "note": "joint fit, its own constants"},
    ]  # fmt: skip
    exps = OPTIMAL_EXPONENTS.set_index("source")
    rows[-2]["a"], rows[-2]["b"] = exps.loc["Kaplan et al. (2020)", ["a", "b"]]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- figure
def loss_laws_figure(C_range: tuple[float, float] = (1e18, 1e26)):
    """The published loss laws along their compute-optimal frontier, L against C = 6ND.

    Chinchilla-form laws at (N_opt(C), D_opt(C)); Kaplan's L(C_min). A plotly figure. The
    laws were fitted on different data and tokenizers: compare their slopes, not levels.
    """
    import plotly.graph_objects as go

    C = np.geomspace(*C_range, 60)
    fig = go.Figure()
    for law in LOSS_LAWS.values():
        n_opt, d_opt = law.compute_optimal(C)
        fig.add_scatter(x=C, y=law(n_opt, d_opt), name=f"{law.name} (E = {law.E})",
                        mode="lines")  # fmt: skip
        fig.add_scatter(x=C, y=np.full_like(C, law.E), mode="lines", showlegend=False,
                        line={"dash": "dot", "width": 1}, hoverinfo="skip")  # fmt: skip
    fig.add_scatter(x=C, y=KAPLAN.of_C(C), name="Kaplan L(C_min) (no E)", mode="lines",
                    line={"dash": "dash"})  # fmt: skip
    fig.update_layout(xaxis={"type": "log", "title": "training compute C (FLOPs)"},
                      yaxis={"title": "loss (nats/token)"}, template="plotly_white",
                      title="Published loss laws at their compute-optimal split")  # fmt: skip
    return fig
