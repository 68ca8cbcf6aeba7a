"""Chinchilla's three approaches on data with a planted truth, and the batched L-BFGS."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from optimal_scaling import compute_optimal as co
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
    for bad in (-1.0, 0.0, math.nan, "1e-3"):  # δ ≤ 0 made the "loss" negative
        with pytest.raises(ValueError, match="huber: delta must be a number > 0"):
            huber(1.0, bad)


def test_every_bootstrap_fit_names_a_seed_that_is_not_an_int():
    from optimal_scaling import batch_size as bs

    N, D, L = grid_points()
    finals = pd.DataFrame({"params": N, "tokens": D, "val_loss": L})
    curves = finals.assign(run_id=N, train_loss=L)
    table = pd.DataFrame({"batch_size": [8, 16, 32, 64], "steps": [900.0, 500, 300, 200],
                          "lr": [0.01, 0.02, 0.03, 0.035]})  # fmt: skip
    for who, call in (("fit_parametric", lambda s: fit_parametric(N, D, L, seed=s)),
                      ("envelope_fit", lambda s: envelope_fit(curves, seed=s)),
                      ("isoflop_fit", lambda s: isoflop_fit(finals, seed=s)),
                      ("fit_critical_batch", lambda s: bs.fit_critical_batch(table, seed=s)),
                      ("fit_eta_of_b", lambda s: bs.fit_eta_of_b(table, seed=s))):  # fmt: skip
        for seed in ("x", -1, 1.5):
            with pytest.raises(ValueError, match=f"{who}: seed must be"):
                call(seed)


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


def test_the_paper_grid_passed_explicitly_is_reported_as_the_paper_grid():
    """Lecture 08 in full mode passes start_grid()[::1]: its checklist must not say 'not the
    paper's grid'; a grid of the same size with one row changed is not the paper's."""
    from optimal_scaling.compute_optimal import checklist

    N, D, L = grid_points(0.01)
    shuffled = np.random.default_rng(0).permutation(start_grid())
    fit = fit_parametric(N, D, L, starts=shuffled, max_iter=5)
    assert fit["paper_grid"] and "the paper's grid" in checklist(fit, N, D, L)
    changed = start_grid()
    changed[0, 0] += 0.25
    fit = fit_parametric(N, D, L, starts=changed, max_iter=5)
    assert not fit["paper_grid"] and "not the paper's full" in checklist(fit, N, D, L)


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
    with pytest.raises(ValueError, match="the loss is 2 at every point"):  # flat: no α, β
        fit_parametric(N, D, np.full(len(L), 2.0))


def test_envelope_and_isoflop_input_errors():
    one_size = pd.DataFrame({"run_id": 0, "params": 1e6, "tokens": [1e6, 2e6],
                             "train_loss": [3.0, 2.9]})  # fmt: skip
    with pytest.raises(ValueError, match="two model sizes"):
        envelope_fit(one_size)
    with pytest.raises(ValueError, match="missing columns"):
        envelope_fit(one_size.drop(columns="tokens"))
    for loss in ("a", np.nan):  # not "two model sizes": the loss column is what is wrong
        with pytest.raises(ValueError, match="column 'train_loss' holds no finite numbers"):
            envelope_fit(one_size.assign(train_loss=loss))
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


_TRUE = LossLaw("planted", E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, source="test")


def _grid(noise=0.01, seed=0):
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    D = np.tile(np.geomspace(1e9, 1e12, 6), 8)
    return N, D, _TRUE(N, D) * np.exp(np.random.default_rng(seed).normal(0, noise, N.size))


def test_weighted_objective_gradient_per_problem_matches_finite_differences():  # C1, C2
    N, D, L = _grid()
    W = np.random.default_rng(1).integers(0, 4, size=(3, N.size)).astype(float)
    fun = co.parametric_objective(N, D, L, weights=W)
    x = np.array([[0.4, 5.5, 6.5, 0.3, 0.35], [0.6, 6.0, 6.0, 0.35, 0.3]])
    rows = np.array([2, 0])  # problems 2 and 0, in that order
    f, g = fun(x, rows)
    for j, p in enumerate(rows):
        law = LossLaw("x", *np.exp(x[j, :3]), *x[j, 3:], "x")
        r = np.abs(np.log(law(N, D)) - np.log(L))
        h = np.minimum(r, 1e-3) * (r - 0.5 * np.minimum(r, 1e-3))
        assert f[j] == pytest.approx((W[p] * h).sum(), rel=1e-12)
        for i in range(5):
            e = np.zeros((1, 5))
            e[0, i] = 1e-6
            one = slice(j, j + 1)
            num = (fun(x[one] + e, rows[one])[0] - fun(x[one] - e, rows[one])[0]) / 2e-6
            assert num[0] == pytest.approx(g[j, i], rel=1e-5, abs=1e-10), (p, i)


def test_distinct_keeps_the_best_rows_at_least_1e3_apart():  # C4
    x = np.array([[0.0] * 5, [5e-4] + [0.0] * 4, [2e-3] + [0.0] * 4, [1.0] * 5])
    f = np.array([1.0, 0.5, 2.0, np.inf])
    got = co._distinct(x, f, 3)
    assert got.tolist() == [x[1].tolist(), x[2].tolist()]  # row 0 is within 1e-3 of row 1


@pytest.fixture(scope="module")
def half_level_fit():
    N, D, L = _grid(0.01, seed=3)
    fit = co.fit_parametric(N, D, L, starts=co.start_grid()[::90], bootstrap=30, seed=2,
                            level=0.5)
    return fit


def test_parametric_intervals_and_draws_tables_use_the_fits_level(half_level_fit):  # C7–C9
    fit = half_level_fit
    assert fit["level"] == 0.5
    d = fit["draws"]
    for k in ("E", "A", "B", "alpha", "beta", "a", "b"):
        assert fit["intervals"][k] == pytest.approx(tuple(np.percentile(d[k], [25, 75])),
                                                    rel=1e-12), k
    C = np.array([1e20, 1e22])
    n_draw = np.array([LossLaw("d", *row, source="d").compute_optimal(C)[0]
                       for row in d[["E", "A", "B", "alpha", "beta"]].itertuples(index=False)])
    by_default = co.compute_optimal_draws(fit, C)  # the fit's level, 0.5
    lo, hi = np.percentile(n_draw, [25, 75], axis=0)
    assert by_default["N_opt_low"].to_numpy() == pytest.approx(lo, rel=1e-9)
    assert by_default["N_opt_high"].to_numpy() == pytest.approx(hi, rel=1e-9)
    wide = co.compute_optimal_draws(fit, C, level=0.9)  # an explicit level wins
    lo, hi = np.percentile(n_draw, [5, 95], axis=0)
    assert wide["N_opt_low"].to_numpy() == pytest.approx(lo, rel=1e-9)
    assert wide["N_opt_high"].to_numpy() == pytest.approx(hi, rel=1e-9)


def test_hits_count_starts_within_a_relative_1e6_and_converged_counts_tolerance_stops():  # C5, C6
    N, D, L = _grid(0.01)
    near = np.array([[0.5, 6.0, 6.0, 0.34, 0.28], [0.55, 6.1, 6.05, 0.35, 0.29],
                     [0.45, 5.9, 5.95, 0.33, 0.27]])  # fmt: skip
    fit = co.fit_parametric(N, D, L, starts=near, max_iter=300)
    assert fit["starts"] == 3 and fit["hits"] == 3  # one minimum, reached from each
    one_step = co.fit_parametric(N, D, L, starts=co.start_grid()[::300], max_iter=1)
    assert one_step["converged"] == 0  # one iteration stops nobody by a tolerance


def test_fit_parametric_needs_six_points():  # C10
    with pytest.raises(ValueError, match="need at least 6"):
        co.fit_parametric([1e7, 1e7, 1e8, 1e8, 1e9], [1e9, 1e10, 1e9, 1e10, 1e9],
                          [3.0, 2.9, 2.8, 2.7, 2.6])


def _staggered_curves():
    """Five sizes; the largest starts training late, so at low budgets the largest size
    present is 3.2e8, not 1e9."""
    law = LOSS_LAWS["Chinchilla approach 3"]
    parts = []
    for i, n in enumerate(np.geomspace(1e7, 1e9, 5)):
        D = np.geomspace(1e8, 1e11, 40) if i < 4 else np.geomspace(3e10, 1e11, 10)
        parts.append(pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                   "train_loss": law(n, D)}))
    return pd.concat(parts)


def test_envelope_edge_is_the_smallest_or_largest_size_reaching_the_budget():  # C11
    curves = _staggered_curves()
    p = co.envelope_fit(curves, budgets=30, bootstrap=0)["points"]
    spans = {n: (6 * n * g.tokens.min(), 6 * n * g.tokens.max())
             for n, g in curves.groupby("params")}  # fmt: skip
    tol = 1e-9
    want = []
    for C, n_opt in zip(p.C, p.N_opt, strict=True):
        present = [n for n, (lo, hi) in spans.items() if lo * (1 - tol) <= C <= hi * (1 + tol)]
        assert p.models[p.C == C].iloc[0] == len(present)
        want.append(n_opt in (min(present), max(present)))
    assert p.at_edge.tolist() == want
    assert (p.at_edge & (p.N_opt < 1e9) & (p.N_opt > 1e7)).any()  # the case that matters


def test_envelope_budget_count_spans_the_range_two_sizes_reach():  # C12
    law = LOSS_LAWS["Chinchilla approach 3"]
    sizes = np.geomspace(1e7, 1e9, 5)
    D = np.geomspace(1e8, 1e11, 40)
    curves = pd.concat([pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                      "train_loss": law(n, D)}) for i, n in enumerate(sizes)])
    p = co.envelope_fit(curves, budgets=12, bootstrap=0)["points"]
    want = np.geomspace(6 * sizes[1] * D[0], 6 * sizes[-2] * D[-1], 12)
    assert p.C.to_numpy() == pytest.approx(want, rel=1e-9)


def test_envelope_d_opt_comes_from_the_tokens_with_a_flops_column():  # C13
    curves = _staggered_curves()
    curves = curves[curves.run_id < 4].assign(flops=lambda t: 8 * t.params * t.tokens)
    p = co.envelope_fit(curves, flops="flops", budgets=10, bootstrap=0)["points"]
    # C = 8·N·D here, so the winning run's tokens at C are C/(8·N_opt), not C/(6·N_opt)
    assert p.D_opt.to_numpy() == pytest.approx((p.C / (8 * p.N_opt)).to_numpy(), rel=1e-9)


def _isoflop_rows(shift=1.3, budgets=(1e18, 1e19, 1e20, 1e21), curvature=0.1):
    rows = []
    for C in budgets:
        n_star = 1e8 * (C / 1e18) ** 0.5
        for n in np.geomspace(n_star / 30, n_star * 30, 7) * shift:
            rows.append({"params": n, "tokens": C / (6 * n),
                         "val_loss": 2 + curvature * np.log(n / n_star) ** 2})
    return pd.DataFrame(rows)


def test_isoflop_keeps_the_lowest_loss_of_repeated_runs_and_reports_the_vertex_loss():  # C14, C16
    t = _isoflop_rows()
    worse = t.assign(val_loss=t.val_loss + 0.5)  # the same (N, D) at a worse learning rate
    iso = co.isoflop_fit(pd.concat([t, worse]), min_models=5, interpolate=False, bootstrap=0)
    p = iso["points"]
    assert p.valid.all()
    assert p.N_opt.to_numpy() == pytest.approx((1e8 * (p.C / 1e18) ** 0.5).to_numpy(), rel=1e-6)
    assert p.loss.to_numpy() == pytest.approx(2.0, abs=1e-9)  # the vertex, between grid points


def test_isoflop_refuses_a_hill_and_a_vertex_beyond_the_sizes():  # C17, C23
    t = _isoflop_rows(curvature=-0.1, budgets=(1e18,))
    t = pd.concat([t, _isoflop_rows(budgets=(1e19, 1e20, 1e21))])
    p = co.isoflop_fit(t, min_models=5, interpolate=False, bootstrap=0)["points"]
    assert p.valid.tolist() == [False, True, True, True]  # downward parabola: no minimum
    off = pd.concat([_isoflop_rows(shift=60.0, budgets=(1e18,)),  # optimum below every size
                     _isoflop_rows(budgets=(1e19, 1e20, 1e21))])
    p = co.isoflop_fit(off, min_models=5, interpolate=False, bootstrap=0)["points"]
    assert p.valid.tolist() == [False, True, True, True]


def test_isoflop_interpolates_linearly_in_log_d():  # C15
    # loss linear in log D for each model: interpolation in log D is exact
    sizes = np.geomspace(1e7, 1e9, 6)
    D = np.geomspace(1e9, 1e12, 4)
    t = pd.DataFrame([{"params": n, "tokens": d,
                       "val_loss": 3 - 0.05 * np.log(d) + 0.02 * (np.log(n) - 18) ** 2}
                      for n in sizes for d in D])  # fmt: skip
    prof = co.isoflop_fit(t, budgets=[3e18, 1e19, 3e19], min_models=4, bootstrap=0)["profiles"]
    want = 3 - 0.05 * np.log(prof.D) + 0.02 * (np.log(prof.N) - 18) ** 2
    assert prof.loss.to_numpy() == pytest.approx(want.to_numpy(), rel=1e-12)


def test_isoflop_profile_counts_distinct_model_sizes():  # C18
    t = _isoflop_rows(budgets=(1e18, 1e19, 1e20, 1e21))
    first = t.iloc[:7]
    keep = first.iloc[[0, 1, 2, 3]]  # 4 sizes on the first line...
    dup = keep.iloc[[1]].assign(tokens=keep.tokens.iloc[1] * 1.01, val_loss=3.0)  # ...a 5th run
    t2 = pd.concat([keep, dup, t.iloc[7:]])
    p = co.isoflop_fit(t2, min_models=5, interpolate=False, bootstrap=0)["points"]
    assert len(p) == 3 and p.models.tolist() == [7, 7, 7]  # the 4-size line has no vertex row


def test_isoflop_budget_grid_spans_where_min_models_overlap():  # C21
    sizes = np.geomspace(1e7, 1e9, 6)
    D = np.geomspace(1e9, 1e12, 5)
    t = pd.DataFrame([{"params": n, "tokens": d, "val_loss": 2 + 0.02 * (np.log(n) - 18) ** 2
                       + 30 / d**0.2} for n in sizes for d in D])  # fmt: skip
    prof = co.isoflop_fit(t, budgets=5, min_models=4, bootstrap=0)["profiles"]
    ends = np.sort(np.r_[6 * sizes * D[0], 6 * sizes * D[-1]])
    ok = [c for c in ends
          if sum(6 * n * D[0] <= c * (1 + 1e-12) and c <= 6 * n * D[-1] * (1 + 1e-12)
                 for n in sizes) >= 4]  # fmt: skip
    assert np.sort(prof.C.unique()) == pytest.approx(np.geomspace(min(ok), max(ok), 5), rel=1e-9)


def test_extrapolation_errors_are_prediction_over_truth_minus_one():  # C19
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    D = np.tile(np.geomspace(1e9, 1e12, 6), 8)
    L = _TRUE(N, D) * np.where(N == N.max(), 1.1, 1.0)  # the held-out model is 10% worse
    check = co.extrapolation_check(N, D, L, starts=co.start_grid()[::90])
    assert check["errors"] == pytest.approx(1 / 1.1 - 1, abs=1e-3)
    assert check["mae"] == pytest.approx(1 - 1 / 1.1, abs=1e-3)


def test_checklist_reports_the_rms_and_max_residual(half_level_fit):  # C20
    N, D, L = _grid(0.01, seed=3)
    res = np.log(half_level_fit["law"](N, D)) - np.log(L)
    text = co.checklist(half_level_fit, N, D, L)
    assert (f"rms {np.sqrt(np.mean(res**2)):.4f}, max |r| {np.abs(res).max():.4f}") in text
    assert "50% percentile intervals" in text


def test_size_bootstrap_counts_the_resamples_it_skips():  # C22
    """Each IsoFLOP line has its own 7 sizes: a resample of sizes often leaves a line with
    fewer than min_models, and then fewer than 3 vertices: skipped, and counted."""
    r = co.isoflop_fit(_isoflop_rows(), min_models=4, interpolate=False, bootstrap=60, seed=0)
    assert r["bootstrap_failed"] > 0
    assert r["bootstrap_failed"] + len(r["bootstrap_draws"]) == 60


def test_too_few_budgets_for_a_power_law_is_an_error_that_names_the_approach():
    law = LOSS_LAWS["Chinchilla approach 3"]
    D = np.geomspace(1e8, 1e11, 20)
    curves = pd.concat([pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                      "train_loss": law(n, D)})
                        for i, n in enumerate([1e7, 1e8, 1e9])])  # fmt: skip
    with pytest.raises(ValueError, match="envelope_fit: 2 compute budgets .* at least 3"):
        envelope_fit(curves, budgets=[1e18, 2e18], bootstrap=0)
    with pytest.raises(ValueError, match="isoflop_fit: 2 compute budgets .* at least 3"):
        isoflop_fit(_isoflop_rows(budgets=(1e18, 1e19)), interpolate=False, bootstrap=0)
