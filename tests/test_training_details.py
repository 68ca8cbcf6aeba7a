"""Training details a mutation review found unpinned: each test fails on one plausible wrong
implementation that the rest of the suite let through (schedule use in the sweep runner, log
windows, evaluation means, the blow-up rule, Newton–Schulz eps and orientation, byte-corpus
rounding, Markov segment starts, Muon's distributed path with non-default settings)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from optimal_scaling import data, sweep
from optimal_scaling import newton_schulz as ns
from optimal_scaling.newton_schulz import orthogonalize
from optimal_scaling.optim import Muon
from optimal_scaling.train import evaluate, train

TINY = {
    "name": "tiny",
    "horizons": [1024, 2048],
    "run": {
        "batch_size": 4, "context": 16, "eval_batches": 2, "eval_batch_size": 8,
        "check_every": 2, "model": {"width": 16, "depth": 1, "n_heads": 2},
        "data": {"source": "markov", "vocab_size": 32, "n_train_tokens": 8192,
                 "n_val_tokens": 2048},
        "optimizer": {"name": "adamw", "lr": 0.01}, "device": "cpu",
    },
}


def tiny() -> dict:
    return json.loads(json.dumps(TINY))


def rows(folder):
    (rec,) = [json.loads(p.read_text()) for p in folder.glob("runs/*/record.json")]
    return rec


# R10/R11: the runner's use of the schedule (only lr_factor itself is tested)
def test_the_runner_applies_the_schedule_at_every_step(tmp_path):
    from optimal_scaling.sweep.runner import lr_factor

    sched = {"name": "linear", "warmup_steps": 4, "final_fraction": 0.1}
    const, lin = tiny(), tiny()
    const["horizons"] = lin["horizons"] = [1024]  # 16 steps
    lin["run"]["schedule"] = sched
    sweep.run(sweep.from_dict(const), tmp_path / "c", progress=False)
    sweep.run(sweep.from_dict(lin), tmp_path / "l", progress=False)
    base = rows(tmp_path / "c")["rows"][0]["lr"]
    got = rows(tmp_path / "l")["rows"][0]["lr"]
    assert got == pytest.approx(base * lr_factor(sched, 15, 16), rel=1e-12)  # the last step's


# R12: each log entry is the mean over its own `log_every` steps
def test_log_entries_are_means_of_their_own_steps(tmp_path):
    one, three = tiny(), tiny()
    one["run"]["log_every"], three["run"]["log_every"] = 1, 3  # 16 steps per horizon: 3 ∤ 16
    sweep.run(sweep.from_dict(one), tmp_path / "1", progress=False)
    sweep.run(sweep.from_dict(three), tmp_path / "3", progress=False)
    per_step = rows(tmp_path / "1")["log"]["train_loss"]
    log = rows(tmp_path / "3")["log"]
    for at, value in zip(log["step"], log["train_loss"], strict=True):
        assert value == pytest.approx(np.mean(per_step[at - 3 : at]), rel=1e-9), at


# T02: evaluate is the mean over all batches
def test_evaluate_is_the_mean_over_every_batch():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    batches = [(torch.ones(2, 1), torch.full((2, 1), 1.0)),
               (torch.ones(2, 1), torch.full((2, 1), 3.0))]  # MSE 1 and 9 (the model says 0)

    def mse(p, t):
        return ((p - t) ** 2).mean()

    assert evaluate(model, batches, mse) == pytest.approx((1.0 + 9.0) / 2)


# T03: blow-up is measured against the first loss, not the previous one
def test_blowup_is_relative_to_the_first_loss():
    losses = iter([1.0, 1.5, 2.25, 3.375, 5.0625, 7.6])
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)

    def loss_fn(out, y):
        return out.sum() * 0 + next(losses)

    result = train(model, opt, lambda: (torch.ones(1, 1), torch.ones(1, 1)), 6, loss_fn=loss_fn,
                   blowup=4.0)
    assert result.diverged and result.reason == "step 5: loss 5.06 > 4 × first loss 1"


# M21/M22: eps enters the normalization X/(margin·‖X‖_F + eps)
@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1.0), (torch.float64, 1e3)])
def test_eps_enters_the_normalization(dtype, scale):
    G = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=dtype) * scale
    for eps in (0.5, 2.0):
        want = G / (1.0 * torch.linalg.matrix_norm(G) + eps)
        got = orthogonalize(G, steps=0, margin=1.0, eps=eps, dtype=dtype)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


# M08: the steps run on the short side (X Xᵀ is min(m, n)²)
def test_the_steps_run_on_the_short_side(monkeypatch):
    seen = []
    real = ns.torch_steps
    monkeypatch.setattr(ns, "torch_steps", lambda X, t: seen.append(tuple(X.shape)) or real(X, t))
    orthogonalize(torch.randn(64, 16))
    orthogonalize(torch.randn(16, 64))
    assert seen == [(16, 64), (16, 64)]


# D08/D09: ⌈val_fraction·n⌉ bytes of validation (the tests' sizes were exact multiples)
def test_validation_bytes_round_up(tmp_path):
    for i in range(8):
        (tmp_path / "src" / f"d{i}").mkdir(parents=True)
        (tmp_path / "src" / f"d{i}" / f"f{i}.py").write_bytes(bytes(range(32, 127)) * 3)
    capped = data.byte_corpus(tmp_path / "src", max_bytes=1001, val_fraction=0.25,
                              cache_dir=tmp_path / "c")
    assert len(capped.val) == 251 and len(capped.train) == 750
    one = tmp_path / "one.py"
    one.write_bytes(b"x" * 60)  # 61 bytes with the newline: ⌈6.1⌉ = 7
    split = data.byte_corpus(one, val_fraction=0.1, cache_dir=tmp_path / "c")
    assert len(split.val) == 7 and len(split.train) == 54


# D12: every segment starts from π
def test_segments_start_from_the_stationary_distribution():
    lang = data.MarkovLanguage(seed=5, segment_length=2, n_train_tokens=2**20)
    starts = np.asarray(lang.train)[::2]
    freq = np.bincount(starts, minlength=lang.vocab_size) / len(starts)
    assert np.abs(freq - lang.stationary).sum() < 0.05


# X01: the distributed path (no group: the plain loop) honours every group setting
def test_distributed_flag_keeps_non_default_settings():
    outs = []
    for distributed in (False, True):
        torch.manual_seed(0)
        p = nn.Parameter(torch.randn(6, 4, dtype=torch.float64))
        p.grad = torch.randn(6, 4, dtype=torch.float64)
        Muon([p], lr=0.1, scale="adamw", schedule="polar_express", margin=1.2, eps=0.1,
             dtype=torch.float64, distributed=distributed).step()
        outs.append(p.detach())
    assert torch.equal(*outs)
