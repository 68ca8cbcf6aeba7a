"""Norm transfer analysis: planted optimal norm and power laws are recovered."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from optimal_scaling import norm_transfer as nt

# the planted world: η*(B, D) = 2^-4 · B^0.5 · D^-0.3; B*(D) = 2^-6 · D^0.5; at the best η of
# every (D, B) the output norm is 2^7, and the norm grows by one octave per octave of η
ETA = (2.0**-4, 0.5, -0.3)
BSTAR = (2.0**-6, 0.5)


def planted(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for log2_d in range(16, 23):
        D = 2.0**log2_d
        b_star = BSTAR[0] * D ** BSTAR[1]
        for log2_b in range(0, 9):
            B = 2.0**log2_b
            eta_star = ETA[0] * B ** ETA[1] * D ** ETA[2]
            for k in range(-8, 9):
                lr = eta_star * 2.0 ** (k / 2 + 0.1)  # the grid does not sit on η*
                u = math.log2(lr / eta_star)
                loss = 2.0 + 0.05 * u**2 + 0.02 * (log2_b - math.log2(b_star)) ** 2
                rows.append({"optimizer.lr": lr, "lr": lr, "batch_size": B, "horizon": D,
                             "val_loss": loss + noise * rng.standard_normal(),
                             "norm[output]": 2.0 ** (7 + u)})  # fmt: skip
    return pd.DataFrame(rows)


def test_one_slice_by_hand():
    # an exact parabola L = 3 + (x − 6.5)²: every variant finds 6.5
    x = np.arange(3.0, 10.5, 0.5)
    est = nt.optimal_norm(x, 3 + (x - 6.5) ** 2, anchor=(0.0, 3 + 6.5**2))
    for key in ("grid", "free", "fixed"):
        assert est[key] == pytest.approx(6.5, abs=1e-9), key
    assert est["log2_norm"] == pytest.approx(6.5) and est["variants"] == 5
    assert not est["norm_at_edge"]
    # a loss still falling at the largest norm: censored, and its spread of 0 says nothing
    edge = nt.optimal_norm(x, 3 + (x - 12.0) ** 2)
    assert edge["norm_at_edge"] and edge["grid"] == x.max()
    # the fixed-intercept fit by hand: L − L0 = a(x − x0)² + b(x − x0) through (x0, L0)
    x = np.array([4.0, 5, 6, 7, 8])
    y = np.array([2.5, 2.2, 2.1, 2.2, 2.6])
    x0, l0 = 0.0, 5.5
    k = int(np.argmin(y))
    w = 1 / (1 + np.abs(np.arange(5) - k))
    A = np.column_stack([(x - x0) ** 2, x - x0]) * np.sqrt(w)[:, None]
    a, b = np.linalg.lstsq(A, (y - l0) * np.sqrt(w), rcond=None)[0]
    assert nt.optimal_norm(x, y, anchor=(x0, l0), points=5)["fixed"] == pytest.approx(
        x0 - b / (2 * a))
    with pytest.raises(ValueError, match="at least 3 finite"):
        nt.optimal_norm([1.0, 2.0, np.inf], [1.0, 2.0, 3.0])


def test_planted_optimal_norm_and_scaling_laws_are_recovered():
    table = planted(noise=0.002)
    slices = nt.optimal_norms(table)
    assert slices["log2_norm"].median() == pytest.approx(7.0, abs=0.1)
    assert (abs(slices["log2_norm"] - 7.0) < 0.3).all()  # every slice, not just the median
    per = nt.per_horizon(table, slices)
    # two seeds per cell: the norm at the best cell is the cell's mean, a number per horizon
    seeds = pd.concat([table, table.assign(**{"norm[output]": table["norm[output]"] * 2})])
    twice = nt.per_horizon(seeds)["log2_norm_at_best"]
    assert twice.map(type).eq(float).all()
    assert (twice - nt.per_horizon(table)["log2_norm_at_best"]).to_numpy() == \
        pytest.approx(0.5)  # fmt: skip
    b = nt.band(per)
    assert abs(b["mean"] - 7.0) < 0.2 and b["n"] == 7
    joint = nt.joint_fit(slices, bootstrap=300)
    for name, truth in (("batch_size", ETA[1]), ("horizon", ETA[2])):
        lo, hi = joint.intervals[name]
        assert lo <= truth <= hi and abs(joint.exponents[name] - truth) < 0.05, (name, lo, hi)
    # B*(D) from the best cells: the grid in B is coarse (factor 2), so ±0.1 in the exponent
    fits = nt.scaling_fits(per, bootstrap=300)
    assert fits["batch_size"].exponents["horizon"] == pytest.approx(BSTAR[1], abs=0.1)
    # the first η to reach the optimal norm is η*·2^-0 (norm = 2^7 exactly at η*)
    reach = nt.first_reaching(table, 7.0)
    assert not reach["censored"].any()  # the grid starts below η* everywhere
    low = nt.first_reaching(table, 2.0)  # a level every slice passes at its smallest η
    assert low["censored"].all()
    law = nt.joint_fit(reach.rename(columns={"lr_reach": "lr"}), bootstrap=0)
    assert law.exponents["batch_size"] == pytest.approx(ETA[1], abs=1e-6)
    assert law.exponents["horizon"] == pytest.approx(ETA[2], abs=1e-6)
    assert law.c == pytest.approx(ETA[0], rel=1e-6)


def test_figures_and_errors():
    table = planted()
    fig = nt.plot_loss_vs_norm(table, 2**18, center=7.0, width=0.2)
    assert len(fig.data) == 9
    assert len(nt.plot_norm_growth(table[table["batch_size"] <= 2]).data) > 0
    with pytest.raises(ValueError, match="missing columns"):
        nt.tidy(table.drop(columns=["norm[output]"]))


def test_figures_name_a_horizon_or_role_the_table_lacks():
    """A horizon not in the table drew an empty figure; an unknown role was a KeyError."""
    table = planted()
    with pytest.raises(ValueError, match=r"plot_loss_vs_norm: no runs at horizon 12345; the "
                       r"table has \[65536.0, 131072.0, "):
        nt.plot_loss_vs_norm(table, 12345)
    with pytest.raises(ValueError, match=r"plot_norm_growth: no column 'norm\[foo\]'; the roles "
                       r"the table has are \['output'\]"):
        nt.plot_norm_growth(table, role="foo")


def test_band_and_scaling_figures():
    table = planted()
    per = nt.per_horizon(table, nt.optimal_norms(table))
    assert len(nt.plot_band(per).data) == 2
    fig = nt.plot_scaling(per, nt.scaling_fits(per, bootstrap=50))
    assert len(fig.data) == 4 and "∝ D^" in fig.layout.annotations[0].text


def test_leave_one_out_range_of_a_power_law_in_the_horizon():

    D = 2.0 ** np.arange(16, 22)
    exact = pd.DataFrame({"horizon": D, "lr": 3.0 * D**-0.3})
    lo, hi = nt.leave_one_out(exact, "lr")
    assert lo == pytest.approx(-0.3) and hi == pytest.approx(-0.3)
    bent = exact.assign(lr=exact.lr * np.where(D == D[-1], 2.0, 1.0))  # last horizon off
    lo, hi = nt.leave_one_out(bent, "lr")
    assert lo == pytest.approx(-0.3) and hi > -0.2  # dropping the odd one recovers the law
    with pytest.raises(ValueError, match="at least 4 horizons"):
        nt.leave_one_out(exact.head(3), "lr")


def test_smoothed_variants_use_a_three_point_running_mean():
    x = np.arange(3.0, 10.0)
    loss = np.array([3.0, 2.4, 2.3, 2.05, 2.2, 2.25, 2.9])
    est = nt.optimal_norm(x, loss, points=5)
    sm = np.convolve(np.r_[loss[0], loss, loss[-1]], np.ones(3) / 3, mode="valid")
    k = int(np.argmin(sm))
    near = np.argsort(np.abs(np.arange(7) - k), kind="stable")[:5]
    w = np.sqrt(1 / (1 + np.abs(near - k)))
    A = np.column_stack([x[near] ** 2, x[near], np.ones(5)]) * w[:, None]
    a, b, _ = np.linalg.lstsq(A, sm[near] * w, rcond=None)[0]
    assert est["free_smooth"] == pytest.approx(-b / (2 * a), rel=1e-12)
    assert est["free_smooth"] != pytest.approx(est["free"], abs=1e-3)


def test_a_vertex_beyond_the_points_is_refused():
    x = np.arange(3.0, 10.5, 0.5)
    edge = nt.optimal_norm(x, 3 + (x - 12.0) ** 2)
    assert math.isnan(edge["free"]) and math.isnan(edge["free_smooth"])
    assert edge["log2_norm"] == x.max() and edge["spread"] == 0 and edge["variants"] == 1


def test_optimal_norms_flags_a_best_lr_at_the_largest_rate():
    lr = 2.0 ** np.arange(-8, -3)
    t = pd.DataFrame({"lr": lr, "batch_size": 8, "horizon": 2**20,
                      "val_loss": 3 - 0.1 * np.log2(lr), "norm[output]": lr * 2**12})
    assert nt.optimal_norms(t)["lr_at_edge"].iloc[0]


def test_band_by_hand():
    h = pd.DataFrame({"log2_norm": [6.8, 7.0, 7.3], "spread": [0.1, 0.4, 0.2]})
    b = nt.band(h)
    assert b == pytest.approx({"mean": 7.0333333333, "std": np.std([6.8, 7.0, 7.3]), "min": 6.8,
                               "max": 7.3, "n": 3, "procedure_spread": 0.4})
    # per_horizon without slices has no "log2_norm": the error says how to get one
    per = nt.per_horizon(planted(noise=0.002))
    with pytest.raises(ValueError, match=r"no column 'log2_norm' \(per_horizon adds it only"):
        nt.band(per)
    assert nt.band(per, "log2_norm_at_best")["n"] == per["horizon"].nunique()
    with pytest.raises(TypeError, match="band: expected a pandas DataFrame"):
        nt.band([6.8, 7.0])


def test_vertex_within_half_an_octave_beyond_the_points_is_kept():  # N1
    x = np.arange(3.0, 10.5, 0.5)
    assert nt.optimal_norm(x, 3 + (x - 10.3) ** 2)["free"] == pytest.approx(10.3, abs=1e-9)
    assert math.isnan(nt.optimal_norm(x, 3 + (x - 10.8) ** 2)["free"])
    assert nt.optimal_norm(x, 3 + (x - 2.7) ** 2)["free"] == pytest.approx(2.7, abs=1e-9)
    assert math.isnan(nt.optimal_norm(x, 3 + (x - 2.2) ** 2)["free"])


def test_estimate_is_the_median_of_the_variants():  # N2
    x = np.arange(3.0, 10.0)
    loss = np.array([3.0, 2.4, 2.3, 2.05, 2.2, 2.25, 2.9])
    est = nt.optimal_norm(x, loss, anchor=(0.0, 6.0), points=5)
    v = [est[k] for k in ("grid", "free", "free_smooth", "fixed", "fixed_smooth")
         if math.isfinite(est[k])]  # fmt: skip
    assert len(v) >= 4 and np.median(v) != pytest.approx(np.mean(v), abs=1e-3)
    assert est["log2_norm"] == pytest.approx(np.median(v)) and est["variants"] == len(v)
    assert est["spread"] == pytest.approx(max(v) - min(v))


def test_weights_follow_the_neighbour_rank_not_the_distance_in_x():  # N8
    x = np.arange(3.0, 6.5, 0.5)
    loss = np.array([3.0, 2.4, 2.3, 2.05, 2.2, 2.25, 2.9])
    est = nt.optimal_norm(x, loss, points=5)
    k = int(np.argmin(loss))
    near = np.argsort(np.abs(np.arange(7) - k), kind="stable")[:5]
    w = np.sqrt(1 / (1 + np.abs(near - k)))  # weight 1/(1 + k) for the k-th neighbour
    A = np.column_stack([x[near] ** 2, x[near], np.ones(5)]) * w[:, None]
    a, b, _ = np.linalg.lstsq(A, loss[near] * w, rcond=None)[0]
    assert est["free"] == pytest.approx(-b / (2 * a), rel=1e-12)


def test_norm_at_edge_at_the_smallest_norm():  # N9
    x = np.arange(3.0, 10.0)
    assert nt.optimal_norm(x, 2 + 0.1 * x)["norm_at_edge"]


def _slice(lr, loss, norm, **extra):
    return pd.DataFrame({"lr": lr, "batch_size": 8, "horizon": 2**20, "val_loss": loss,
                         "norm[output]": norm, **extra})


def test_optimal_norms_edge_flag_at_the_smallest_rate_and_options_passed_on():  # N3, N4, N5
    lr = 2.0 ** np.arange(-8, -1)
    rising = _slice(lr, 2 + 0.1 * np.log2(lr / lr[0]), lr * 2**12)
    assert nt.optimal_norms(rising)["lr_at_edge"].iloc[0]
    x = np.arange(3.0, 10.0)
    loss = np.array([3.0, 2.4, 2.3, 2.05, 2.2, 2.25, 2.9])
    t = _slice(2.0 ** (x - 12), loss, 2.0**x)
    row = nt.optimal_norms(t, anchor=(0.0, 6.0), points=3).iloc[0]
    want = nt.optimal_norm(x, loss, anchor=(0.0, 6.0), points=3)
    for key in ("free", "fixed", "fixed_smooth", "log2_norm"):
        assert row[key] == pytest.approx(want[key], nan_ok=True), key
    assert row["fixed"] != pytest.approx(nt.optimal_norm(x, loss, anchor=(0.0, 6.0))["fixed"])


def test_optimal_norms_skips_a_slice_with_fewer_than_three_finite_points():  # N11
    lr = 2.0 ** np.arange(-8, -3)
    good = _slice(lr, 2 + 0.1 * (np.log2(lr) + 6) ** 2, lr * 2**12)
    dead = _slice(lr, [2.5, 2.4, np.inf, np.inf, np.inf], lr * 2**12, batch_size=16)
    out = nt.optimal_norms(pd.concat([good, dead]))
    assert out["batch_size"].tolist() == [8]


def test_optimal_norms_refuses_an_empty_table_or_one_without_a_usable_slice():
    """Both gave a table without columns (later errors spoke of missing columns)."""
    lr = 2.0 ** np.arange(-8, -3)
    good = _slice(lr, 2 + 0.1 * (np.log2(lr) + 6) ** 2, lr * 2**12)
    assert nt.optimal_norms(good)["lr"].tolist() == [2.0**-6]
    with pytest.raises(ValueError, match="optimal_norms: the table is empty"):
        nt.optimal_norms(good.iloc[:0])
    dead = good.assign(val_loss=[2.5, 2.4, np.inf, np.inf, np.inf])
    with pytest.raises(ValueError, match=r"optimal_norms: no \(horizon, batch_size\) slice has 3"):
        nt.optimal_norms(dead)


def test_first_reaching_at_an_exact_level_and_in_any_row_order():  # N6, N10
    lr = 2.0 ** np.arange(-8, -3)
    t = _slice(lr, 2.0, 2.0 ** (7 + np.arange(5)))  # log2 norm 7, 8, ..., 11
    r = nt.first_reaching(t, 7.0)
    assert r["censored"].iloc[0] and r["lr_reach"].iloc[0] == lr[0]  # reached at the first η
    shuffled = t.iloc[[3, 0, 4, 2, 1]]
    r = nt.first_reaching(shuffled, 8.5)
    assert r["lr_reach"].iloc[0] == pytest.approx(2.0**-6.5) and not r["censored"].iloc[0]


def test_tidy_takes_the_configured_rate_over_the_logged_one():  # N7
    lr = 2.0 ** np.arange(-8, -3)
    t = _slice(lr * 0.1, 2.0, lr * 2**12).assign(**{"optimizer.lr": lr})  # "lr": scheduled
    assert nt.tidy(t)["lr"].tolist() == lr.tolist()


def test_tidy_refuses_a_negative_norm_and_keeps_a_zero_norm_as_minus_inf():
    """A negative norm cannot be measured (it became a NaN that vanished): refused. A zero norm
    (an all-zero layer) is log₂ 0 = −inf, left out of the fits like a diverged run."""
    lr = 2.0 ** np.arange(-8, -3)
    t = _slice(lr, 2 + 0.1 * (np.log2(lr) + 6) ** 2, lr * 2**12)
    with pytest.raises(ValueError, match=r"norm_transfer: 1 rows have a negative norm\[output\], "
                       r"e.g. -1.0"):
        nt.tidy(t.assign(**{"norm[output]": [-1.0, 1.0, 2.0, 4.0, 8.0]}))
    zero = nt.tidy(t.assign(**{"norm[output]": [0.0, *lr[1:] * 2**12]}))
    assert zero["log2_norm"].tolist() == [-np.inf, *np.log2(lr[1:] * 2**12)]


def test_per_horizon_without_an_estimate_for_the_best_slice_has_nan_norm_and_spread():  # N12
    lr = 2.0 ** np.arange(-8, -3)
    t = pd.concat([_slice(lr, 2 + 0.1 * (np.log2(lr) + 6) ** 2, lr * 2**12),
                   _slice(lr, 3.0, lr * 2**12, batch_size=16)])
    slices = nt.optimal_norms(t).query("batch_size == 16")  # no estimate for B* = 8
    per = nt.per_horizon(t, slices)
    assert per["batch_size"].iloc[0] == 8
    assert math.isnan(per["log2_norm"].iloc[0]) and math.isnan(per["spread"].iloc[0])
