"""Inference-aware optimum: against Chinchilla's closed form, brute force and its own
first-order condition; the measured version on a planted table."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from optimal_scaling import inference_scaling as inf
from optimal_scaling.scaling_laws import LOSS_LAWS, LossLaw

CHIN = LOSS_LAWS["Chinchilla approach 3"]
REFIT = LOSS_LAWS["Approach 3 refit"]


@pytest.mark.parametrize("law", [CHIN, REFIT], ids=["chinchilla", "refit"])
@pytest.mark.parametrize("C", [1e20, 5.88e23, 1e26])
def test_no_inference_is_the_chinchilla_optimum_of_that_loss(law, C):
    n_c, d_c = law.compute_optimal(C)
    ell = float(law(n_c, d_c))
    row = inf.inference_optimal(law, ell, 0.0).iloc[0]
    assert row.N == pytest.approx(n_c, rel=1e-6)
    assert row.D == pytest.approx(d_c, rel=1e-6)
    assert row.total_flops == pytest.approx(C, rel=1e-9)
    assert row.saving == pytest.approx(0.0, abs=1e-12)


def test_tokens_for_loss_inverts_the_law_and_is_infinite_below_the_smallest_model():
    ell = 2.0
    n_min = inf.smallest_model(CHIN, ell)
    assert CHIN.A / n_min**CHIN.alpha == pytest.approx(ell - CHIN.E)
    N = n_min * np.array([1.001, 2.0, 10.0, 1e3])
    D = inf.tokens_for_loss(CHIN, N, ell)
    np.testing.assert_allclose(CHIN(N, D), ell, rtol=1e-12)
    assert np.all(np.diff(D) < 0)  # bigger models need fewer tokens
    assert np.isinf(inf.tokens_for_loss(CHIN, [n_min * 0.5, n_min * (1 - 1e-9), n_min], ell)).all()
    for ell in np.linspace(1.8, 2.6, 81):  # exactly at N_min, whatever the rounding
        assert np.isinf(inf.tokens_for_loss(CHIN, inf.smallest_model(CHIN, ell), ell))


@pytest.mark.parametrize("d_inf", [1e10, 1e12, 1e14, 1e16])
def test_the_optimum_beats_a_dense_grid_and_meets_its_first_order_condition(d_inf):
    ell = float(CHIN(70e9, 1.4e12))
    row = inf.inference_optimal(CHIN, ell, d_inf).iloc[0]
    n_min = inf.smallest_model(CHIN, ell)
    N = n_min * (1 + np.geomspace(1e-7, 1e4, 200_001))
    cost = inf.total_flops(N, inf.tokens_for_loss(CHIN, N, ell), d_inf)
    assert row.total_flops <= cost.min() * (1 + 1e-9)
    assert row.N == pytest.approx(N[np.argmin(cost)], rel=1e-3)
    # d/dN [6·N·D_ℓ(N) + 2·N·D_inf] = 6·D·(1 − αA N^−α / (β·(ℓ − E − A N^−α))) + 2·D_inf = 0
    room = ell - CHIN.E - CHIN.A / row.N**CHIN.alpha
    grad = 6 * row.D * (1 - CHIN.alpha * CHIN.A / row.N**CHIN.alpha / (CHIN.beta * room))
    assert (grad + 2 * d_inf) / (6 * row.D) == pytest.approx(0.0, abs=1e-6)


def test_more_demand_means_a_smaller_model_trained_longer_and_a_larger_saving():
    ell = float(CHIN(70e9, 1.4e12))
    t = inf.inference_optimal(CHIN, ell, np.geomspace(1e9, 1e17, 17))
    assert np.all(np.diff(t.N) < 0) and np.all(np.diff(t.tokens_per_param) > 0)
    assert np.all(np.diff(t.saving) > 0) and (t.saving < 1).all()
    assert (t.N > inf.smallest_model(CHIN, ell)).all()
    assert t.N.iloc[-1] / inf.smallest_model(CHIN, ell) < 1.5  # approaching N_min


def test_pricing_inference_flops_double_is_doubling_the_demand():
    ell = 2.05
    a = inf.inference_optimal(CHIN, ell, 1e13, inference_cost=2.0).iloc[0]
    b = inf.inference_optimal(CHIN, ell, 2e13).iloc[0]
    assert a.N == pytest.approx(b.N, rel=1e-6) and a.total_flops == pytest.approx(b.total_flops)


def test_every_loss_and_demand_combination_is_solved():
    t = inf.inference_optimal(CHIN, [2.0, 2.2], [0.0, 1e12, 1e14])
    assert len(t) == 6 and list(t.loss) == [2.0] * 3 + [2.2] * 3
    assert (t.groupby("loss").chinchilla_N.nunique() == 1).all()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="irreducible loss E = 1.69"):
        inf.inference_optimal(CHIN, 1.6, 0.0)
    with pytest.raises(ValueError, match="inference_tokens must be finite and ≥ 0"):
        inf.inference_optimal(CHIN, 2.0, -1.0)
    with pytest.raises(ValueError, match="inference_tokens contains NaN"):
        inf.inference_optimal(CHIN, 2.0, np.nan)
    with pytest.raises(ValueError, match="loss must be finite"):
        inf.inference_optimal(CHIN, np.inf, 0.0)
    with pytest.raises(ValueError, match="inference_cost"):
        inf.inference_optimal(CHIN, 2.0, 0.0, inference_cost=0.0)
    with pytest.raises(ValueError, match="inference_cost must be one number"):
        inf.inference_optimal(CHIN, 2.0, 0.0, inference_cost=[1.0, 2.0])
    with pytest.raises(ValueError, match="tokens_for_loss: N must be finite and > 0"):
        inf.tokens_for_loss(CHIN, [-1.0], 2.0)
    with pytest.raises(ValueError, match="inference_optimal: loss and inference_tokens need"):
        inf.inference_optimal(CHIN, [], 0.0)
    with pytest.raises(TypeError, match="inference_optimal: loss must be a number"):
        inf.inference_optimal(CHIN, "low", 0.0)
    # a fit can return a law whose loss rises with N (α < 0) or has A = 0: named, not a
    # "math domain error" or "D must be finite" from deep inside
    for change in ({"alpha": -0.1}, {"A": 0.0}, {"beta": math.nan}):
        law = dataclasses.replace(CHIN, **change)
        for call, args in ((inf.inference_optimal, (2.0, 0.0)), (inf.smallest_model, (2.0,)),
                           (inf.tokens_for_loss, (1e9, 2.0))):  # fmt: skip
            with pytest.raises(ValueError, match=r"the law needs finite E and A, B, alpha, beta"):
                call(law, *args)
    with pytest.raises(TypeError, match="smallest_model: law must have numbers E, A, B"):
        inf.smallest_model({"E": 1.69}, 2.0)


def test_cheapest_runs_picks_the_least_total_cost_among_runs_that_reach_the_loss():
    law = LossLaw("planted", 1.0, 50.0, 50.0, 0.5, 0.5, "test")
    N = np.repeat([1e3, 4e3, 1.6e4, 6.4e4], 5)
    D = np.tile([1e3, 1e4, 1e5, 1e6, 1e7], 4)
    runs = pd.DataFrame({"params": N, "tokens": D, "val_loss": law(N, D), "name": range(20)})
    ell = 2.2
    demand = [0.0, 1e5, 1e7, 1e9]
    got = inf.cheapest_runs(runs, ell, demand)
    for d_inf, (_, row) in zip(demand, got.iterrows(), strict=True):
        ok = runs[runs.val_loss <= ell]
        cost = 6 * ok.params * ok.tokens + 2 * ok.params * d_inf
        assert row["name"] == ok.name[cost.idxmin()]
        assert row.total_flops == pytest.approx(cost.min())
    assert got.params.is_monotonic_decreasing and got.params.iloc[0] > got.params.iloc[-1]
    with pytest.raises(ValueError, match="no run reaches val_loss ≤ 1"):
        inf.cheapest_runs(runs, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"no column\(s\) \['flops'\]"):
        inf.cheapest_runs(runs, 2.0, 0.0, tokens="flops")
    with pytest.raises(ValueError, match="cheapest_runs: column 'params' contains NaN"):
        inf.cheapest_runs(runs.assign(params=np.nan), 2.2, 0.0)
    with pytest.raises(ValueError, match="cheapest_runs: loss must be a finite number"):
        inf.cheapest_runs(runs, "2.5", 0.0)
    with pytest.raises(ValueError, match="cheapest_runs: inference_tokens needs at least one"):
        inf.cheapest_runs(runs, 2.2, [])
    with pytest.raises(TypeError, match="cheapest_runs: runs must be a pandas DataFrame"):
        inf.cheapest_runs(runs.to_dict("list"), 2.2, 0.0)


def test_total_flops_prices_inference_by_its_cost_factor():
    assert inf.total_flops(1.0, 1.0, 1.0, inference_cost=2.0) == pytest.approx(6 + 2 * 2)
    assert inf.total_flops(3.0, 5.0, 7.0) == pytest.approx(6 * 3 * 5 + 2 * 3 * 7)
    a = inf.inference_optimal(CHIN, 2.05, 1e13, inference_cost=2.0).iloc[0]
    b = inf.inference_optimal(CHIN, 2.05, 2e13).iloc[0]
    for col in ("chinchilla_total", "saving", "inference_flops", "train_flops"):
        assert a[col] == pytest.approx(b[col], rel=1e-6), col


def test_cheapest_runs_prices_inference_and_takes_a_run_exactly_at_the_target():
    runs = pd.DataFrame({"params": [1e3, 4e3, 1.6e4], "tokens": [1e6, 1e5, 1e4],
                         "val_loss": [2.0, 2.5, 2.5]})
    got = inf.cheapest_runs(runs, 2.5, [0.0, 1e6], inference_cost=2.0)
    for (_, row), d_inf in zip(got.iterrows(), [0.0, 1e6], strict=True):
        cost = 6 * runs.params * runs.tokens + 2.0 * 2 * runs.params * d_inf
        assert row.params == runs.params[cost.idxmin()]
        assert row.inference_flops == pytest.approx(2.0 * 2 * row.params * d_inf)
        assert row.train_flops + row.inference_flops == pytest.approx(row.total_flops)
    assert got.params.tolist() == [1.6e4, 1e3]  # 1.6e4 reaches 2.5 exactly (≤, not <)
