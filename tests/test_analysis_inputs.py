"""Bad input to the analysis functions gets an error that names it; edge cases that used to
give silently wrong answers (text settings, flat metrics, reused run ids, chained IsoFLOP
lines, 2-D arrays) are caught."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimal_scaling import batch_size as bs
from optimal_scaling import compute_optimal as co
from optimal_scaling import emergence as em
from optimal_scaling import inference_scaling as inf
from optimal_scaling import norm_transfer as nt
from optimal_scaling import test_time as tt
from optimal_scaling.fitting import find_optimum, fit_power_law
from optimal_scaling.scaling_laws import LOSS_LAWS, common_units


def _valley(lr: np.ndarray) -> np.ndarray:
    return 2.0 + 0.05 * (np.log2(lr) + 14.3) ** 2  # minimum at lr = 2^-14.3


def test_find_optimum_refuses_text_settings_minus_inf_and_a_flat_metric():
    lr = 2.0 ** np.arange(-18, -10)
    grid = pd.DataFrame({"lr": lr, "loss": _valley(lr)})
    fine = find_optimum(grid, over="lr", method="parabola")
    assert fine["refined"].iloc[0] and not fine["at_edge"].iloc[0]
    assert np.log2(fine["lr"].iloc[0]) == pytest.approx(-14.3)
    with pytest.raises(TypeError, match="column 'lr' must hold numbers"):
        find_optimum(grid.assign(lr=grid["lr"].astype(str)), over="lr")
    with pytest.raises(ValueError, match="-inf"):
        find_optimum(grid.assign(loss=np.where(lr == lr[0], -np.inf, grid["loss"])), over="lr")
    wide = pd.DataFrame({"lr": 2.0 ** np.arange(-8, 0)})
    for level in (2.0, 3.1, 1e-7):  # a flat metric has no vertex, whatever its value
        flat = find_optimum(wide.assign(loss=level), over="lr", method="parabola")
        assert not flat["refined"].iloc[0] and flat["lr"].iloc[0] == 2.0**-8, level
    for bad in (2.5, True, -1):
        with pytest.raises(ValueError, match="bootstrap must be an int ≥ 0"):
            fit_power_law(grid, "loss", "lr", bootstrap=bad)


def _curves(law, sizes, ids):
    D = np.geomspace(1e8, 1e12, 60)
    return pd.concat([pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                    "train_loss": law(n, D)})
                      for i, n in zip(ids, sizes, strict=True)])  # fmt: skip


def test_envelope_fit_refuses_run_ids_shared_by_two_model_sizes():
    law = LOSS_LAWS["Chinchilla approach 3"]
    sizes = np.geomspace(1e7, 3e9, 8)
    ok = co.envelope_fit(_curves(law, sizes, range(8)), bootstrap=0)
    assert ok["a"] == pytest.approx(law.a, abs=0.05)
    with pytest.raises(ValueError, match="run 0 has 2 different 'params' values"):
        co.envelope_fit(_curves(law, sizes, [i % 4 for i in range(8)]), bootstrap=0)
    for bad in (24.0, "24", True, 1):
        with pytest.raises(ValueError, match="budgets must be"):
            co.envelope_fit(_curves(law, sizes, range(8)), budgets=bad, bootstrap=0)
    with pytest.raises(ValueError, match="smooth must be an int ≥ 1"):
        co.envelope_fit(_curves(law, sizes, range(8)), smooth=2.5, bootstrap=0)


def test_isoflop_lines_never_span_more_than_five_percent():
    # twelve runs, each 4% more compute than the last: consecutive gaps are all < 5%, but
    # one profile must not chain them into a 1.5× span
    N = np.geomspace(1e7, 1e9, 12)
    C = 1e18 * 1.04 ** np.arange(12)
    best = pd.DataFrame({"_N": N, "_D": C / (6 * N), "_L": 2.0})
    lines = co._isoflop_lines(best)
    for _, pts in lines:
        spans = [6 * n * d for n, d, _ in pts]
        assert max(spans) / min(spans) <= 1.05 + 1e-12
    assert sum(len(p) for _, p in lines) == 12 and len(lines) == 6
    with pytest.raises(ValueError, match="no run with a finite 'val_loss'"):
        co.isoflop_fit(pd.DataFrame({"params": [1e7], "tokens": [1e9], "val_loss": [np.nan]}),
                       interpolate=False, bootstrap=0)  # fmt: skip


def test_fit_parametric_refuses_2d_arrays_and_a_bad_delta():
    law = LOSS_LAWS["Chinchilla approach 3"]
    N, D = np.meshgrid(np.geomspace(1e7, 1e9, 3), np.geomspace(1e9, 1e11, 3))
    L = law(N, D)
    with pytest.raises(ValueError, match="must have one shape"):
        co.fit_parametric(N, D.T.reshape(9, 1), L)
    for bad in (np.nan, 0.0, -1e-3, np.inf):
        with pytest.raises(ValueError, match="delta"):
            co.fit_parametric(N.ravel(), D.ravel(), L.ravel(), delta=bad)
    with pytest.raises(ValueError, match="starts must be"):
        co.fit_parametric(N.ravel(), D.ravel(), L.ravel(), starts=np.zeros((0, 5)))


def test_norm_transfer_helpers_name_bad_input():
    x = np.array([3.0, 4.0, 5.0, 6.0, 7.0])
    loss = 2 + 0.1 * (x - 5) ** 2
    assert nt.optimal_norm(x, loss, anchor=(2.0, 2.9))["fixed"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="anchor must be a finite pair"):
        nt.optimal_norm(x, loss, anchor=(np.nan, 2.9))
    with pytest.raises(ValueError, match="points must be an int ≥ 3"):
        nt.optimal_norm(x, loss, points=2)
    per = pd.DataFrame({"horizon": 2.0 ** np.arange(16, 21), "lr": 2.0 ** -np.arange(5.0)})
    lo, hi = nt.leave_one_out(per, "lr")
    assert lo == pytest.approx(-1.0) and hi == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="'lr' needs positive"):
        nt.leave_one_out(per.assign(lr=-per["lr"]), "lr")
    with pytest.raises(ValueError, match="horizons repeat"):
        nt.leave_one_out(per.assign(horizon=[1.0, 1.0, 2.0, 3.0, 4.0]), "lr")


def test_probabilities_counts_and_units_are_checked():
    assert em.exact_match_from_accuracy(0.9, 3) == pytest.approx(0.729)
    for p, k in ((1.5, 2), (0.5, 2.5), (np.nan, 2), (0.5, True)):
        with pytest.raises(ValueError, match="exact_match_from_accuracy"):
            em.exact_match_from_accuracy(p, k)
    answers, correct = np.array([[1, 2, 1], [0, 0, 3]]), np.array([1, 3])
    assert list(tt.scaling_table(answers, correct, [1, 2], draws=8)["k"]) == [1, 2]
    with pytest.raises(ValueError, match="each k must be an int, got 1.7"):
        tt.scaling_table(answers, correct, [1.7])
    with pytest.raises(ValueError, match="anchor_D"):
        common_units(1e8, 2e9, anchor_D=0)
    with pytest.raises(ValueError, match="C must be positive and finite"):
        LOSS_LAWS["Chinchilla approach 3"].compute_optimal([1e21, np.nan])
    with pytest.raises(ValueError, match="squared gradient norms must be finite"):
        bs.noise_scale_terms(np.nan, 1.0, 8, 64)
    runs = pd.DataFrame({"params": [1e7, 1e8], "tokens": [1e10, 1e9], "val_loss": [2.0, 2.1]})
    with pytest.raises(TypeError, match="column 'val_loss' must hold numbers"):
        inf.cheapest_runs(runs.assign(val_loss=["2.0", "2.1"]), 2.5, 1e9)
    with pytest.raises(ValueError, match="1-D"):
        inf.cheapest_runs(runs, 2.5, [[1e9, 2e9]])
    log = pd.DataFrame({"run_id": 0, "step": [8, 16, 24], "train_loss": [3.0, 2.5, 2.0]})
    assert bs.steps_to_target(log, [2.5], smooth=1)["steps"].iloc[0] == 16
    with pytest.raises(ValueError, match="smooth must be an int ≥ 1"):
        bs.steps_to_target(log, [2.5], smooth=2.5)
    with pytest.raises(TypeError, match="'train_loss' must hold numbers"):
        bs.steps_to_target(log.assign(train_loss=["3", "2.5", "2"]), [2.5])
