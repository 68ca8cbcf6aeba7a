"""The catalogue of published laws: values at one point against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optimal_scaling.scaling_laws import HYPERPARAMETER_LAWS as LAWS
from optimal_scaling.scaling_laws import KAPLAN, LOSS_LAWS, LossLaw, catalogue, effective_data


def test_values_at_one_point_match_hand_computation():
    C = 1e21
    assert LAWS["DeepSeek η*"](C=C) == pytest.approx(0.3118 * 1e21**-0.125)
    assert LAWS["DeepSeek η*"](C=C) == pytest.approx(7.394e-4, rel=1e-3)  # 0.3118/10^2.625
    assert LAWS["DeepSeek B*"](C=C) == pytest.approx(0.2920 * 10 ** (21 * 0.3271))
    N, D = 1e9, 1e11
    assert LAWS["Step Law η*"](N=N, D=D) == pytest.approx(1.79 * 10 ** (-9 * 0.713 + 11 * 0.307))
    assert LAWS["Step Law B*"](D=D) == pytest.approx(0.58 * 10 ** (11 * 0.571))
    assert LAWS["Porian et al. B*"](N=N) == pytest.approx(0.7576 * 10 ** (9 * 0.703))
    assert LAWS["Bjorck et al. η*"](N=N, D=D) == pytest.approx(
        1.3192e-5 * 10 ** (-9 * 0.23 - 11 * 0.32)
    )


def test_proportional_laws_evaluate_relative_to_an_anchor():
    law = LAWS["Norm transfer B*"]
    assert law.relative({"D": 2**20}, D=2**30) == pytest.approx(2 ** (10 * 0.45))
    assert LAWS["Norm transfer η*"].relative({"D": 2**20}, D=2**30) == pytest.approx(
        2 ** (-10 * 0.28)
    )
    with pytest.raises(ValueError, match="proportionality only"):
        law(D=2**30)
    with pytest.raises(ValueError, match=r"needs values for \['D'\]"):
        LAWS["Step Law B*"](N=1e9)
    with pytest.raises(ValueError, match="positive"):
        LAWS["Step Law B*"](D=0.0)



def test_law_refuses_infinite_and_nan_values():
    """η*(C = ∞) = 0 is only the limit of a fitted law, and an infinite anchor made
    relative() divide by 0: infinite values are refused like NaN and negative ones."""
    law = LAWS["DeepSeek η*"]
    for bad in (math.inf, math.nan, -1.0, [1e21, math.inf]):
        with pytest.raises(ValueError, match=r"DeepSeek η\*: C must be positive and finite"):
            law(C=bad)
    with pytest.raises(ValueError, match="C must be positive and finite"):
        law.relative({"C": math.inf}, C=1e21)
    assert law(C=[1e21, 1e22]) == pytest.approx(0.3118 * np.array([1e21, 1e22]) ** -0.125)


def test_the_catalogue_lists_units_and_sources():
    table = catalogue()
    assert len(table) == len(LAWS) and table["source"].str.len().min() > 5
    assert set(catalogue("batch")["quantity"]) == {"batch"}
    deepseek = table.set_index("name").loc["DeepSeek η*"]
    assert "0.3118" in deepseek["formula"] and "0.3188" in deepseek["note"]


def test_catalogue_refuses_an_unknown_quantity():
    with pytest.raises(ValueError, match=r"catalogue: unknown quantity 'foo'; choose from "
                                         r"\['b_crit', 'batch', 'lr'\]"):  # fmt: skip
        catalogue("foo")  # was an empty table without columns
    assert len(catalogue("lr")) == sum(law.quantity == "lr" for law in LAWS.values())


def test_common_units_put_every_law_at_one_point():
    from optimal_scaling.scaling_laws import common_units

    N, D = 1e8, 2e9
    t = common_units(N, D, context=2048, anchor_D=D / 8).set_index("name")
    assert t.loc["DeepSeek η*", "value"] == pytest.approx(0.3118 * (6 * N * D) ** -0.125)
    assert t.loc["DeepSeek B*", "d_exponent"] == pytest.approx(0.3271)  # C ∝ D at fixed N
    assert t.loc["Step Law η*", "d_exponent"] == pytest.approx(0.307)
    assert t.loc["Porian et al. η*", "d_exponent"] == 0.0
    assert t.loc["Norm transfer B*", "relative"] == pytest.approx(8**0.45)
    assert t.loc["Norm transfer B*", "value"] != t.loc["Norm transfer B*", "value"]  # NaN
    assert t.loc["Step Law B*", "value"] == pytest.approx(0.58 * D**0.571)
    # Bjorck et al.'s printed prefactor gives ~1e-10 here: its units are unknown, so no value
    assert not LAWS["Bjorck et al. η*"].prefactor_comparable
    assert np.isnan(t.loc["Bjorck et al. η*", "value"])
    assert t.loc["Bjorck et al. η*", "d_exponent"] == pytest.approx(-0.32)
    with pytest.raises(ValueError, match=r"common_units: N must be in \(0, inf\), got 0"):
        common_units(0, D)


def test_training_flops_of_the_gpt_by_hand():
    from optimal_scaling.models import GPT
    from optimal_scaling.scaling_laws import training_flops

    m = GPT(vocab_size=256, context=64, width=32, depth=2, n_heads=2, mlp_ratio=4)
    # per block: qkv 32·96, proj 32·32, fc 32·128, proj 128·32; head 32·256
    linear = 2 * (2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32) + 32 * 256)
    attention = 2 * 4 * 32 * 65 / 2
    f = training_flops(m, tokens=1000)
    assert f["exact"] == pytest.approx(3 * (linear + attention) * 1000)
    assert f["6ND"] == 6 * m.num_params() * 1000
    assert f["6ND non-embedding"] < f["6ND"] and 0 < f["attention share"] < 1
    with pytest.raises(ValueError, match=r"training_flops: tokens must be in \(0, inf\)"):
        training_flops(m, tokens=0)


def test_loss_laws_and_their_compute_optimal_split():
    from optimal_scaling.scaling_laws import LOSS_LAWS, OPTIMAL_EXPONENTS

    law = LOSS_LAWS["Chinchilla approach 3"]
    assert law(1e9, 2e10) == pytest.approx(1.69 + 406.4 / 1e9**0.34 + 410.7 / 2e10**0.28)
    assert law.a == pytest.approx(0.28 / 0.62) and law.a + law.b == pytest.approx(1.0)
    # the split is the minimum of L along C = 6ND: compare with a brute-force search
    C = 1e22
    N = np.geomspace(1e8, 1e12, 20001)
    best = N[np.argmin(law(N, C / (6 * N)))]
    n_opt, d_opt = law.compute_optimal(C)
    assert n_opt == pytest.approx(best, rel=1e-3) and 6 * n_opt * d_opt == pytest.approx(C)
    assert OPTIMAL_EXPONENTS.set_index("source").loc["Kaplan et al. (2020)", "a"] == 0.73
    with pytest.raises(ValueError, match="positive"):
        law(0, 1)



def test_loss_law_split_exponents_refuse_alpha_plus_beta_zero():
    law = LossLaw("flat", 1.7, 400.0, 400.0, 0.3, -0.3, "t")
    with pytest.raises(ValueError, match=r"LossLaw.a: flat has α \+ β = 0 \(α=0.3, β=-0.3\)"):
        law.a  # noqa: B018 (a property)
    with pytest.raises(ValueError, match=r"LossLaw.b: flat has α \+ β = 0"):
        law.b  # noqa: B018
    assert LossLaw("x", 1.7, 400.0, 400.0, 0.3, 0.2, "t").a == pytest.approx(0.4)


def test_kaplan_forms_by_hand():
    from optimal_scaling.scaling_laws import KAPLAN, PF_DAY

    assert KAPLAN.of_N(8.8e13) == pytest.approx(1.0)
    assert KAPLAN.of_N(8.8e12) == pytest.approx(10**0.076)
    assert KAPLAN.of_D(5.4e12) == pytest.approx(10**0.095)
    assert KAPLAN.of_C(3.1e7 * PF_DAY) == pytest.approx(10**0.050)
    # the joint form: D → ∞ leaves (N_c/N)^α_N with the joint fit's constants, and vice versa
    aN, aD, Nc, Dc = KAPLAN.joint
    assert KAPLAN(1e9, 1e40) == pytest.approx((Nc / 1e9) ** aN, rel=1e-6)
    assert KAPLAN(1e40, 1e10) == pytest.approx((Dc / 1e10) ** aD, rel=1e-6)
    with pytest.raises(ValueError, match="N must be positive"):
        KAPLAN.of_N(0)
    from optimal_scaling.scaling_laws import LOSS_LAWS

    with pytest.raises(ValueError, match="not NaN"):  # NaN ≤ 0 is False, so it slipped through
        LOSS_LAWS["Chinchilla approach 3"](float("nan"), 1e10)
    with pytest.raises(ValueError, match="not NaN"):
        (law := next(iter(LAWS.values())))(**{v: float("nan") for v in law.exponents})


def test_effective_data_under_repetition():
    from optimal_scaling.scaling_laws import (
        LOSS_LAWS,
        R_STAR_D,
        data_constrained_loss,
        effective_data,
    )

    U = 1e9
    assert effective_data(U, U) == pytest.approx(U)  # one epoch: all tokens count
    # small R: almost fresh (D' ≈ U(1 + R)); large R: the ceiling U(1 + R*)
    expected = U * (1 + R_STAR_D * (1 - np.exp(-0.1 / R_STAR_D)))
    assert effective_data(U, 1.1 * U) == pytest.approx(expected)
    assert effective_data(U, 1.1 * U) / (1.1 * U) > 0.997
    assert effective_data(U, 1e6 * U) == pytest.approx(U * (1 + R_STAR_D), rel=1e-9)
    # the marginal worth of a token after R repetitions is e^{−R/R*}: 1/e at R = R*
    h = 1e-4 * U
    at = U * (1 + R_STAR_D)
    slope = (effective_data(U, at + h) - effective_data(U, at - h)) / (2 * h)
    assert slope == pytest.approx(np.exp(-1), rel=1e-6)
    four = effective_data(U, 4 * U)
    assert 0.9 < four / (4 * U) < 1  # four epochs are worth about 90–100% of fresh data
    law = LOSS_LAWS["Chinchilla approach 3"]
    assert data_constrained_loss(law, 1e9, 4e9, 1e9) > law(1e9, 4e9)
    with pytest.raises(ValueError, match="total must be at least unique"):
        effective_data(2e9, 1e9)


def test_loss_laws_figure_has_every_law():
    from optimal_scaling.scaling_laws import LOSS_LAWS, loss_laws_figure

    fig = loss_laws_figure()
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert len(names) == len(LOSS_LAWS) + 1
    law = LOSS_LAWS["Chinchilla approach 3"]
    n, d = law.compute_optimal(fig.data[0].x)
    assert np.allclose(fig.data[0].y, law(n, d))


def test_loss_catalogue_lists_every_law_with_its_source():
    from optimal_scaling.scaling_laws import LOSS_LAWS, loss_catalogue

    table = loss_catalogue()
    assert set(LOSS_LAWS) <= set(table.name)
    assert {"Kaplan L(N)", "Kaplan L(D)", "Kaplan L(C_min)", "Kaplan L(N, D)"} <= set(table.name)
    assert table.source.str.len().min() > 5
    chin = table.set_index("name").loc["Chinchilla approach 3"]
    assert chin.a == pytest.approx(0.28 / 0.62) and "406.4" in chin.formula


def test_repetition_figure_draws_effective_data():
    from optimal_scaling.scaling_laws import effective_data, repetition_figure

    fig = repetition_figure(max_epochs=100, r_star=10.0)
    fresh, effective = fig.data[0], fig.data[1]
    assert np.allclose(fresh.y, fresh.x)
    assert np.allclose(effective.y, effective_data(1.0, effective.x, 10.0))
    assert effective.y[-1] < 11.0 < fresh.y[-1]
    with pytest.raises(ValueError, match="max_epochs"):
        repetition_figure(max_epochs=1)


def test_every_catalogued_constant_at_one_point():
    from optimal_scaling.scaling_laws import LOSS_LAWS
    assert LAWS["Porian et al. η*"](N=1e9) == pytest.approx(3.7 * 1e9**-0.36)
    assert LAWS["Power Lines B_crit"].relative({"D": 1e9}, D=1e10) == pytest.approx(10**0.462)
    assert LAWS["HyperP η*"].relative({"D": 1e9}, D=1e10) == pytest.approx(10**-0.32)
    refit = LOSS_LAWS["Approach 3 refit"]
    assert refit(1e9, 2e10) == pytest.approx(1.82 + 482.0 / 1e9**0.348 + 2085.0 / 2e10**0.366)


def test_common_units_converts_samples_to_tokens(monkeypatch):
    from optimal_scaling import scaling_laws as sl
    law = sl.Law("toy B*", "batch", 2.0, {"D": 0.5}, {"D": "tokens", "batch": "samples"}, "t")
    monkeypatch.setattr(sl, "HYPERPARAMETER_LAWS", {law.name: law})
    t = sl.common_units(1e8, 1e10, context=1024).set_index("name")
    assert t.loc["toy B*", "value"] == pytest.approx(2.0 * 1e5 * 1024)


def test_data_constrained_loss_by_hand():
    from optimal_scaling.scaling_laws import LOSS_LAWS, data_constrained_loss
    law = LOSS_LAWS["Chinchilla approach 3"]
    d_eff = 1e9 * (1 + 15.4 * (1 - np.exp(-3 / 15.4)))
    assert data_constrained_loss(law, 1e9, 4e9, 1e9) == pytest.approx(law(1e9, d_eff))


def test_law_refuses_variables_it_does_not_use():  # S1
    from optimal_scaling.scaling_laws import HYPERPARAMETER_LAWS as LAWS

    with pytest.raises(ValueError, match="needs values for"):
        LAWS["Step Law B*"](D=1e10, N=1e9)
    with pytest.raises(ValueError, match="needs values for"):
        LAWS["Norm transfer η*"].relative({"D": 1e9}, D=1e10, C=1e20)


def test_common_units_refuses_an_infinite_anchor():  # S2
    from optimal_scaling.scaling_laws import common_units

    with pytest.raises(ValueError, match="anchor_D"):
        common_units(1e8, 2e9, anchor_D=math.inf)



def test_common_units_refuses_text_arrays_bools_and_a_fractional_context():
    from optimal_scaling.scaling_laws import common_units

    for bad in ("a", np.array([1e8, 2e8]), True):  # '>' on str; an ambiguous truth value
        with pytest.raises(TypeError, match="common_units: N must be a number, got"):
            common_units(bad, 2e9)
    with pytest.raises(TypeError, match="common_units: anchor_D .*must be a number"):
        common_units(1e8, 2e9, anchor_D="1e9")
    with pytest.raises(ValueError, match="common_units: context must be an int ≥ 1, got 2.5"):
        common_units(1e8, 2e9, context=2.5)
    with pytest.raises(ValueError, match="common_units: 6·N·D·context overflows"):
        common_units(1e200, 1e200)
    t = common_units(10**8, np.int64(2 * 10**9), context=np.int64(2048)).set_index("name")
    assert t.loc["DeepSeek η*", "value"] == pytest.approx(0.3118 * (1.2e18) ** -0.125)


def test_training_flops_at_another_context_by_hand():  # S3, S4
    from optimal_scaling.models import GPT
    from optimal_scaling.scaling_laws import training_flops

    m = GPT(vocab_size=256, context=64, width=32, depth=2, n_heads=2, mlp_ratio=4)
    linear = 2 * (2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32) + 32 * 256)
    attention = 2 * 4 * 32 * (128 + 1) / 2
    f = training_flops(m, tokens=1000, context=128)
    assert f["exact"] == pytest.approx(3 * (linear + attention) * 1000)
    assert f["attention share"] == pytest.approx(attention / (linear + attention))



def test_training_flops_refuses_nan_tokens_a_bad_context_and_text():
    from optimal_scaling.models import GPT
    from optimal_scaling.scaling_laws import training_flops

    m = GPT(vocab_size=256, context=64, width=32, depth=2, n_heads=2, mlp_ratio=4)
    for bad in (math.nan, math.inf, -5.0):
        with pytest.raises(ValueError, match=r"training_flops: tokens must be in \(0, inf\)"):
            training_flops(m, bad)  # NaN was returned as the FLOPs
    with pytest.raises(TypeError, match="training_flops: tokens must be a number, got 'a'"):
        training_flops(m, "a")
    for bad in (-5, 0, 2.5):  # -5 gave a negative attention share
        with pytest.raises(ValueError, match="training_flops: context must be an int ≥ 1"):
            training_flops(m, 1e9, context=bad)
    with pytest.raises(TypeError, match="training_flops: model must be a GPT"):
        training_flops("gpt", 1e9)
    assert training_flops(m, np.int64(1000), context=np.int64(64)) == training_flops(m, 1000)


def test_loss_law_validation_of_the_split_and_of_d():  # S5, S6, S11
    with pytest.raises(ValueError, match="needs A, B, α, β > 0"):
        LossLaw("x", 1.7, -400.0, 400.0, 0.3, 0.3, "t").compute_optimal(1e20)
    with pytest.raises(ValueError, match="needs A, B, α, β > 0"):
        LossLaw("x", 1.7, 400.0, 0.0, 0.3, 0.3, "t").compute_optimal(1e20)
    law = LOSS_LAWS["Chinchilla approach 3"]
    with pytest.raises(ValueError, match="positive and finite"):
        law.compute_optimal(math.inf)
    for bad_d in (0.0, -1e9, math.nan):
        with pytest.raises(ValueError, match="positive"):
            law(1e9, bad_d)


def test_kaplan_forms_refuse_nan_and_inf():  # S7
    for call in (lambda: KAPLAN.of_N(math.nan), lambda: KAPLAN.of_C(math.inf),
                 lambda: KAPLAN(1e9, math.nan)):  # fmt: skip
        with pytest.raises(ValueError, match="must be positive and finite"):
            call()



def test_kaplan_effective_data_and_repetition_messages_name_the_function():
    from optimal_scaling.scaling_laws import repetition_figure

    with pytest.raises(ValueError, match="KaplanLaw.of_N: N must be positive and finite"):
        KAPLAN.of_N(0)
    with pytest.raises(ValueError, match="KaplanLaw.of_C: C must be positive and finite"):
        KAPLAN.of_C(-1.0)
    with pytest.raises(ValueError, match="KaplanLaw: D must be positive and finite"):
        KAPLAN(1e9, math.nan)
    with pytest.raises(ValueError, match="effective_data: unique must be positive and finite"):
        effective_data(0.0, 1e9)
    for bad in (math.nan, math.inf, 1):  # "total must be …" named an argument it does not have
        with pytest.raises(ValueError, match=r"repetition_figure: max_epochs must be in \(1, "):
            repetition_figure(max_epochs=bad)
    with pytest.raises(TypeError, match="repetition_figure: max_epochs must be a number"):
        repetition_figure(max_epochs="100")
    with pytest.raises(ValueError, match=r"repetition_figure: r_star must be in \(0, inf\)"):
        repetition_figure(r_star=0.0)
    assert KAPLAN.of_N(np.array([8.8e13, 8.8e12])) == pytest.approx([1.0, 10**0.076])


def test_effective_data_refuses_r_star_zero():  # S8
    for bad in (0.0, math.nan, math.inf):  # (R* → ∞ would be D' = total, not NaN)
        with pytest.raises(ValueError, match=f"r_star must be finite and positive, got {bad}"):
            effective_data(1e9, 2e9, r_star=bad)


def test_loss_catalogue_puts_kaplans_compute_optimal_exponents_on_its_frontier_row():  # S10
    from optimal_scaling.scaling_laws import OPTIMAL_EXPONENTS, loss_catalogue

    t = loss_catalogue().set_index("name")
    want = OPTIMAL_EXPONENTS.set_index("source").loc["Kaplan et al. (2020)"]
    assert (t.loc["Kaplan L(C_min)", "a"], t.loc["Kaplan L(C_min)", "b"]) == (want.a, want.b)


def test_effective_data_accepts_one_epoch_up_to_rounding():  # S9
    # 0.1 + 0.2 is one ulp above 0.3: one epoch computed in floating point, not a refusal
    assert effective_data(0.1 + 0.2, 0.3) == pytest.approx(0.3)
