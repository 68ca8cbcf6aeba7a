"""Gradient noise scale, critical batch size and η*(B), against analytic and planted truths."""

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


def test_noise_scale_on_linear_regression_matches_the_analytic_value():
    """x ~ N(0, I_d), y = x·w* + ε (var s²), at w = w* + e: g = x(xᵀe − ε), so
    G = e, tr Σ = E‖g‖² − ‖G‖² = (d + 1)‖e‖² + d·s², B_simple = tr Σ / ‖e‖²."""
    d, s, micro, k = 16, 0.5, 8, 8
    gen = torch.Generator().manual_seed(0)
    e = torch.randn(d, generator=gen, dtype=torch.float64) * 0.3
    truth = ((d + 1) * e.pow(2).sum() + d * s**2) / e.pow(2).sum()
    g2s, traces = [], []
    for _ in range(400):
        x = torch.randn(k, micro, d, generator=gen, dtype=torch.float64)
        eps = s * torch.randn(k, micro, generator=gen, dtype=torch.float64)
        per_sample = x * ((x @ e) - eps)[..., None]  # (k, micro, d)
        g2, trace = bs.terms_from_microbatches(list(per_sample.mean(1)), micro)
        g2s.append(g2)
        traces.append(trace)
    estimate = np.mean(traces) / np.mean(g2s)
    assert estimate == pytest.approx(float(truth), rel=0.10)
    assert np.mean(g2s) == pytest.approx(float(e.pow(2).sum()), rel=0.10)  # unbiased ‖G‖²


def test_noise_scale_on_a_tiny_model_matches_exact_per_sample_gradients():
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 1))
    model.double()
    N = 512
    X = torch.randn(N, 6, dtype=torch.float64)
    Y = torch.sin(X.sum(1, keepdim=True)) + 0.3 * torch.randn(N, 1, dtype=torch.float64)
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(p, x, y):
        return ((functional_call(model, p, (x[None],)) - y[None]) ** 2).mean()

    per = vmap(grad(loss), in_dims=(None, 0, 0))(params, X, Y)
    flat = torch.cat([per[n].reshape(N, -1) for n in params], dim=1)  # (N, P)
    G = flat.mean(0)
    exact = float((flat - G).pow(2).sum(1).mean() / G.pow(2).sum())  # population tr Σ / ‖G‖²
    gen = torch.Generator().manual_seed(1)
    g2s, traces = [], []
    for _ in range(300):  # micro-batches drawn with replacement from the population
        idx = torch.randint(0, N, (4, 16), generator=gen)
        g2, trace = bs.terms_from_microbatches(list(flat[idx].mean(1)), 16)
        g2s.append(g2)
        traces.append(trace)
    assert np.mean(traces) / np.mean(g2s) == pytest.approx(exact, rel=0.15)


def test_smoothed_ratio_and_input_errors():
    ns = bs.NoiseScale(decay=0.9)
    for _ in range(5):
        ns.update(2.0, 50.0)
    assert ns.b_simple == pytest.approx(25.0)
    assert len(ns.history) == 5 and ns.history[-1]["b_simple"] == pytest.approx(25.0)
    with pytest.raises(ValueError, match="b_small < b_big"):
        bs.noise_scale_terms(1.0, 1.0, 8, 8)
    with pytest.raises(ValueError, match="at least 2"):
        bs.terms_from_microbatches([torch.zeros(3)], 4)
    with pytest.raises(ValueError, match="decay"):
        bs.NoiseScale(decay=1.0)


def test_noise_scale_errors_name_the_function():
    """(3, 1.5) at batch sizes (8, 64): ‖G‖² = (64·1.5 − 8·3)/56, tr Σ = 1.5/(1/8 − 1/64)."""
    assert bs.noise_scale_terms(3.0, 1.5, 8, 64) == pytest.approx((72 / 56, 1.5 * 64 / 7))
    with pytest.raises(ValueError, match="noise_scale_terms: need 0 < b_small < b_big"):
        bs.noise_scale_terms(1.0, 1.0, 8, 8)
    with pytest.raises(ValueError, match=r"noise_scale_terms: b_small must be in \(0, inf\)"):
        bs.noise_scale_terms(1.0, 1.0, 0, 8)
    with pytest.raises(TypeError, match="noise_scale_terms: squared gradient norms must be num"):
        bs.noise_scale_terms("a", 1.0, 8, 64)
    with pytest.raises(ValueError, match="terms_from_microbatches: need at least 2 micro-batch"):
        bs.terms_from_microbatches([torch.zeros(3)], 4)
    with pytest.raises(ValueError, match="terms_from_microbatches: micro must be an int ≥ 1"):
        bs.terms_from_microbatches([torch.ones(3)] * 2, 2.5)
    with pytest.raises(ValueError, match="terms_from_microbatches: the gradients differ in size"):
        bs.terms_from_microbatches([torch.ones(3), torch.ones(4)], 4)
    with pytest.raises(TypeError, match="NoiseScale: decay must be a number, got 'a'"):
        bs.NoiseScale(decay="a")
    with pytest.raises(TypeError, match="b_simple_curve: decay must be a number"):
        bs.b_simple_curve([1.0], [1.0], decay="a")
    with pytest.raises(TypeError, match="b_simple_curve: g2 and trace must hold numbers"):
        bs.b_simple_curve(["a"], [1.0])


def test_critical_batch_fit_recovers_a_planted_b_crit():
    rng = np.random.default_rng(0)
    s_min, b_crit = 400.0, 96.0
    B = np.repeat([8, 16, 32, 64, 128, 256, 512, 1024], 3)
    S = s_min * (1 + b_crit / B) * np.exp(0.03 * rng.normal(size=B.size))
    fit = bs.fit_critical_batch(pd.DataFrame({"batch_size": B, "steps": S}), bootstrap=400)
    assert fit.b_crit == pytest.approx(b_crit, rel=0.1)
    # and both ends of the planted curve: S_min, and E_min = S_min·B_crit examples
    assert fit.s_min == pytest.approx(s_min, rel=0.05)
    assert fit.e_min == pytest.approx(s_min * b_crit, rel=0.1)
    lo, hi = fit.intervals["b_crit"]
    assert lo < b_crit < hi
    # the curves the fit returns follow its own parameters: (S/S_min − 1)(E/E_min − 1) = 1
    Bs = np.array([10.0, 100.0, 1000.0])
    assert ((fit.steps(Bs) / fit.s_min - 1) * (fit.examples(Bs) / fit.e_min - 1)) == (
        pytest.approx(1.0))
    with pytest.raises(ValueError, match="do not show"):
        bs.fit_critical_batch(pd.DataFrame({"batch_size": B, "steps": 1000.0 + B}), bootstrap=0)
    with pytest.raises(ValueError, match="≥ 3 batch sizes"):
        bs.fit_critical_batch(pd.DataFrame({"batch_size": [8] * 4, "steps": [1.0] * 4}))
    with pytest.raises(ValueError, match="≥ 3 batch sizes, got 4 runs and 2 sizes"):
        # two sizes fit the line exactly: an interval of zero width would look precise
        bs.fit_critical_batch(pd.DataFrame({"batch_size": [8, 8, 64, 64],
                                            "steps": [500.0, 520.0, 90.0, 95.0]}))
    # at B = B_crit both costs are twice their minimum (McCandlish et al.)
    assert fit.steps(fit.b_crit) == pytest.approx(2 * fit.s_min)
    assert fit.examples(fit.b_crit) == pytest.approx(2 * fit.e_min)
    with pytest.raises(ValueError, match=r"missing columns \['steps'\]"):
        bs.fit_critical_batch(pd.DataFrame({"batch_size": B}))


def test_eta_models_and_the_noise_temperature():
    B = np.geomspace(1, 1e4, 401)
    surge = bs.eta_surge(B, eta_crit=0.02, b_crit=100.0)
    assert B[np.argmax(surge)] == pytest.approx(100.0, rel=0.03)
    assert surge.max() == pytest.approx(0.01, rel=1e-3)  # η_crit/2 at the peak
    # the paper's form: η_max/[½(√(B_noise/B) + √(B/B_noise))] with η_crit = 2·η_max
    paper = 0.01 / (0.5 * (np.sqrt(100.0 / B) + np.sqrt(B / 100.0)))
    assert np.allclose(paper, surge)
    sgd = bs.eta_sgd(B, eta_crit=0.02, b_crit=100.0)
    assert np.all(np.diff(sgd) > 0) and sgd[-1] == pytest.approx(0.02, rel=0.02)
    assert bs.eta_sgd(100.0, 0.02, 100.0) == pytest.approx(0.01)
    t = bs.noise_temperature(0.01, 1e6, 32, momentum=0.9)
    assert t == pytest.approx(0.01 * 1e6 / (32 * 0.1))
    base = bs.noise_temperature(0.01, 1e6, 32)
    assert bs.noise_temperature(0.02, 1e6, 64) == pytest.approx(base)  # η ∝ B at fixed D
    assert bs.noise_temperature(0.005, 2e6, 32) == pytest.approx(base)  # η ∝ 1/D at fixed B


def test_eta_models_refuse_batch_sizes_that_are_not_positive():
    """√(B/B_crit) of a negative B was NaN, and B = 0 divided by zero: refused, by name."""
    assert bs.eta_surge(64, 0.02, 64.0) == pytest.approx(0.01)  # the peak, η_crit/2
    assert bs.EtaOfB("surge", 0.02, 64.0, 5)(64.0) == pytest.approx(0.01)
    for f in (bs.eta_sgd, bs.eta_surge):
        name = f.__name__
        for B in (-4, 0, [8.0, -1.0], np.nan):
            with pytest.raises(ValueError, match=f"{name}: B must be positive and finite"):
                f(B, 1.0, 1.0)
        with pytest.raises(ValueError, match=rf"{name}: b_crit must be in \(0, inf\)"):
            f(4.0, 1.0, -1.0)
        with pytest.raises(TypeError, match=f"{name}: B must be a number or an array"):
            f("64", 1.0, 1.0)
    with pytest.raises(ValueError, match=r"EtaOfB: B must be positive and finite, got \[-1.0\]"):
        bs.EtaOfB("surge", 0.02, 64.0, 5)(-1)


@pytest.mark.parametrize("model", ["sgd", "surge"])
def test_eta_of_b_fit_recovers_planted_parameters(model):
    rng = np.random.default_rng(2)
    B = np.array([4, 8, 16, 32, 64, 128, 256, 512, 1024], dtype=float)
    f = bs.eta_sgd if model == "sgd" else bs.eta_surge
    eta = f(B, 0.03, 60.0) * np.exp(0.03 * rng.normal(size=B.size))
    fit = bs.fit_eta_of_b(pd.DataFrame({"batch_size": B, "lr": eta}), model, bootstrap=300)
    assert fit.b_crit == pytest.approx(60.0, rel=0.25)
    assert fit.eta_crit == pytest.approx(0.03, rel=0.15)
    lo, hi = fit.intervals["b_crit"]
    assert lo < 60.0 < hi
    assert fit(60.0) == pytest.approx(f(60.0, fit.eta_crit, fit.b_crit))
    assert fit.converged and fit.b_crit_inside and fit.b_range == (4.0, 1024.0)
    # optima measured only far below B_crit (B ≤ 32, B_crit = 10⁶): flagged as outside
    small = bs.fit_eta_of_b(pd.DataFrame({"batch_size": B[:4], "lr": f(B[:4], 0.03, 1e6)}),
                            model, bootstrap=0)  # fmt: skip
    assert not small.b_crit_inside
    with pytest.raises(ValueError, match="unknown model 'adam'"):
        bs.fit_eta_of_b(pd.DataFrame({"batch_size": B, "lr": eta}), "adam")
    with pytest.raises(ValueError, match="≥ 3 batch sizes"):
        bs.fit_eta_of_b(pd.DataFrame({"batch_size": [8.0, 16.0], "lr": [0.01, 0.02]}))
    with pytest.raises(ValueError, match="η\\* = 0.01 at every batch size"):  # no bend: no B_crit
        bs.fit_eta_of_b(pd.DataFrame({"batch_size": B, "lr": 0.01}), model)


def test_overhead_definitions_follow_the_hyperbola():
    b = bs.overhead_batch(100.0, 0.2)
    fit = bs.CriticalBatch(s_min=1000.0, e_min=100_000.0, b_crit=100.0, n=0)
    assert fit.examples(b["data"]) / fit.e_min == pytest.approx(1.2)
    assert fit.steps(b["steps"]) / fit.s_min == pytest.approx(1.2)
    one = bs.overhead_batch(100.0, 1.0)
    assert one["data"] == one["steps"] == 100.0  # both overheads 100% at B_crit


def test_critical_batch_curves_refuse_batch_sizes_that_are_not_positive():
    """S(B) at B = −1 was −99 000 steps and at B = 0 infinite: refused, by name."""
    fit = bs.CriticalBatch(s_min=1000.0, e_min=100_000.0, b_crit=100.0, n=0)
    assert fit.steps(100.0) == pytest.approx(2000.0)
    assert fit.examples(100.0) == pytest.approx(200_000.0)
    for B in (-1, 0):
        with pytest.raises(ValueError, match="CriticalBatch.steps: B must be positive"):
            fit.steps(B)
        with pytest.raises(ValueError, match="CriticalBatch.examples: B must be positive"):
            fit.examples(B)


def test_the_training_probe_equals_explicit_micro_batch_gradients():
    """The probe reads g_i from the accumulated gradients; the reference computes each
    micro-batch gradient on its own and applies the two-batch estimator."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    model.double()
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randn(12, 3, dtype=torch.float64)
    micro, B = 3, 12
    probe = bs.GradientNoiseProbe(model.parameters(), micro, B)
    for i in range(0, B, micro):
        loss = ((model(x[i : i + micro]) - y[i : i + micro]) ** 2).mean()
        (loss * micro / B).backward()
        probe.after_backward()
    g2, trace = probe.finish().tolist()
    grads = []
    for i in range(0, B, micro):
        model.zero_grad()
        ((model(x[i : i + micro]) - y[i : i + micro]) ** 2).mean().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    want = bs.terms_from_microbatches(grads, micro)
    assert (g2, trace) == pytest.approx(want, rel=1e-10)
    # the probe resets: a second step gives the same numbers again
    model.zero_grad()
    for i in range(0, B, micro):
        (((model(x[i : i + micro]) - y[i : i + micro]) ** 2).mean() * micro / B).backward()
        probe.after_backward()
    assert probe.finish().tolist() == pytest.approx(want, rel=1e-10)
    with pytest.raises(ValueError, match="at least two"):
        bs.GradientNoiseProbe(model.parameters(), 12, 12)
    with pytest.raises(ValueError, match="does not divide"):
        bs.GradientNoiseProbe(model.parameters(), 5, 12)
    with pytest.raises(ValueError, match="micro must be an int ≥ 1"):
        bs.GradientNoiseProbe(model.parameters(), 0, 12)
    with pytest.raises(RuntimeError, match="before any"):
        bs.GradientNoiseProbe(model.parameters(), 3, 12).finish()


def test_b_simple_curve_is_the_ratio_of_the_smoothed_terms():
    rng = np.random.default_rng(0)
    g2, trace = rng.uniform(1, 2, 30), rng.uniform(10, 40, 30)
    ns = bs.NoiseScale(decay=0.8)
    for a, b in zip(g2, trace, strict=True):
        ns.update(a, b)
    curve = bs.b_simple_curve(g2, trace, decay=0.8)
    assert curve == pytest.approx([h["b_simple"] for h in ns.history], rel=1e-12)
    assert curve[0] == pytest.approx(trace[0] / g2[0])
    with pytest.raises(ValueError, match="NaN"):
        bs.b_simple_curve([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="shapes"):
        bs.b_simple_curve([1.0], [1.0, 2.0])


def test_steps_to_target_interpolates_the_smoothed_monotone_curve():
    # loss = 1 + 10/step on steps 1..100 (already monotone): target 1.5 is crossed at step 20
    step = np.arange(1, 101, dtype=float)
    log = pd.DataFrame({"run_id": "a", "step": step, "train_loss": 1 + 10 / step,
                        "batch_size": 8, "lr": 0.1})  # fmt: skip
    noisy = log.assign(run_id="b", batch_size=16,
                       train_loss=log["train_loss"] + np.where(step % 2, 0.3, -0.3))  # fmt: skip
    out = bs.steps_to_target(pd.concat([log, noisy]), [1.5, 0.9, 20.0], smooth=1)
    a = out[out["run_id"] == "a"].set_index("target")["steps"]
    assert a[1.5] == pytest.approx(20.0)
    assert np.isnan(a[0.9]) and a[20.0] == 1.0
    assert set(out.columns) >= {"batch_size", "lr", "target", "steps"}
    # a trailing mean over 2 entries cancels the ±0.3 alternation (up to the 1/step drift)
    b = bs.steps_to_target(noisy, [1.5], smooth=2)["steps"].iloc[0]
    assert 19.0 < b < 23.0
    # a first entry that is not finite: the first finite one below the target is the answer
    late = pd.DataFrame({"run_id": "c", "step": [0, 100, 200, 300],
                         "train_loss": [np.nan, 1.9, 1.5, 1.2]})  # fmt: skip
    assert bs.steps_to_target(late, [2.0, 1.7], smooth=1)["steps"].tolist() == [100, 150]
    with pytest.raises(ValueError, match="missing"):
        bs.steps_to_target(log.drop(columns="step"), [1.0])
    with pytest.raises(ValueError, match="finite"):
        bs.steps_to_target(log, [np.nan])


def test_critical_batch_fit_weighs_relative_residuals():
    # Steps to a target carry noise in proportion to the steps. Planted S_min = 1000,
    # B_crit = 2000 with 5% noise: the relative-residual fit finds B_crit where plain least
    # squares (written here from the formula) is led by the longest, small-batch runs.
    rng = np.random.default_rng(0)
    B = 2.0 ** np.arange(3, 12)
    ours, plain = [], []
    for _ in range(100):
        S = 1000.0 * (1 + 2000.0 / B) * np.exp(0.05 * rng.normal(size=B.size))
        try:
            ours.append(bs.fit_critical_batch(pd.DataFrame({"batch_size": B, "steps": S}),
                                              bootstrap=0).b_crit)  # fmt: skip
        except ValueError:
            ours.append(np.inf)
        e_min, s_min = np.polyfit(1 / B, S, 1)
        plain.append(e_min / s_min if s_min > 0 else 1e12)  # no trade-off found: far off
    assert np.isfinite(ours).all()  # a fit every time
    lo, mid, hi = np.percentile(ours, [10, 50, 90])
    assert mid == pytest.approx(2000.0, rel=0.05) and 0.8 < lo / 2000 and hi / 2000 < 1.25
    p_lo, p_hi = np.percentile(plain, [10, 90])
    assert (hi - lo) < 0.5 * (p_hi - p_lo)
    # the fit is the weighted normal equations' solution
    S = 1000.0 * (1 + 2000.0 / B) * np.exp(0.05 * rng.normal(size=B.size))
    A = np.column_stack([np.ones_like(B), 1 / B]) / S[:, None]
    s_min, e_min = np.linalg.solve(A.T @ A, A.T @ np.ones_like(S))
    fit = bs.fit_critical_batch(pd.DataFrame({"batch_size": B, "steps": S}), bootstrap=0)
    assert (fit.s_min, fit.e_min) == pytest.approx((s_min, e_min), rel=1e-9)


def test_three_points_give_no_interval_and_bad_bootstrap_arguments_are_named():
    B = np.array([16.0, 64.0, 256.0])
    eta = bs.eta_surge(B, 0.02, 64.0) * np.array([1.1, 0.9, 1.05])
    f = bs.fit_eta_of_b(pd.DataFrame({"batch_size": B, "lr": eta}), bootstrap=200)
    assert all(np.isnan(v) for pair in f.intervals.values() for v in pair)
    c = bs.fit_critical_batch(pd.DataFrame({"batch_size": B, "steps": 100 * (1 + 50 / B)}),
                              bootstrap=200)  # fmt: skip
    assert set(c.intervals) == {"s_min", "e_min", "b_crit"}
    assert all(np.isnan(v) for pair in c.intervals.values() for v in pair)
    four = pd.DataFrame({"batch_size": [8.0, *B], "steps": 100 * (1 + 50 / np.array([8, *B]))
                         * np.array([1.02, 0.97, 1.01, 0.99])})  # fmt: skip
    lo, hi = bs.fit_critical_batch(four, bootstrap=200).intervals["b_crit"]
    assert lo < hi  # four runs: the resamples differ
    table = pd.DataFrame({"batch_size": B, "lr": eta})
    for bad in (2.5, True, -5, "10"):
        with pytest.raises(ValueError, match="bootstrap must be an int ≥ 0"):
            bs.fit_eta_of_b(table, bootstrap=bad)
        with pytest.raises(ValueError, match="bootstrap must be an int ≥ 0"):
            bs.fit_critical_batch(four, bootstrap=bad)
    for bad in (2, 0, float("nan")):
        with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\)"):
            bs.fit_eta_of_b(table, level=bad)


def test_steps_to_target_trailing_mean_lag_of_the_docstring():
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


def test_eta_of_b_fit_is_the_least_squares_solution_in_logs():
    from scipy.optimize import least_squares

    B = 2.0 ** np.arange(2, 11)
    eta = bs.eta_surge(B, 0.03, 60.0) * np.exp(0.05 * np.random.default_rng(3).normal(size=B.size))
    fit = bs.fit_eta_of_b(pd.DataFrame({"batch_size": B, "lr": eta}), "surge", bootstrap=0)
    ref = least_squares(lambda p: np.log(bs.eta_surge(B, *np.exp(p))) - np.log(eta),
                        [np.log(0.05), np.log(50.0)], xtol=1e-14, ftol=1e-14, gtol=1e-14)
    assert (fit.eta_crit, fit.b_crit) == pytest.approx(tuple(np.exp(ref.x)), rel=1e-5)


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


def test_decay_zero_is_allowed_and_means_no_smoothing():  # B1, B2
    g2, trace = np.array([1.0, 2.0, 4.0]), np.array([10.0, 30.0, 20.0])
    assert bs.b_simple_curve(g2, trace, decay=0.0) == pytest.approx(trace / g2)
    ns = bs.NoiseScale(decay=0.0)
    for a, b in zip(g2, trace, strict=True):
        ns.update(a, b)
    assert ns.b_simple == pytest.approx(5.0)


def test_eta_of_b_interval_narrows_with_the_level():  # B3
    B = 2.0 ** np.arange(2, 11)
    eta = bs.eta_surge(B, 0.03, 60.0) * np.exp(0.05 * np.random.default_rng(3).normal(size=9))
    t = pd.DataFrame({"batch_size": B, "lr": eta})
    wide = bs.fit_eta_of_b(t, bootstrap=100, seed=0, level=0.95).intervals["b_crit"]
    narrow = bs.fit_eta_of_b(t, bootstrap=100, seed=0, level=0.5).intervals["b_crit"]
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_critical_batch_with_four_runs_at_three_sizes_has_an_interval():  # B4
    """NaN intervals are for fewer than 4 *runs*; 4 runs at 3 sizes resample to new data."""
    B = np.array([8.0, 8.0, 64.0, 512.0])
    S = 100 * (1 + 50 / B) * np.array([1.05, 0.95, 1.0, 1.02])
    lo, hi = bs.fit_critical_batch(pd.DataFrame({"batch_size": B, "steps": S}),
                                   bootstrap=200).intervals["b_crit"]
    assert np.isfinite([lo, hi]).all() and lo < hi


def test_steps_to_target_keeps_only_columns_constant_within_a_run():  # B5
    step = np.arange(1.0, 11.0)
    log = pd.DataFrame({"run_id": "a", "step": step, "train_loss": 1 + 10 / step,
                        "batch_size": 8, "tokens": step * 8})  # fmt: skip
    out = bs.steps_to_target(log, [3.0], smooth=1)
    assert "batch_size" in out and "tokens" not in out


def test_steps_to_target_interpolates_the_running_minimum():  # B6
    log = pd.DataFrame({"run_id": 0, "step": [0, 10, 20, 30],
                        "train_loss": [3.0, 2.0, 2.5, 1.0]})  # fmt: skip
    # running minimum 3, 2, 2, 1: crosses 1.5 halfway between steps 20 and 30
    got = bs.steps_to_target(log, [1.5], smooth=1, curve="running-min")["steps"].iloc[0]
    assert got == pytest.approx(25.0)
    # least-squares non-increasing fit 3, 2.25, 2.25, 1: crosses 1.5 at 20 + 10·0.75/1.25
    assert bs.steps_to_target(log, [1.5])["steps"].iloc[0] == pytest.approx(26.0)


def test_b_crit_at_the_end_of_the_measured_range_is_inside():  # B7
    assert bs.EtaOfB("surge", 0.02, 64.0, 5, b_range=(16.0, 64.0)).b_crit_inside
    assert bs.EtaOfB("surge", 0.02, 16.0, 5, b_range=(16.0, 64.0)).b_crit_inside
    assert not bs.EtaOfB("surge", 0.02, 65.0, 5, b_range=(16.0, 64.0)).b_crit_inside


def test_noise_temperature_refuses_negative_momentum():  # B8
    with pytest.raises(ValueError, match="momentum"):
        bs.noise_temperature(0.01, 1e6, 32, momentum=-0.5)


def test_noise_temperature_refuses_inputs_that_are_not_positive():
    """A negative rate gave a negative temperature and batch 0 an infinite one."""
    assert bs.noise_temperature(0.01, 1e6, 32, momentum=0.9) == pytest.approx(3125.0)
    with pytest.raises(ValueError, match="noise_temperature: lr must be positive"):
        bs.noise_temperature(-0.1, 1e6, 32)
    with pytest.raises(ValueError, match="noise_temperature: batch must be positive"):
        bs.noise_temperature(0.1, 1e6, 0)
    with pytest.raises(ValueError, match="noise_temperature: examples must be positive"):
        bs.noise_temperature(0.1, [1e6, -1.0], 32)
    with pytest.raises(TypeError, match="noise_temperature: momentum must be a number"):
        bs.noise_temperature(0.1, 1e6, 32, momentum="0.9")


def test_critical_batch_intervals_hold_only_fits_that_show_the_trade_off():  # B9
    """S_min, E_min must come out positive (docstring); resamples whose line does not (about
    a fifth here, S_min being small) are left out, so every interval stays positive."""
    B = np.repeat([8.0, 16, 32, 64, 128, 256], 2)
    S = (2.0 + 4000 / B) * np.exp(0.1 * np.random.default_rng(0).normal(size=B.size))
    fit = bs.fit_critical_batch(pd.DataFrame({"batch_size": B, "steps": S}), bootstrap=300,
                                seed=0)
    assert fit.s_min > 0
    for name in ("s_min", "e_min", "b_crit"):
        assert fit.intervals[name][0] > 0, name


def test_b_simple_is_infinite_without_a_positive_smoothed_gradient_norm():  # B11 (convention)
    assert bs.NoiseScale().b_simple == math.inf  # before any update
    ns = bs.NoiseScale(decay=0.5)
    ns.update(-1.0, 5.0)  # the unbiased ‖G‖² estimate can be negative
    assert ns.b_simple == math.inf
    assert bs.b_simple_curve([-1.0], [5.0], decay=0.5)[0] == math.inf  # "as NoiseScale"


def test_overhead_batch_refuses_nan_and_inf():
    for args in ((math.nan,), (100.0, math.nan), (math.inf,), (100.0, math.inf)):
        with pytest.raises(ValueError, match="overhead_batch: need numbers b_crit > 0"):
            bs.overhead_batch(*args)
    for args in (("100",), (100.0, "0.2"), (np.array([10.0, 20.0]),), (True,)):
        with pytest.raises(ValueError, match=r"and overhead > 0 \(finite\), got"):
            bs.overhead_batch(*args)
    assert bs.overhead_batch(np.float64(100.0))["steps"] == pytest.approx(500.0)


def test_steps_to_target_takes_one_target_or_several():
    """A loss of 1 + 10/step reaches 1.5 at step 20 (smooth = 1: no lag)."""
    step = np.arange(1, 41)
    log = pd.DataFrame({"run_id": 0, "step": step, "train_loss": 1 + 10 / step})
    one = bs.steps_to_target(log, 1.5, smooth=1)
    assert one.steps.tolist() == [20.0]
    assert one.equals(bs.steps_to_target(log, [1.5], smooth=1))
    with pytest.raises(ValueError, match="steps_to_target: targets must be a loss or a list"):
        bs.steps_to_target(log, "low", smooth=1)
    # text steps would sort as text ("10" < "9") and move the crossing: refused
    with pytest.raises(TypeError, match="column 'step' must hold numbers"):
        bs.steps_to_target(log.assign(step=log.step.astype(str)), 1.5, smooth=1)
    with pytest.raises(ValueError, match="40 rows have no 'run_id'"):
        bs.steps_to_target(log.assign(run_id=np.nan), 1.5, smooth=1)


def test_critical_batch_fit_takes_one_target_and_needs_steps_that_fall():
    """steps_to_target with several targets gives a table a single fit would mix: refused;
    steps equal at every batch size are no trade-off (not a B_crit of 10⁻¹⁵)."""
    step = np.arange(1, 8001)
    log = pd.concat([pd.DataFrame({"run_id": b, "batch_size": b, "step": step,
                                   "train_loss": 1 + 200 * (1 + 96 / b) / step})
                     for b in (8, 32, 128, 512)])  # S(target 1 + x) = 200·(1 + 96/B)/x
    table = bs.steps_to_target(log, [1.5, 2.0], smooth=1)
    with pytest.raises(ValueError, match=r"mixes 2 target losses \[1.5, 2.0\]; fit one"):
        bs.fit_critical_batch(table, bootstrap=0)
    for target, s_min in ((1.5, 400.0), (2.0, 200.0)):
        fit = bs.fit_critical_batch(table[table.target == target], bootstrap=0)
        assert fit.b_crit == pytest.approx(96, rel=0.02) and fit.s_min == pytest.approx(
            s_min, rel=0.02)
    with pytest.raises(ValueError, match="do not show S falling"):
        bs.fit_critical_batch(table[table.target == 1.5].assign(steps=100.0), bootstrap=0)


def test_steps_to_target_refuses_an_empty_log():
    """An empty log gave a table without columns; the fit then reported missing columns."""
    log = pd.DataFrame({"run_id": [], "step": [], "train_loss": []})
    with pytest.raises(ValueError, match="steps_to_target: the log is empty"):
        bs.steps_to_target(log, 1.5)


def test_noise_scale_refuses_a_non_finite_step_and_keeps_its_averages():
    """A NaN folded into the EMA would leave B_simple at NaN/inf for good (b_simple_curve
    refuses the same input): refused, and the state is as before the call."""
    ns = bs.NoiseScale(decay=0.9)
    ns.update(1.0, 10.0)
    before = (ns.g2, ns.trace, ns.updates, len(ns.history))
    for g2, trace in ((math.nan, 10.0), (1.0, math.inf)):
        with pytest.raises(ValueError, match="NoiseScale.update: g2 and trace must be finite"):
            ns.update(g2, trace)
    assert (ns.g2, ns.trace, ns.updates, len(ns.history)) == before
    assert ns.update(1.0, 10.0) == pytest.approx(10.0)  # trace/g2 of constant estimates


# ----------------------------------------------------------------- the falling curve of a run
def _brute_falling(y: np.ndarray) -> tuple[np.ndarray, float]:
    """Isotonic fit by brute force: scipy's, or the cumulative-minimum-of-means formula."""
    try:
        from scipy.optimize import isotonic_regression
    except ImportError:  # scipy < 1.12
        pytest.skip("scipy.optimize.isotonic_regression needs scipy ≥ 1.12")
    fit = isotonic_regression(y, increasing=False).x
    return fit, float(np.sum((y - fit) ** 2))


def test_falling_fit_is_scipys_isotonic_regression_on_every_prefix():
    rng = np.random.default_rng(0)
    y = 3 / np.sqrt(np.arange(1, 61)) + 0.3 * rng.normal(size=60)
    fit, sse = bs._falling_fit(y)
    want, want_sse = _brute_falling(y)
    np.testing.assert_allclose(fit, want, rtol=1e-12)
    assert np.all(np.diff(fit) <= 0)
    for k in (0, 1, 7, 30, 59):
        assert sse[k] == pytest.approx(_brute_falling(y[: k + 1])[1], rel=1e-9, abs=1e-12)


def test_falling_curve_cuts_where_a_fall_then_rise_fits_best():
    """Brute force over every turning point k: SSE of the fall to k plus the rise after it."""
    rng = np.random.default_rng(1)
    x = np.arange(80.0)
    y = 1 + 0.002 * (x - 50) ** 2 + 0.05 * rng.normal(size=80)  # falls to x = 50, then rises
    costs = [_brute_falling(y[: k + 1])[1] + (_brute_falling(-y[k + 1:])[1] if k < 79 else 0)
             for k in range(80)]  # fmt: skip
    costs = np.array(costs)
    k = int(np.flatnonzero(costs <= costs.min() + 1e-9)[-1])  # the contract: last k on a tie
    got = bs.falling_curve(y)
    assert len(got) == k + 1 and 40 < k < 60
    np.testing.assert_allclose(got, _brute_falling(y[: k + 1])[0], rtol=1e-12)
    # a run that only falls keeps every entry; bad input is named
    assert len(bs.falling_curve(np.linspace(3, 1, 50))) == 50
    with pytest.raises(ValueError, match="falling_curve: need a non-empty 1-d array of finite"):
        bs.falling_curve([3.0, np.nan, 2.0])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        bs.falling_curve(np.ones((2, 2)))


def _noisy_runs(noise: float, reps: int, rise: bool = False) -> pd.DataFrame:
    """Loss 1.5 + 30/√step logged every 8 steps to 32768, plus Gaussian noise per entry;
    with ``rise``, the loss turns up linearly after 40% of the run (too high a rate)."""
    rng = np.random.default_rng(2)
    step = np.arange(8, 32769, 8, dtype=float)
    loss = 1.5 + 30 / np.sqrt(step)
    if rise:
        loss = loss + np.clip(0.6 * (step / (0.4 * step[-1]) - 1), 0, None)
    return pd.concat([pd.DataFrame({"run_id": r, "step": step,
                                    "train_loss": loss + noise * rng.normal(size=step.size)})
                      for r in range(reps)])  # fmt: skip


def test_falling_curve_finds_the_planted_crossings_where_the_running_minimum_is_early():
    """The docstring's numbers: on 1.5 + 30/√step with noise 0.2 per entry the true crossing
    of target t is at (30/(t − 1.5))² steps; the falling fit gets it within 8% (medians
    over 40 runs; the crossings of single runs scatter by ~10%),
    the running minimum of the noise at about a sixth for t = 1.8."""
    targets = [2.5, 2.0, 1.8]
    truth = np.array([(30 / (t - 1.5)) ** 2 for t in targets])  # 900, 3600, 10000
    log = _noisy_runs(0.2, 40)
    for curve, low, high in (("falling", 0.92, 1.08), ("running-min", 0.0, 0.7)):
        got = bs.steps_to_target(log, targets, curve=curve).groupby("target")["steps"].median()
        ratio = got.loc[targets].to_numpy() / truth
        assert np.all((low < ratio) & (ratio < high)), (curve, ratio)
        if curve == "running-min":
            assert 0.1 < ratio[-1] < 0.25  # "about a sixth"


def test_a_run_that_turns_up_still_reaches_the_targets_it_passed():
    """The loss turns up after 40% of the run (true loss 1.76 there): the crossings of 2.0
    and 1.8 before it are still found; a non-increasing fit to the whole run would pool the
    rise into them and lose them."""
    log = _noisy_runs(0.05, 10, rise=True)
    got = bs.steps_to_target(log, [2.0, 1.8]).groupby("target")["steps"].median()
    assert got[2.0] / 3600 == pytest.approx(1, abs=0.05)
    assert got[1.8] / 10000 == pytest.approx(1, abs=0.05)
    whole, _ = _brute_falling(log[log.run_id == 0].train_loss.to_numpy())
    assert whole.min() > 2.0  # the whole-run fit never gets below the rise's level


def test_falling_curve_leaves_out_entries_that_are_not_finite():
    log = pd.DataFrame({"run_id": "c", "step": [0, 100, 200, 300, 400],
                        "train_loss": [np.nan, 1.9, 1.5, np.inf, 1.2]})  # fmt: skip
    # finite entries 1.9, 1.5, 1.2 at steps 100, 200, 400: 1.3 at 200 + 200·0.2/0.3
    got = bs.steps_to_target(log, [2.0, 1.7, 1.3])["steps"].tolist()
    assert got == pytest.approx([100, 150, 200 + 400 / 3])
    with pytest.raises(ValueError, match="steps_to_target: unknown curve 'min'"):
        bs.steps_to_target(log, [2.0], curve="min")
