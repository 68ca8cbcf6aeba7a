"""Fits against planted truths: grid optima (argmin and parabola) and power laws."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from optimal_scaling import batch_size as bs
from optimal_scaling.fitting import find_optimum, fit_power_law, lbfgs, percentile_intervals


def planted_grid(noise: float = 0.0, seed: int = 0, shift: float = 0.0
                 ) -> tuple[pd.DataFrame, dict]:  # fmt: skip
    """loss = 2 + 0.1·(log2 lr − u*(D))² + 0.05·(log2 B − 5)², u* = −4 − ½·log2(D/2^20)."""
    rng = np.random.default_rng(seed)
    truth = {}
    rows = []
    for D in (2**20, 2**22, 2**24):
        u_star = -4 - 0.5 * math.log2(D / 2**20)
        truth[D] = 2.0**u_star
        for e in np.arange(-10, 0, 1.0) + shift:
            for B in (16, 32, 64):
                loss = 2 + 0.1 * (e - u_star) ** 2 + 0.05 * (math.log2(B) - 5) ** 2
                rows.append({"D": D, "lr": 2.0**e, "B": B, "loss": loss + noise * rng.normal()})
    return pd.DataFrame(rows), truth


def test_argmin_finds_the_grid_point_per_group():
    grid, truth = planted_grid()
    best = find_optimum(grid, over=("lr", "B"), by="D")
    assert list(best["D"]) == [2**20, 2**22, 2**24]
    assert (best["B"] == 32).all()
    # the planted optima 2^-4, 2^-5, 2^-6 are grid points here
    assert best["lr"].tolist() == [truth[D] for D in best["D"]]
    assert best["loss"].tolist() == pytest.approx([2.0] * 3)
    assert not best["at_edge"].any() and (best["points"] == 30).all()


def test_parabola_recovers_an_optimum_between_grid_points():
    grid, _ = planted_grid(shift=0.3)  # the grid misses the planted optima by 0.3 octaves
    grid = grid[grid["B"] == 32]
    best = find_optimum(grid, over="lr", by="D", method="parabola")
    for _, row in best.iterrows():
        u_star = -4 - 0.5 * math.log2(row["D"] / 2**20)
        assert math.log2(row["lr"]) == pytest.approx(u_star, abs=1e-9)
        assert row["loss"] == pytest.approx(2.0, abs=1e-9) and row["refined"]
    plain = find_optimum(grid, over="lr", by="D")
    assert (abs(np.log2(plain["lr"]) - np.log2(best["lr"])) > 0.2).all()  # argmin is off


def test_parabola_with_repeated_runs_per_grid_value():
    """Seeds repeat each learning rate: the window is over distinct values (it counted rows,
    so with 3 runs per value it spanned 2 values and the fit silently fell back)."""
    grid, _ = planted_grid(shift=0.3)
    grid = grid[(grid["B"] == 32) & (grid["D"] == 2**20)]
    for seeds in (1, 3, 5):
        repeated = pd.concat([grid] * seeds, ignore_index=True)
        best = find_optimum(repeated, over="lr", method="parabola")
        assert best["refined"].iloc[0] and math.log2(best["lr"].iloc[0]) == pytest.approx(-4)
    with pytest.raises(ValueError, match="neighbours must be an int ≥ 1"):
        find_optimum(grid, over="lr", method="parabola", neighbours=0)
    as_text = grid.assign(loss=grid["loss"].astype(str))  # numbers read as strings
    assert find_optimum(as_text, over="lr", method="parabola", neighbours=np.int64(2))[
        "refined"].iloc[0]


def test_edges_are_judged_along_the_optimums_own_line():
    """At B = 16 every lr ≥ 2^-4 diverged and the best loss sits at B = 16 next to that edge;
    B = 64 tolerated larger rates, which must not hide the edge at B = 16."""
    rows = []
    for B in (16, 32, 64):
        for e in range(-10, -2):
            diverged = (B == 16 and e >= -4) or (B == 32 and e >= -6)
            loss = math.inf if diverged else 2 + 0.1 * (e + 4) ** 2 + 0.2 * (B != 16)
            rows.append({"lr": 2.0**e, "B": B, "loss": loss})
    best = find_optimum(pd.DataFrame(rows), over=["lr", "B"])
    assert best["B"].iloc[0] == 16 and best["lr"].iloc[0] == 2**-5
    assert best["at_edge"].iloc[0]  # the largest finite lr at B = 16


def test_diverged_runs_edges_and_errors():
    grid, _ = planted_grid()
    grid = grid[(grid["D"] == 2**20) & (grid["B"] == 32)].copy()
    grid.loc[grid["lr"] >= 2**-5, "loss"] = math.inf  # the optimum's side diverged
    best = find_optimum(grid, over="lr", method="parabola")
    assert best["lr"].iloc[0] == 2**-6 and best["at_edge"].iloc[0]  # largest finite lr
    assert not best["refined"].iloc[0]
    all_inf = grid.assign(loss=math.inf)
    assert math.isinf(find_optimum(all_inf, over="lr")["loss"].iloc[0])
    with pytest.raises(ValueError, match=r"missing columns \['eta'\]"):
        find_optimum(grid, over="eta")
    with pytest.raises(ValueError, match="NaN"):
        find_optimum(grid.assign(loss=math.nan), over="lr")
    with pytest.raises(ValueError, match="column 'B' has 1 NaN"):  # groupby dropped them
        find_optimum(grid.assign(B=[math.nan] + [32] * (len(grid) - 1)), over="lr", by="B")
    with pytest.raises(ValueError, match="unknown method 'cubic'"):
        find_optimum(grid, over="lr", method="cubic")
    with pytest.raises(ValueError, match="'lr' needs positive"):
        find_optimum(grid.assign(lr=0.0), over="lr", method="parabola")


def test_power_law_recovers_planted_exponents_with_covering_intervals():
    rng = np.random.default_rng(1)
    D = 2.0 ** rng.uniform(18, 30, 60)
    B = 2.0 ** rng.uniform(3, 10, 60)
    eta = 0.7 * B**0.62 * D**-0.56 * np.exp(0.05 * rng.normal(size=60))
    law = fit_power_law(pd.DataFrame({"eta": eta, "B": B, "D": D}), "eta", ["B", "D"],
                        bootstrap=500, seed=0)  # fmt: skip
    assert law.exponents["B"] == pytest.approx(0.62, abs=0.03)
    assert law.exponents["D"] == pytest.approx(-0.56, abs=0.03)
    assert law.c == pytest.approx(0.7, rel=0.3)
    lo, hi = law.intervals["B"]
    assert lo < 0.62 < hi and hi - lo < 0.1
    lo, hi = law.intervals["D"]
    assert lo < -0.56 < hi
    lo, hi = law.intervals["c"]
    assert lo < 0.7 < hi
    assert law.r2 > 0.95 and law.n == 60
    assert law(B=64.0, D=2.0**20) == pytest.approx(law.c * 64**law.exponents["B"]
                                                   * 2.0 ** (20 * law.exponents["D"]))  # fmt: skip
    exact = fit_power_law(pd.DataFrame({"y": 3.0 * D**0.45, "D": D}), "y", "D", bootstrap=0)
    assert exact.exponents["D"] == pytest.approx(0.45, abs=1e-12) and exact.r2 == pytest.approx(1)
    assert "y = 3 · D^0.45" in str(exact)


def test_power_law_errors_name_the_problem():
    table = pd.DataFrame({"y": [1.0, 2.0, 4.0], "x": [1.0, 2.0, 4.0]})
    with pytest.raises(ValueError, match="3 rows cannot fit 3 parameters"):
        fit_power_law(table.assign(z=[1.0, 3.0, 2.0]), "y", ["x", "z"])
    with pytest.raises(ValueError, match="'x' needs positive"):
        fit_power_law(table.assign(x=[1.0, 0.0, 2.0]), "y", "x")
    with pytest.raises(ValueError, match=r"missing columns \['w'\]"):
        fit_power_law(table, "y", "w")
    with pytest.raises(ValueError, match="do not vary independently"):
        fit_power_law(table.assign(x=[2.0, 2.0, 2.0]), "y", "x")


def test_column_arguments_must_be_names():
    t = pd.DataFrame({"x": [1.0, 2.0, 4.0, 8.0], "y": [1.0, 1.5, 2.1, 2.9], "loss": 1.0})
    with pytest.raises(TypeError, match="fit_power_law: features must be a column name or a"):
        fit_power_law(t, "y", None)
    with pytest.raises(TypeError, match=r"fit_power_law: target must be a column name \(str\)"):
        fit_power_law(t, ["y"], "x")
    with pytest.raises(TypeError, match="find_optimum: over must be a column name or a list"):
        find_optimum(t, None)
    with pytest.raises(TypeError, match="find_optimum: by must be a column name or a list"):
        find_optimum(t, "x", by=None)
    with pytest.raises(TypeError, match=r"find_optimum: metric must be a column name \(str\)"):
        find_optimum(t, "x", metric=["loss"])
    assert find_optimum(t.assign(loss=[3.0, 1.0, 2.0, 4.0]), ("x",), by=[])["x"].iloc[0] == 2.0


def test_power_law_refuses_a_seed_that_is_not_an_int():
    t = pd.DataFrame({"x": [1.0, 2.0, 4.0, 8.0, 16.0], "y": [1.0, 1.5, 2.1, 2.9, 4.2]})
    for bad in ("x", 1.5, -1, None):
        with pytest.raises(ValueError, match="fit_power_law: seed must be an int ≥ 0"):
            fit_power_law(t, "y", "x", bootstrap=10, seed=bad)
    same = fit_power_law(t, "y", "x", bootstrap=50, seed=np.int64(3)).intervals
    assert same == fit_power_law(t, "y", "x", bootstrap=50, seed=3).intervals


def test_power_law_refuses_a_bool_column():
    t = pd.DataFrame({"x": [1.0, 2.0, 4.0, 8.0], "y": [1.0, 1.5, 2.1, 2.9]})
    with pytest.raises(TypeError, match="fit_power_law: column 'b' must hold numbers, got dtype "
                                        "bool"):  # fmt: skip
        fit_power_law(t.assign(b=True), "b", "x", bootstrap=0)  # was fitted as y = 1
    with pytest.raises(TypeError, match="column 'b' must hold numbers"):
        fit_power_law(t.assign(b=[True, False, True, True]), "y", "b", bootstrap=0)


def test_power_law_call_refuses_features_outside_its_domain():
    law = fit_power_law(pd.DataFrame({"x": [1.0, 2.0, 4.0, 8.0], "y": [3.0, 4.2, 6.0, 8.5]}),
                        "y", "x", bootstrap=0)  # fmt: skip
    for bad in (-1.0, 0.0, math.nan, math.inf, [1.0, -2.0]):
        with pytest.raises(ValueError, match="PowerLaw: x must be positive and finite"):
            law(x=bad)  # -1 gave NaN silently
    assert law(x=[2.0, 4.0]) == pytest.approx(law.c * np.array([2.0, 4.0]) ** law.exponents["x"])


def test_percentile_intervals_are_the_two_sided_numpy_percentiles():
    from optimal_scaling.fitting import percentile_intervals
    draws = np.column_stack([np.arange(1001.0), -np.arange(1001.0)])
    ci = percentile_intervals(draws, ["x", "y"], 0.95)
    assert ci["x"] == pytest.approx((25.0, 975.0)) and ci["y"] == pytest.approx((-975.0, -25.0))


def test_percentile_intervals_refuse_mismatched_names_and_a_bad_level():
    draws = np.column_stack([np.arange(1001.0), -np.arange(1001.0)])
    for names in (["x"], ["x", "y", "z"]):  # one name fewer dropped a column quietly
        with pytest.raises(ValueError, match=r"percentile_intervals: draws must have one column "
                                             r"per name .* got shape \(1001, 2\)"):  # fmt: skip
            percentile_intervals(draws, names, 0.95)
    for level in (2, 0.0, math.nan):
        with pytest.raises(ValueError, match=r"percentile_intervals: level must be in \(0, 1\)"):
            percentile_intervals(draws, ["x", "y"], level)
    assert percentile_intervals(draws, ("x", "y"), np.float64(0.5))["y"] == pytest.approx(
        (-750.0, -250.0))


def test_power_law_r2_from_the_formula():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    y = np.array([1.0, 2.2, 3.7, 9.0, 15.0])
    law = fit_power_law(pd.DataFrame({"x": x, "y": y}), "y", "x", bootstrap=0)
    slope, icpt = np.polyfit(np.log(x), np.log(y), 1)
    res = np.log(y) - icpt - slope * np.log(x)
    r2 = 1 - np.sum(res**2) / np.sum((np.log(y) - np.log(y).mean()) ** 2)
    assert law.r2 == pytest.approx(r2, rel=1e-12)


def _cubic_valley(u):  # not a parabola: the window decides the vertex
    return 2 + 0.1 * (u + 4.3) ** 2 + 0.01 * (u + 4.3) ** 3


@pytest.mark.parametrize("neighbours", [1, 2, 3])
def test_parabola_window_is_neighbours_distinct_values_each_side(neighbours):
    u = np.arange(-8.0, 0.0)
    grid = pd.DataFrame({"lr": 2.0**u, "loss": _cubic_valley(u)})
    got = find_optimum(grid, over="lr", method="parabola", neighbours=neighbours)
    k = int(np.argmin(grid["loss"]))
    w = slice(max(0, k - neighbours), k + neighbours + 1)
    p2, p1, _ = np.polyfit(u[w], grid["loss"].to_numpy()[w], 2)
    assert math.log2(got["lr"].iloc[0]) == pytest.approx(-p1 / (2 * p2), abs=1e-9)


def test_parabola_averages_seeds_that_differ():
    rng = np.random.default_rng(0)
    u = np.arange(-8.0, -1.0)
    rows = [{"lr": 2.0**e, "loss": 2 + 0.1 * (e + 4.3) ** 2 + 0.05 * rng.normal()}
            for e in u for _ in range(3)]
    t = pd.DataFrame(rows)
    got = find_optimum(t, over="lr", method="parabola")
    means = t.groupby("lr")["loss"].mean()
    uu, y = np.log2(means.index.to_numpy()), means.to_numpy()
    k = int(np.argmin(y))
    p2, p1, _ = np.polyfit(uu[k - 2 : k + 3], y[k - 2 : k + 3], 2)
    assert math.log2(got["lr"].iloc[0]) == pytest.approx(-p1 / (2 * p2), abs=1e-9)


def test_lr_edge_is_judged_on_the_lr_line_alone():
    """B = 16 is between B = 8 and B = 64 on its lr line, so only the lr column puts the
    optimum at the edge: every lr ≥ 2^-4 diverged at B = 16."""
    rows = []
    for B in (8, 16, 32, 64):
        for e in range(-10, -2):
            diverged = (B == 16 and e >= -4) or (B == 32 and e >= -6)
            loss = math.inf if diverged else 2 + 0.1 * (e + 4) ** 2 + 0.2 * (B != 16)
            rows.append({"lr": 2.0**e, "B": B, "loss": loss})
    best = find_optimum(pd.DataFrame(rows), over=["lr", "B"])
    assert best["B"].iloc[0] == 16 and best["lr"].iloc[0] == 2**-5 and best["at_edge"].iloc[0]


def test_lbfgs_scales_its_first_direction_on_a_flat_quadratic():
    from optimal_scaling.fitting import lbfgs
    c = np.array([1e-8, 1e-6, 1e-5])
    r = lbfgs(lambda x, rows: (0.5 * (c * x**2).sum(1), c * x), np.ones((1, 3)))
    assert r.converged[0] and r.iterations[0] <= 20 and np.abs(r.x).max() < 5e-5


def _quadratic(x, rows):
    return 0.5 * (x**2).sum(1), x.copy()


def test_lbfgs_refuses_bad_tolerances_a_misshapen_fun_and_an_empty_x0():
    with pytest.raises(ValueError, match=r"lbfgs: gtol must be in \[0, inf\), got nan"):
        lbfgs(_quadratic, np.ones((1, 2)), gtol=np.nan)  # returned x0 "converged"
    with pytest.raises(ValueError, match=r"lbfgs: ftol must be in \[0, inf\), got -1"):
        lbfgs(_quadratic, np.ones((1, 2)), ftol=-1)
    with pytest.raises(ValueError, match=r"lbfgs: fun must return f of shape \(2,\) and grad "
                                         r"of shape \(2, 3\).* got \(\) and \(2,\)"):  # fmt: skip
        lbfgs(lambda x, rows: (0.5 * (x**2).sum(), x.sum(1)), np.ones((2, 3)))
    with pytest.raises(TypeError, match="lbfgs: fun must return a pair"):
        lbfgs(lambda x, rows: 0.5 * (x**2).sum(1), np.ones((2, 3)))
    for shape in ((2, 0), (0, 2)):
        with pytest.raises(ValueError, match=r"lbfgs: x0 must be \(starts, parameters\), at "
                                             r"least 1 × 1"):  # fmt: skip
            lbfgs(_quadratic, np.ones(shape))
    r = lbfgs(_quadratic, np.array([[1.0, -2.0]]), gtol=0, ftol=np.float64(1e-10))
    assert r.converged[0] and np.abs(r.x).max() < 1e-8


def test_percentile_intervals_and_power_law_honour_the_level():  # F1, F9
    draws = np.column_stack([np.arange(1001.0)])
    assert percentile_intervals(draws, ["x"], 0.5)["x"] == pytest.approx((250.0, 750.0))
    assert percentile_intervals(draws, ["x"], 0.8)["x"] == pytest.approx((100.0, 900.0))
    rng = np.random.default_rng(0)
    x = np.geomspace(1, 1000, 12)
    t = pd.DataFrame({"x": x, "y": 3 * x**0.5 * np.exp(0.1 * rng.normal(size=12))})
    wide = fit_power_law(t, "y", "x", bootstrap=300, seed=0, level=0.95)
    narrow = fit_power_law(t, "y", "x", bootstrap=300, seed=0, level=0.5)
    (lo95, hi95), (lo50, hi50) = wide.intervals["x"], narrow.intervals["x"]
    assert lo95 < lo50 < hi50 < hi95  # same draws, a narrower percentile band
    assert "50% intervals" in str(narrow) and "95% intervals" in str(wide)


def test_level_one_is_refused():  # F2: 0 < level < 1
    t = pd.DataFrame({"x": [1.0, 2.0, 4.0, 8.0], "y": [1.0, 1.5, 2.1, 2.9]})
    with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\)"):
        fit_power_law(t, "y", "x", level=1.0)
    with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\)"):
        bs.fit_eta_of_b(pd.DataFrame({"batch_size": [8.0, 16, 32], "lr": [0.01, 0.02, 0.03]}),
                        level=1)


def _valley(u):
    return 2 + 0.1 * (u + 4.3) ** 2 + 0.01 * (u + 4.3) ** 3


def test_parabola_window_skips_diverged_grid_values():  # F3
    """lr ≥ 2^-2 diverged: the window is the 2 finite distinct values each side of the grid
    minimum (2^-4): 2^-6 … 2^-3, the diverged values do not enter the fit."""
    u = np.arange(-8.0, 0.0)
    loss = np.where(u >= -2, np.inf, _valley(u))
    got = find_optimum(pd.DataFrame({"lr": 2.0**u, "loss": loss}), over="lr", method="parabola")
    w = (u >= -6) & (u <= -3)
    p2, p1, p0 = np.polyfit(u[w], loss[w], 2)
    assert got["refined"].iloc[0]
    assert math.log2(got["lr"].iloc[0]) == pytest.approx(-p1 / (2 * p2), abs=1e-9)
    assert got["loss"].iloc[0] == pytest.approx(p0 - p1**2 / (4 * p2), abs=1e-12)


def test_points_counts_every_row_and_an_all_diverged_group_has_nan_settings():  # F4, F5
    u = np.arange(-8.0, 0.0)
    t = pd.DataFrame({"D": 1, "lr": 2.0**u, "loss": np.where(u >= -2, np.inf, _valley(u))})
    dead = t.assign(D=2, loss=np.inf)
    best = find_optimum(pd.concat([t, dead], ignore_index=True), over="lr", by="D")
    assert best["points"].tolist() == [8, 8]  # "rows in the group", diverged ones included
    assert math.isnan(best["lr"].iloc[1]) and math.isinf(best["loss"].iloc[1])
    assert best["lr"].iloc[0] == 2.0**-4


def test_parabola_curvature_threshold_scales_with_the_range_of_u():  # F12
    """Refined iff p₂·(range of u)² > 1e-9·max|metric| (range of the 5 fitted points: 4)."""
    u = np.arange(-8.0, 0.0)
    for p2, refined in ((3e-10, True), (1e-11, False)):  # p₂·16 = 4.8e-9 and 1.6e-10
        t = pd.DataFrame({"lr": 2.0**u, "loss": 1.0 + p2 * (u + 4.3) ** 2})
        got = find_optimum(t, over="lr", method="parabola")
        assert bool(got["refined"].iloc[0]) is refined, p2
        if refined:
            assert math.log2(got["lr"].iloc[0]) == pytest.approx(-4.3, abs=1e-3)


def test_power_law_bootstrap_uses_its_seed():  # F7
    rng = np.random.default_rng(5)
    x = np.geomspace(1, 100, 10)
    t = pd.DataFrame({"x": x, "y": 2 * x**0.3 * np.exp(0.1 * rng.normal(size=10))})
    a = fit_power_law(t, "y", "x", bootstrap=200, seed=1).intervals["x"]
    b = fit_power_law(t, "y", "x", bootstrap=200, seed=2).intervals["x"]
    again = fit_power_law(t, "y", "x", bootstrap=200, seed=1).intervals["x"]
    assert a == again and a != b


def test_power_law_bootstrap_can_draw_every_row():  # F8
    """Five rows lie exactly on y = x; the last is off the line. A resample without it fits
    the exponent 1 exactly; about 2/3 of resamples hold it, so the interval has width."""
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    y = x.copy()
    y[-1] *= 3.0
    lo, hi = fit_power_law(pd.DataFrame({"x": x, "y": y}), "y", "x", bootstrap=200,
                           seed=0).intervals["x"]
    assert hi - lo > 0.05 and hi > 1.05


def test_power_law_of_a_constant_target_is_a_perfect_fit():  # F10 (convention: SS_res = 0)
    law = fit_power_law(pd.DataFrame({"x": [1.0, 2.0, 4.0, 8.0], "y": 3.0}), "y", "x",
                        bootstrap=0)
    assert law.exponents["x"] == pytest.approx(0.0, abs=1e-12) and law.r2 == 1.0


_C = np.array([1.0, 3.0, 10.0, 30.0, 0.3])


def _f(x):  # smooth, non-quadratic, non-convex in places
    return (0.5 * (_C * x**2).sum() + 0.25 * x.sum() ** 4 + np.log(np.cosh(x - 0.7)).sum()
            + 0.8 * np.cos(2 * x).sum())


def _g(x):
    return _C * x + x.sum() ** 3 + np.tanh(x - 0.7) - 1.6 * np.sin(2 * x)


def _reference_lbfgs(x0, iters, memory, gtol=1e-10, ftol=1e-10, max_halvings=30, f=_f, g=_g):
    """One problem, written from lbfgs's docstring: two-loop recursion over the last
    ``memory`` pairs with s·y > 0 (initial scaling γ = s·y/y·y of the newest), steepest
    descent if not a descent direction, t from min(1, 1/‖g‖∞) on the first iteration and 1
    after, halved until Armijo (c = 1e-4); stop on ‖g‖∞ ≤ gtol or drop ≤ ftol·|f|."""
    x = np.array(x0, float)
    fx, gx = f(x), g(x)
    S, Y = [], []
    for it in range(iters):
        if np.abs(gx).max() <= gtol:
            return x, it, True
        q, al = gx.copy(), []
        for s, y in reversed(list(zip(S, Y, strict=True))):
            a = (s @ q) / (s @ y)
            al.append(a)
            q = q - a * y
        r = ((S[-1] @ Y[-1]) / (Y[-1] @ Y[-1]) if S else 1.0) * q
        for (s, y), a in zip(zip(S, Y, strict=True), reversed(al), strict=True):
            r = r + (a - (y @ r) / (s @ y)) * s
        d = -r if gx @ -r < 0 else -gx
        t = min(1.0, 1.0 / np.abs(gx).max()) if it == 0 else 1.0
        for _ in range(max_halvings):
            fn = f(x + t * d)
            if np.isfinite(fn) and fn <= fx + 1e-4 * t * (gx @ d):
                break
            t *= 0.5
        else:
            return x, it + 1, True
        xn = x + t * d
        gn = g(xn)
        s, y, drop = xn - x, gn - gx, fx - fn
        x, fx, gx = xn, fn, gn
        if s @ y > 0:
            S, Y = (S + [s])[-memory:], (Y + [y])[-memory:]
        else:
            _reference_lbfgs.skipped += 1
        if np.abs(gx).max() <= gtol or drop <= ftol * abs(fx):
            return x, it + 1, True
    return x, iters, False


_reference_lbfgs.skipped = 0


def test_lbfgs_follows_an_independent_single_row_implementation():  # L1–L10
    x0 = np.array([[1.5, -2.0, 0.7, 0.4, 3.0], [0.2, 0.1, -0.3, 0.05, 0.4],
                   [-1.0, 0.5, 0.5, -0.2, -2.5]])  # fmt: skip

    def fun(X, rows):
        return np.array([_f(x) for x in X]), np.array([_g(x) for x in X])

    for iters in (1, 2, 4, 8, 15, 200):
        res = lbfgs(fun, x0, max_iter=iters, memory=3)
        for i in range(len(x0)):
            x, n, conv = _reference_lbfgs(x0[i], iters, memory=3)
            assert np.allclose(res.x[i], x, rtol=1e-9, atol=1e-10), (iters, i)
            assert res.iterations[i] == n and bool(res.converged[i]) is conv, (iters, i)
    assert res.converged.all()


def test_lbfgs_skips_pairs_without_positive_curvature():  # L8
    """A non-convex 2-D function where a step meets s·y < 0: that pair must not enter the
    two-loop recursion (the docstring's "pairs (s, y) with s·y > 0")."""

    def f(v):
        x, y = v[0], v[1]
        return x**4 / 4 - x**2 + 2 * y**2 + 0.5 * x * y + 0.3 * np.sin(3 * y)

    def g(v):
        return np.array([v[0] ** 3 - 2 * v[0] + 0.5 * v[1],
                         4 * v[1] + 0.5 * v[0] + 0.9 * np.cos(3 * v[1])])

    def fun(X, rows):
        return np.array([f(x) for x in X]).reshape(-1), np.array([g(x) for x in X]).reshape(-1, 2)

    x0 = np.array([[0.3, 0.2]])
    _reference_lbfgs.skipped = 0
    for iters in (3, 4, 6):
        x, n, _ = _reference_lbfgs(x0[0], iters, memory=5, f=f, g=g)
        got = lbfgs(fun, x0, max_iter=iters, memory=5)
        assert np.allclose(got.x[0], x, rtol=1e-9, atol=1e-12) and got.iterations[0] == n, iters
    assert _reference_lbfgs.skipped > 0  # the case did arise


def test_lbfgs_backtracks_until_the_armijo_condition_holds():  # L9
    """f = 2x² from x = 0.50001: the first trial t = 1/|g| lands at −0.49999, a decrease but
    not a sufficient one (Armijo, c = 1e-4); one halving gives x = 0.50001 − 0.5."""
    res = lbfgs(lambda X, rows: (2 * X[:, 0] ** 2, 4 * X), np.array([[0.50001]]), max_iter=1)
    assert res.x[0, 0] == pytest.approx(0.50001 - 0.5, abs=1e-12)


def test_lbfgs_row_with_no_lowering_step_stops_converged():  # L5
    """f = x on x ≥ 0 (infinite below): from x = 1e-12 every trial of 30 halvings from t = 1
    lands below 0, so the row stops where it is, by the halving test (not by max_iter)."""

    def fun(X, rows):
        return np.where(X[:, 0] >= 0, X[:, 0], np.inf), np.ones_like(X)

    res = lbfgs(fun, np.array([[1e-12]]), max_iter=50)
    assert res.converged[0] and res.x[0, 0] == 1e-12 and res.iterations[0] < 50
    more = lbfgs(fun, np.array([[1e-12]]), max_iter=1, max_halvings=45)  # 2^-44 < 1e-12
    assert 0 <= more.x[0, 0] < 1e-12
