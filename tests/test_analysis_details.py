"""Analysis details a mutation review found unpinned: each test fails on one plausible wrong
implementation that the rest of the suite let through (percentile levels, R², parabola windows
and seed means, edge rules, smoothing formulas, L-BFGS scaling, IsoFLOP D = C/6N, hold-outs,
catalogue laws, norm-transfer censoring, the noise probe under two processes)."""
from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from optimal_scaling import batch_size as bs


# ---------------------------------------------------------------- fitting
def test_percentile_intervals_are_the_two_sided_numpy_percentiles():  # F1
    from optimal_scaling.fitting import percentile_intervals
    draws = np.column_stack([np.arange(1001.0), -np.arange(1001.0)])
    ci = percentile_intervals(draws, ["x", "y"], 0.95)
    assert ci["x"] == pytest.approx((25.0, 975.0)) and ci["y"] == pytest.approx((-975.0, -25.0))


def test_power_law_r2_from_the_formula():  # F3
    from optimal_scaling.fitting import fit_power_law
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
def test_parabola_window_is_neighbours_distinct_values_each_side(neighbours):  # F4
    from optimal_scaling.fitting import find_optimum
    u = np.arange(-8.0, 0.0)
    grid = pd.DataFrame({"lr": 2.0**u, "loss": _cubic_valley(u)})
    got = find_optimum(grid, over="lr", method="parabola", neighbours=neighbours)
    k = int(np.argmin(grid["loss"]))
    w = slice(max(0, k - neighbours), k + neighbours + 1)
    p2, p1, _ = np.polyfit(u[w], grid["loss"].to_numpy()[w], 2)
    assert math.log2(got["lr"].iloc[0]) == pytest.approx(-p1 / (2 * p2), abs=1e-9)


def test_parabola_averages_seeds_that_differ():  # F6
    from optimal_scaling.fitting import find_optimum
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


def test_lr_edge_is_judged_on_the_lr_line_alone():  # F7
    """B = 16 is between B = 8 and B = 64 on its lr line, so only the lr column puts the
    optimum at the edge: every lr ≥ 2^-4 diverged at B = 16."""
    from optimal_scaling.fitting import find_optimum
    rows = []
    for B in (8, 16, 32, 64):
        for e in range(-10, -2):
            diverged = (B == 16 and e >= -4) or (B == 32 and e >= -6)
            loss = math.inf if diverged else 2 + 0.1 * (e + 4) ** 2 + 0.2 * (B != 16)
            rows.append({"lr": 2.0**e, "B": B, "loss": loss})
    best = find_optimum(pd.DataFrame(rows), over=["lr", "B"])
    assert best["B"].iloc[0] == 16 and best["lr"].iloc[0] == 2**-5 and best["at_edge"].iloc[0]


def test_lbfgs_scales_its_first_direction_on_a_flat_quadratic():  # F8
    from optimal_scaling.fitting import lbfgs
    c = np.array([1e-8, 1e-6, 1e-5])
    r = lbfgs(lambda x, rows: (0.5 * (c * x**2).sum(1), c * x), np.ones((1, 3)))
    assert r.converged[0] and r.iterations[0] <= 20 and np.abs(r.x).max() < 5e-5


# ---------------------------------------------------------------- batch size
def test_steps_to_target_trailing_mean_lag_of_the_docstring():  # B6
    from optimal_scaling import batch_size as bs
    step = np.arange(1, 101, dtype=float)
    log = pd.DataFrame({"run_id": "a", "step": step, "train_loss": 1 + 10 / step})
    for smooth in (3, 9):
        c = np.minimum.accumulate(pd.Series(1 + 10 / step).rolling(smooth, min_periods=1).mean())
        i = int(np.flatnonzero(c <= 1.5)[0])
        want = step[i - 1] + (c[i - 1] - 1.5) / (c[i - 1] - c[i])
        got = bs.steps_to_target(log, [1.5], smooth=smooth)["steps"].iloc[0]
        assert got == pytest.approx(want, rel=1e-12)
    at_3 = bs.steps_to_target(log, [1.5], smooth=3)["steps"].iloc[0]
    assert at_3 == pytest.approx(21.03, abs=0.01)  # the docstring's example


def test_eta_of_b_fit_is_the_least_squares_solution_in_logs():  # B9
    from scipy.optimize import least_squares

    from optimal_scaling import batch_size as bs
    B = 2.0 ** np.arange(2, 11)
    eta = bs.eta_surge(B, 0.03, 60.0) * np.exp(0.05 * np.random.default_rng(3).normal(size=B.size))
    fit = bs.fit_eta_of_b(pd.DataFrame({"batch_size": B, "lr": eta}), "surge", bootstrap=0)
    ref = least_squares(lambda p: np.log(bs.eta_surge(B, *np.exp(p))) - np.log(eta),
                        [np.log(0.05), np.log(50.0)], xtol=1e-14, ftol=1e-14, gtol=1e-14)
    assert (fit.eta_crit, fit.b_crit) == pytest.approx(tuple(np.exp(ref.x)), rel=1e-5)


# ---------------------------------------------------------------- scaling laws
def test_every_catalogued_constant_at_one_point():  # S3, S4
    from optimal_scaling.scaling_laws import HYPERPARAMETER_LAWS as LAWS
    from optimal_scaling.scaling_laws import LOSS_LAWS
    assert LAWS["Porian et al. η*"](N=1e9) == pytest.approx(3.7 * 1e9**-0.36)
    assert LAWS["Power Lines B_crit"].relative({"D": 1e9}, D=1e10) == pytest.approx(10**0.462)
    assert LAWS["HyperP η*"].relative({"D": 1e9}, D=1e10) == pytest.approx(10**-0.32)
    refit = LOSS_LAWS["Approach 3 refit"]
    assert refit(1e9, 2e10) == pytest.approx(1.82 + 482.0 / 1e9**0.348 + 2085.0 / 2e10**0.366)


def test_common_units_converts_samples_to_tokens(monkeypatch):  # S1
    from optimal_scaling import scaling_laws as sl
    law = sl.Law("toy B*", "batch", 2.0, {"D": 0.5}, {"D": "tokens", "batch": "samples"}, "t")
    monkeypatch.setattr(sl, "HYPERPARAMETER_LAWS", {law.name: law})
    t = sl.common_units(1e8, 1e10, context=1024).set_index("name")
    assert t.loc["toy B*", "value"] == pytest.approx(2.0 * 1e5 * 1024)


def test_data_constrained_loss_by_hand():  # S9
    from optimal_scaling.scaling_laws import LOSS_LAWS, data_constrained_loss
    law = LOSS_LAWS["Chinchilla approach 3"]
    d_eff = 1e9 * (1 + 15.4 * (1 - np.exp(-3 / 15.4)))
    assert data_constrained_loss(law, 1e9, 4e9, 1e9) == pytest.approx(law(1e9, d_eff))


# ---------------------------------------------------------------- compute optimal
def _tiny_fit():
    from optimal_scaling.compute_optimal import fit_parametric, start_grid
    from optimal_scaling.scaling_laws import LossLaw
    true = LossLaw("p", 1.69, 406.4, 410.7, 0.34, 0.28, "t")
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    D = np.tile(np.geomspace(1e9, 1e12, 6), 8)
    L = true(N, D) * np.exp(np.random.default_rng(0).normal(0, 0.01, N.size))
    return fit_parametric(N, D, L, starts=start_grid()[::30], bootstrap=40)


def test_compute_optimal_draws_intervals_from_the_formula():  # C2, C3
    from optimal_scaling.compute_optimal import compute_optimal_draws
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


def test_isoflop_points_satisfy_c_equals_6nd():  # C4
    from optimal_scaling.compute_optimal import isoflop_fit
    rows = []
    for C in (1e18, 1e19, 1e20):
        n_star = 1e8 * (C / 1e18) ** 0.5
        for n in np.geomspace(n_star / 30, n_star * 30, 7):
            rows.append({"params": n, "tokens": C / (6 * n),
                         "val_loss": 2 + 0.1 * np.log(n / n_star) ** 2})
    p = isoflop_fit(pd.DataFrame(rows), min_models=5, interpolate=False, bootstrap=0)["points"]
    assert (6 * p.N_opt * p.D_opt).to_numpy() == pytest.approx(p.C.to_numpy(), rel=1e-9)


def _two_curves(noise=0.0):
    from optimal_scaling.scaling_laws import LOSS_LAWS
    law = LOSS_LAWS["Chinchilla approach 3"]
    rng = np.random.default_rng(0)
    D = np.geomspace(1e8, 1e11, 40)
    return pd.concat([pd.DataFrame({"run_id": i, "params": n, "tokens": D,
                                    "train_loss": law(n, D) * np.exp(noise * rng.normal(size=40))})
                      for i, n in enumerate(np.geomspace(1e7, 1e9, 5))])


def test_envelope_smooths_each_curve_by_a_centred_mean():  # C6
    from optimal_scaling.compute_optimal import envelope_fit
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


def test_envelope_fits_only_the_budgets_inside_the_sizes():  # C10
    from optimal_scaling.compute_optimal import envelope_fit
    from optimal_scaling.fitting import fit_power_law
    out = envelope_fit(_two_curves(), bootstrap=0)
    inside = out["points"][~out["points"].at_edge]
    assert out["points"].at_edge.any() and out["N_law"].n == len(inside)
    interior = fit_power_law(inside, "N_opt", "C", bootstrap=0)
    assert out["a"] == pytest.approx(interior.exponents["C"])


def test_largest_c_holdout_is_the_90th_percentile():  # C7
    from optimal_scaling.compute_optimal import extrapolation_check, start_grid
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    D = np.tile(np.geomspace(1e9, 1e12, 6), 8)
    L = 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28
    check = extrapolation_check(N, D, L, holdout="largest C", starts=start_grid()[::45])
    assert (check["held_out"] == (N * D >= np.percentile(N * D, 90))).all()
    assert check["held_out"].sum() == 5


# ---------------------------------------------------------------- norm transfer
def test_smoothed_variants_use_a_three_point_running_mean():  # N1
    from optimal_scaling import norm_transfer as nt
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


def test_a_vertex_beyond_the_points_is_refused():  # N3
    from optimal_scaling import norm_transfer as nt
    x = np.arange(3.0, 10.5, 0.5)
    edge = nt.optimal_norm(x, 3 + (x - 12.0) ** 2)
    assert math.isnan(edge["free"]) and math.isnan(edge["free_smooth"])
    assert edge["log2_norm"] == x.max() and edge["spread"] == 0 and edge["variants"] == 1


def test_optimal_norms_flags_a_best_lr_at_the_largest_rate():  # N4
    from optimal_scaling import norm_transfer as nt
    lr = 2.0 ** np.arange(-8, -3)
    t = pd.DataFrame({"lr": lr, "batch_size": 8, "horizon": 2**20,
                      "val_loss": 3 - 0.1 * np.log2(lr), "norm[output]": lr * 2**12})
    assert nt.optimal_norms(t)["lr_at_edge"].iloc[0]


def test_band_by_hand():  # N5
    from optimal_scaling import norm_transfer as nt
    h = pd.DataFrame({"log2_norm": [6.8, 7.0, 7.3], "spread": [0.1, 0.4, 0.2]})
    b = nt.band(h)
    assert b == pytest.approx({"mean": 7.0333333333, "std": np.std([6.8, 7.0, 7.3]), "min": 6.8,
                               "max": 7.3, "n": 3, "procedure_spread": 0.4})


# ---------------------------------------------------------------- the noise probe under DDP


def _model():
    torch.manual_seed(0)
    layers = (torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    return torch.nn.Sequential(*layers).double()


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    return x, torch.randn(12, 3, generator=g, dtype=torch.float64)


def _worker(rank, world, path, out):
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    model, (x, y) = _model(), _data()
    micro, B = 3, 12
    share = B // world
    probe = bs.GradientNoiseProbe(model.parameters(), micro, B, world=world)
    lo = rank * share
    for i in range(lo, lo + share, micro):
        (((model(x[i:i + micro]) - y[i:i + micro]) ** 2).mean() * micro / share).backward()
        probe.after_backward()
    res = probe.finish()
    if rank == 0:
        torch.save(res, out)
    dist.destroy_process_group()


def test_probe_under_two_processes_matches_the_single_process_estimator():
    model, (x, y) = _model(), _data()
    grads = []
    for i in range(0, 12, 3):
        model.zero_grad()
        ((model(x[i:i + 3]) - y[i:i + 3]) ** 2).mean().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    want = bs.terms_from_microbatches(grads, 3)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "res.pt")
        mp.spawn(_worker, args=(2, os.path.join(d, "init"), out), nprocs=2, join=True)
        got = torch.load(out).tolist()
    assert got == pytest.approx(want, rel=1e-10)
