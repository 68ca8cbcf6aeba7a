"""Chinchilla's three approaches on data with a planted truth, and the batched L-BFGS."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from optimal_scaling.compute_optimal import (
    checklist,
    compute_optimal_draws,
    envelope_fit,
    extrapolation_check,
    fit_parametric,
    huber,
    isoflop_fit,
    parametric_objective,
    residuals,
    start_grid,
)
from optimal_scaling.fitting import lbfgs
from optimal_scaling.scaling_laws import LOSS_LAWS, LossLaw

TRUE = LossLaw("planted", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, source="test")
KEYS = ("E", "A", "B", "alpha", "beta")


def grid_points(noise: float = 0.0, seed: int = 0):
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    D = np.tile(np.geomspace(1e9, 1e12, 6), 8)
    L = TRUE(N, D) * np.exp(np.random.default_rng(seed).normal(0, noise, N.size))
    return N, D, L


def test_huber_is_quadratic_then_linear():
    d = 1e-3
    assert huber(0.5e-3, d) == pytest.approx(0.5 * 0.25e-6)
    assert huber(-3e-3, d) == pytest.approx(d * (3e-3 - d / 2))
    # continuous with a continuous slope at |r| = δ
    eps = 1e-9
    assert huber(d + eps, d) - huber(d - eps, d) == pytest.approx(2 * eps * d, rel=1e-3)


def test_start_grid_is_the_papers():
    x = start_grid()
    assert x.shape == (4500, 5)
    assert sorted(set(x[:, 3])) == [0, 0.5, 1, 1.5, 2]
    assert sorted(set(x[:, 0])) == [-1, -0.5, 0, 0.5, 1]
    assert sorted(set(x[:, 1])) == [0, 5, 10, 15, 20, 25]
    assert sorted(set(x[:, 2])) == [0, 5, 10, 15, 20, 25]
    assert sorted(set(x[:, 4])) == [0, 0.5, 1, 1.5, 2]
    assert len({tuple(row) for row in x}) == 4500  # every combination once


def test_objective_gradient_matches_finite_differences():
    N, D, L = grid_points(0.01)
    fun = parametric_objective(N, D, L)
    x = np.array([[0.4, 5.5, 6.5, 0.3, 0.35]])
    f0, g = fun(x, np.array([0]))
    h = 1e-6
    for i in range(5):
        step = np.zeros((1, 5))
        step[0, i] = h
        num = (fun(x + step, np.array([0]))[0] - fun(x - step, np.array([0]))[0]) / (2 * h)
        assert num[0] == pytest.approx(g[0, i], rel=1e-5, abs=1e-10)
    # the objective is the Huber sum of log residuals, from the formula
    law = LossLaw("x", np.exp(0.4), np.exp(5.5), np.exp(6.5), 0.3, 0.35, "x")
    assert f0[0] == pytest.approx(huber(np.log(law(N, D)) - np.log(L)).sum(), rel=1e-12)


def test_batched_lbfgs_equals_a_loop_of_single_starts():
    N, D, L = grid_points(0.01)
    fun = parametric_objective(N, D, L)
    x0 = start_grid()[::150]  # 30 starts across the grid
    batched = lbfgs(fun, x0, max_iter=200)
    for i in range(len(x0)):
        one = lbfgs(lambda x, rows, i=i: fun(x, np.full(len(x), i)), x0[i : i + 1], max_iter=200)
        assert one.f[0] == pytest.approx(batched.f[i], rel=1e-9, abs=1e-15)
        assert np.allclose(one.x[0], batched.x[i], rtol=1e-7, atol=1e-9)
        assert one.iterations[0] == batched.iterations[i]
    for bad in ({"memory": 0}, {"max_iter": 0}, {"max_halvings": 2.5}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be an int ≥ 1"):
            lbfgs(fun, x0[:1], **bad)


def test_batched_lbfgs_reaches_scipys_best():
    """scipy's L-BFGS-B from the same starts, one by one, finds no lower minimum."""
    N, D, L = grid_points(0.01)
    fun = parametric_objective(N, D, L)
    x0 = start_grid()[::90]
    ours = lbfgs(fun, x0, max_iter=300)

    def f_and_g(v):
        f, g = fun(v[None], np.array([0]))
        return f[0], g[0]

    theirs = [minimize(f_and_g, x, jac=True, method="L-BFGS-B",
                       options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000}).fun
              for x in x0]  # fmt: skip
    assert ours.f.min() <= min(theirs) * (1 + 1e-8)


def test_approach3_recovers_a_noiseless_law():
    N, D, L = grid_points(0.0)
    fit = fit_parametric(N, D, L)
    for k in KEYS:
        assert fit[k] == pytest.approx(getattr(TRUE, k), rel=1e-3), k
    assert fit["a"] == pytest.approx(TRUE.a, rel=1e-3)
    assert fit["b"] == pytest.approx(TRUE.b, rel=1e-3)
    assert set(KEYS) <= set(fit)
    assert np.abs(residuals(fit, N, D, L)).max() < 1e-5


def test_approach3_bootstrap_intervals_cover_the_planted_truth():
    N, D, L = grid_points(0.005, seed=1)
    fit = fit_parametric(N, D, L, bootstrap=200, seed=1)
    for k in KEYS:
        lo, hi = fit["intervals"][k]
        assert lo <= getattr(TRUE, k) <= hi, (k, lo, hi)
        assert lo <= fit[k] <= hi
    for k in ("a", "b"):
        lo, hi = fit["intervals"][k]
        assert lo <= getattr(TRUE, k) <= hi
    # derived quantities: the point value sits inside its interval, the truth too
    table = compute_optimal_draws(fit, [1e21, 1e23])
    n_true, d_true = TRUE.compute_optimal(np.array([1e21, 1e23]))
    assert np.all(table.N_opt_low <= table.N_opt) and np.all(table.N_opt <= table.N_opt_high)
    assert np.all(table.N_opt_low <= n_true) and np.all(n_true <= table.N_opt_high)
    assert np.all(table.D_opt_low <= d_true) and np.all(d_true <= table.D_opt_high)
    assert np.allclose(table.tokens_per_param, table.D_opt / table.N_opt)


def test_mean_objective_and_starts_change_what_the_fit_sees():
    N, D, L = grid_points(0.01)
    one = fit_parametric(N, D, L, starts=np.array([[0.0, 5.0, 5.0, 0.5, 0.5]]))
    assert one["starts"] == 1
    starts = start_grid()[::15]
    mean = fit_parametric(N, D, L, objective="mean", starts=starts)
    total = fit_parametric(N, D, L, starts=starts)
    assert mean["objective"] == pytest.approx(total["objective"] / len(N), rel=1e-3)
    for k in KEYS:  # the same minimum, found the same way
        assert mean[k] == pytest.approx(total[k], rel=1e-4), k
    assert (mean["objective_kind"], total["objective_kind"]) == ("mean", "sum")
    assert not mean["paper_grid"] and fit_parametric(N, D, L)["paper_grid"]


def test_envelope_and_isoflop_recover_the_compute_optimal_exponents():
    """Training curves and final losses generated from one law: approaches 1–3 agree."""
    law = LOSS_LAWS["Chinchilla approach 3"]
    sizes = np.geomspace(1e7, 3e9, 16)
    curves = []
    for i, n in enumerate(sizes):
        D = np.geomspace(1e8, 1e12, 200)
        curves.append(pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                    "train_loss": law(n, D)}))  # fmt: skip
    curves = pd.concat(curves)
    env = envelope_fit(curves, bootstrap=200)
    assert env["a"] == pytest.approx(law.a, abs=0.03)
    assert env["b"] == pytest.approx(law.b, abs=0.03)
    budgets = np.geomspace(1e8, 1e12, 13)
    finals = pd.DataFrame([{"params": n, "tokens": d, "val_loss": float(law(n, d))}
                           for n in sizes for d in budgets])  # fmt: skip
    iso = isoflop_fit(finals, budgets=6, bootstrap=200)
    assert iso["points"].valid.sum() >= 4
    assert iso["a"] == pytest.approx(law.a, abs=0.03)
    assert iso["b"] == pytest.approx(law.b, abs=0.03)
    lo, hi = iso["intervals"]["a"]
    assert lo <= iso["a"] <= hi
    par = fit_parametric(finals.params, finals.tokens, finals.val_loss)
    assert par["a"] == pytest.approx(law.a, abs=1e-3)
    assert abs(env["a"] - par["a"]) < 0.03 and abs(iso["a"] - par["a"]) < 0.03


def test_isoflop_vertex_of_a_planted_parabola():
    """At each budget the loss is an exact parabola in log N with a known vertex."""
    rows = []
    budgets = [1e18, 1e19, 1e20, 1e21]
    for C in budgets:
        n_star = 1e8 * (C / 1e18) ** 0.5
        for n in np.geomspace(n_star / 30, n_star * 30, 7):
            rows.append({"params": n, "tokens": C / (6 * n),
                         "val_loss": 2 + 0.1 * np.log(n / n_star) ** 2})  # fmt: skip
    iso = isoflop_fit(pd.DataFrame(rows), min_models=5, interpolate=False, bootstrap=0)
    points = iso["points"]
    assert len(points) == 4 and points.valid.all()
    for C, got in zip(points.C, points.N_opt, strict=True):
        assert got == pytest.approx(1e8 * (C / 1e18) ** 0.5, rel=1e-6)
    assert iso["a"] == pytest.approx(0.5, abs=1e-6) and iso["b"] == pytest.approx(0.5, abs=1e-6)


def test_extrapolation_and_checklist_report():
    N, D, L = grid_points(0.002)
    check = extrapolation_check(N, D, L)
    assert check["held_out"].sum() == 6
    assert check["mae"] < 0.01
    fit = fit_parametric(N, D, L, bootstrap=20)
    text = checklist(fit, N, D, L, validation=check)
    for item in ("form", "objective", "optimizer", "initialisation", "data coverage",
                 "validation", "uncertainty"):  # fmt: skip
        assert f"| {item} |" in text
    assert "48 points" in text


@pytest.mark.parametrize(
    "N, D, L, match",
    [
        ([1, 2, 3, 4, 5, -6], [1] * 3 + [2] * 3, [3] * 6, "N must be positive"),
        ([1, 2, 3, 4, 5, 6], [1] * 3 + [2] * 3, [3, 3, 3, 3, 3, np.nan], "loss must be positive"),
        ([1, 2, 3], [1, 2, 3], [3, 3, 3], "need at least 6"),
        ([1, 2, 3, 4, 5, 6], [1] * 6, [3] * 6, "at least two values"),
        ([1, 2, 3, 4, 5, 6], [1, 2], [3] * 6, "same length"),
    ],
)
def test_fit_parametric_input_errors(N, D, L, match):
    with pytest.raises(ValueError, match=match):
        fit_parametric(N, D, L)


def test_fit_parametric_rejects_bad_options():
    N, D, L = grid_points()
    with pytest.raises(ValueError, match="objective must be"):
        fit_parametric(N, D, L, objective="median")
    with pytest.raises(ValueError, match="starts must be"):
        fit_parametric(N, D, L, starts=np.zeros((3, 4)))


def test_envelope_and_isoflop_input_errors():
    one_size = pd.DataFrame({"run_id": 0, "params": 1e6, "tokens": [1e6, 2e6],
                             "train_loss": [3.0, 2.9]})  # fmt: skip
    with pytest.raises(ValueError, match="two model sizes"):
        envelope_fit(one_size)
    with pytest.raises(ValueError, match="missing columns"):
        envelope_fit(one_size.drop(columns="tokens"))
    bad = pd.DataFrame({"params": [1e6, -1], "tokens": [1e6, 1e6], "val_loss": [3.0, 3.0]})
    with pytest.raises(ValueError, match="positive finite"):
        isoflop_fit(bad)


def test_each_approach_recovers_the_exponents_from_noisy_runs():
    """0.2% multiplicative noise on every loss: each approach's interval covers the true a."""
    law = LOSS_LAWS["Chinchilla approach 3"]
    rng = np.random.default_rng(0)
    sizes = np.geomspace(1e7, 3e9, 16)
    D = np.geomspace(1e8, 1e12, 200)
    curves = pd.concat([pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                      "train_loss": law(n, D) * np.exp(rng.normal(0, 2e-3, 200))})
                        for i, n in enumerate(sizes)])  # fmt: skip
    budgets = np.geomspace(1e8, 1e12, 13)
    finals = pd.DataFrame([{"params": n, "tokens": d,
                            "val_loss": float(law(n, d)) * np.exp(rng.normal(0, 2e-3))}
                           for n in sizes for d in budgets])  # fmt: skip
    env = envelope_fit(curves, smooth=5, bootstrap=300)
    iso = isoflop_fit(finals, budgets=6, bootstrap=300)
    par = fit_parametric(finals.params, finals.tokens, finals.val_loss, bootstrap=100,
                         starts=start_grid()[::5])  # fmt: skip
    for name, fit in (("envelope", env), ("IsoFLOP", iso), ("parametric", par)):
        lo, hi = fit["intervals"]["a"]
        assert lo <= law.a <= hi, (name, lo, hi)
        assert abs(fit["a"] - law.a) < 0.04, name
    assert env["points"].at_edge.sum() < len(env["points"])


def test_envelope_with_a_flops_column_equals_six_n_d():
    law = LOSS_LAWS["Chinchilla approach 3"]
    D = np.geomspace(1e8, 1e11, 60)
    curves = pd.concat([pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                      "train_loss": law(n, D)})
                        for i, n in enumerate(np.geomspace(1e7, 1e9, 6))])  # fmt: skip
    curves["flops"] = 6 * curves.params * curves.tokens
    a = envelope_fit(curves, bootstrap=0)
    b = envelope_fit(curves, flops="flops", bootstrap=0)
    pd.testing.assert_frame_equal(a["points"], b["points"], rtol=1e-9)
    assert a["a"] == pytest.approx(b["a"])


def test_bootstrap_refits_from_seeds_reach_a_fresh_grid_fit():
    """Each resample's refit (started from the full fit's best minima) is as good as a refit
    of that resample from a fresh grid of starts: the shortcut loses nothing here."""
    N, D, L = grid_points(0.01, seed=2)
    fit = fit_parametric(N, D, L, bootstrap=5, seed=4)
    counts = np.random.default_rng(4).multinomial(len(N), np.full(len(N), 1 / len(N)), size=5)
    for i in range(5):
        fun = parametric_objective(N, D, L, weights=counts[i].astype(float))
        fresh = lbfgs(fun, start_grid()[::9], max_iter=300).f.min()
        d = fit["draws"].iloc[i]
        x = np.array([[np.log(d.E), np.log(d.A), np.log(d.B), d.alpha, d.beta]])
        assert fun(x, np.array([0]))[0][0] <= fresh * (1 + 1e-6)


def test_size_bootstrap_intervals_do_not_shrink_with_more_budgets():
    """Budgets share runs: once they use every run, asking for 8× as many must not narrow the
    interval (resampling budgets as if independent narrowed it by about √8)."""
    law = LOSS_LAWS["Chinchilla approach 3"]
    rng = np.random.default_rng(1)
    sizes = np.geomspace(1e7, 3e9, 10)
    budgets = np.geomspace(1e8, 1e12, 9)
    finals = pd.DataFrame([{"params": n, "tokens": d,
                            "val_loss": float(law(n, d)) * np.exp(rng.normal(0, 5e-3))}
                           for n in sizes for d in budgets])  # fmt: skip
    D = np.geomspace(1e8, 1e12, 120)
    curves = pd.concat([pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                      "train_loss": law(n, D) * np.exp(rng.normal(0, 5e-3, 120))})
                        for i, n in enumerate(sizes)])  # fmt: skip
    for fit, kw in ((isoflop_fit, {"table": finals}),
                    (envelope_fit, {"curves": curves, "smooth": 5})):  # fmt: skip
        width = {}
        for b in (12, 96):
            r = fit(**kw, budgets=b, bootstrap=200)
            lo, hi = r["intervals"]["a"]
            assert lo <= r["a"] <= hi and lo <= law.a <= hi + 0.05
            width[b] = hi - lo
        assert width[96] > 0.7 * width[12], (fit.__name__, width)


def test_loss_law_without_an_optimum_and_draws_without_one_are_named():
    bad = LossLaw("bad", 1.7, 400.0, 400.0, -0.1, 0.3, "test")
    with pytest.raises(ValueError, match="needs A, B, α, β > 0"):
        bad.compute_optimal(1e20)
    N, D, L = grid_points(0.01)
    fit = fit_parametric(N, D, L, starts=start_grid()[::30], bootstrap=10)
    fit["draws"].loc[0, "alpha"] = -0.2
    table = compute_optimal_draws(fit, [1e20])
    assert table.attrs["draws_dropped"] == 1 and table.N_opt_low[0] <= table.N_opt[0]


def test_lbfgs_does_not_call_a_non_finite_start_converged():
    def fun(x, rows):
        f = np.where(x[:, 0] > 5, np.inf, np.sum(x**2, axis=1))
        return f, 2 * x

    res = lbfgs(fun, np.array([[1.0, 2.0], [10.0, 0.0]]))
    assert res.converged.tolist() == [True, False]


def test_holding_out_the_largest_budgets_holds_out_a_tenth():
    N, D, L = grid_points(0.002)
    check = extrapolation_check(N, D, L, holdout="largest C", starts=start_grid()[::15])
    C = 6 * N * D
    held = check["held_out"]
    assert held.sum() >= len(N) // 10 and C[held].min() >= C[~held].max()
    text = checklist(fit_parametric(N, D, L, delta=1e-2, objective="mean",
                                    starts=start_grid()[::15]), N, D, L)  # fmt: skip
    assert "mean Huber_δ" in text and "δ = 0.01" in text and "not the paper's" in text


def _tiny_fit():
    true = LossLaw("p", 1.69, 406.4, 410.7, 0.34, 0.28, "t")
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    D = np.tile(np.geomspace(1e9, 1e12, 6), 8)
    L = true(N, D) * np.exp(np.random.default_rng(0).normal(0, 0.01, N.size))
    return fit_parametric(N, D, L, starts=start_grid()[::30], bootstrap=40)


def test_compute_optimal_draws_intervals_from_the_formula():
    fit = _tiny_fit()
    C = np.array([1e20, 1e22])
    table = compute_optimal_draws(fit, C)
    d = fit["draws"]
    d = d[(d.alpha > 0) & (d.beta > 0)]
    G = ((d.alpha * d.A / (d.beta * d.B)) ** (1 / (d.alpha + d.beta))).to_numpy()[:, None]
    n = G * (C / 6) ** (d.beta / (d.alpha + d.beta)).to_numpy()[:, None]
    dd = (C / 6) ** (d.alpha / (d.alpha + d.beta)).to_numpy()[:, None] / G
    for name, v in (("N_opt", n), ("D_opt", dd), ("tokens_per_param", dd / n)):
        lo, hi = np.percentile(v, [2.5, 97.5], axis=0)
        assert table[f"{name}_low"].to_numpy() == pytest.approx(lo, rel=1e-9), name
        assert table[f"{name}_high"].to_numpy() == pytest.approx(hi, rel=1e-9), name


def test_isoflop_points_satisfy_c_equals_6nd():
    rows = []
    for C in (1e18, 1e19, 1e20):
        n_star = 1e8 * (C / 1e18) ** 0.5
        for n in np.geomspace(n_star / 30, n_star * 30, 7):
            rows.append({"params": n, "tokens": C / (6 * n),
                         "val_loss": 2 + 0.1 * np.log(n / n_star) ** 2})
    p = isoflop_fit(pd.DataFrame(rows), min_models=5, interpolate=False, bootstrap=0)["points"]
    assert (6 * p.N_opt * p.D_opt).to_numpy() == pytest.approx(p.C.to_numpy(), rel=1e-9)


def _two_curves(noise=0.0):
    law = LOSS_LAWS["Chinchilla approach 3"]
    rng = np.random.default_rng(0)
    D = np.geomspace(1e8, 1e11, 40)
    return pd.concat([pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                    "train_loss": law(n, D) * np.exp(noise * rng.normal(size=40))})
                      for i, n in enumerate(np.geomspace(1e7, 1e9, 5))])


def test_envelope_smooths_each_curve_by_a_centred_mean():
    curves = _two_curves(noise=0.01)
    C = [1e18, 3e18, 1e19]
    got = envelope_fit(curves, budgets=C, smooth=5, bootstrap=0)["points"]
    want = []
    for c in C:
        best = math.inf
        for _, g in curves.groupby("run_id"):
            g = g.assign(logC=np.log(6 * g.params * g.tokens)).sort_values("logC")
            y = g.train_loss.rolling(5, center=True, min_periods=1).mean()
            if g.logC.iloc[0] <= np.log(c) <= g.logC.iloc[-1]:
                best = min(best, np.interp(np.log(c), g.logC, y))
        want.append(best)
    assert got.loss.to_numpy() == pytest.approx(want, rel=1e-12)


def test_envelope_fits_only_the_budgets_inside_the_sizes():
    from optimal_scaling.fitting import fit_power_law
    out = envelope_fit(_two_curves(), bootstrap=0)
    inside = out["points"][~out["points"].at_edge]
    assert out["points"].at_edge.any() and out["N_law"].n == len(inside)
    interior = fit_power_law(inside, "N_opt", "C", bootstrap=0)
    assert out["a"] == pytest.approx(interior.exponents["C"])


def test_largest_c_holdout_is_the_90th_percentile():
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    D = np.tile(np.geomspace(1e9, 1e12, 6), 8)
    L = 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28
    check = extrapolation_check(N, D, L, holdout="largest C", starts=start_grid()[::45])
    assert (check["held_out"] == (N * D >= np.percentile(N * D, 90))).all()
    assert check["held_out"].sum() == 5
