"""Bad input to the training-side functions gets an error that names it; edge cases that used
to give NaN, mix two datasets or crash inside torch are handled."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from optimal_scaling import data
from optimal_scaling.coord_check import fit_slopes
from optimal_scaling.duality import get_map
from optimal_scaling.measure import norm_sweep
from optimal_scaling.models import GPT, MLP
from optimal_scaling.newton_schulz import orthogonalize
from optimal_scaling.optim import Muon, Scion
from optimal_scaling.parametrization import Parametrization
from optimal_scaling.train import cross_entropy, train


def test_orthogonalize_subnormal_float64_and_inputs_that_need_grad():
    tiny = torch.tensor([[1e-320, 0.0], [0.0, 3e-321]], dtype=torch.float64)
    out = orthogonalize(tiny, dtype=torch.float64)
    scaled = orthogonalize(tiny / 1e-320, dtype=torch.float64)  # the same matrix, times 10^320
    assert torch.isfinite(out).all() and torch.allclose(out, scaled)
    W = nn.Parameter(torch.randn(4, 6, generator=torch.Generator().manual_seed(0)))
    out = orthogonalize(W)
    assert not out.requires_grad and torch.equal(out, orthogonalize(W.detach()))
    assert torch.equal(orthogonalize(W.detach(), steps=np.int64(3)), orthogonalize(W, steps=3))
    for kwargs, needle in (({"margin": "1"}, "margin must be a finite number ≥ 1, got '1'$"),
                           ({"eps": float("inf")}, "eps must be a finite number ≥ 0"),
                           ({"margin": 0.0}, "margin")):  # fmt: skip
        with pytest.raises(ValueError, match=needle):
            orthogonalize(W, **kwargs)


@pytest.mark.parametrize("name", ["colnorm", "rownorm", "bias_rms"])
def test_dual_norms_of_huge_and_tiny_float32_gradients(name):
    gen = torch.Generator().manual_seed(1)
    shape = (64,) if name == "bias_rms" else (4, 6)
    m = get_map(name)
    for scale in (1e20, 1e-25):
        G = torch.randn(shape, generator=gen) * scale
        exact = m.dual_norm(G.double())
        assert m.dual_norm(G).dtype == torch.float32
        assert float(m.dual_norm(G)) == pytest.approx(float(exact), rel=1e-5, abs=0)
        # ⟨G, dualize G⟩ = ‖G‖†, at any scale
        inner = (G.double() * m.dualize(G).double()).sum()
        assert float(inner / exact) == pytest.approx(1.0, rel=1e-5, abs=0)


def test_gpt_names_token_ids_outside_the_vocabulary():
    model = GPT(vocab_size=16, context=8, width=16, depth=1, n_heads=2)
    assert model(torch.full((1, 8), 15)).shape == (1, 8, 16)
    for bad in (16, -1):
        with pytest.raises(ValueError, match=r"token ids must lie in \[0, 16\)"):
            model(torch.full((1, 8), bad))


def test_an_interrupted_shard_overwrite_is_refused_not_mixed(tmp_path, monkeypatch):
    folder = tmp_path / "shards"
    data.write_token_shards(folder, np.zeros(10, np.uint16), np.zeros(5, np.uint16), 8)
    real = data.write_token_shard

    def crash_after_train(tokens, path, dtype="uint16"):
        real(tokens, path, dtype)
        if path.name == "train.bin":
            raise KeyboardInterrupt  # killed between the two files

    monkeypatch.setattr(data, "write_token_shard", crash_after_train)
    with pytest.raises(KeyboardInterrupt):
        data.write_token_shards(folder, np.full(10, 7, np.uint16), np.full(5, 7, np.uint16), 8)
    with pytest.raises(RuntimeError, match="incomplete"):
        data.token_shards(folder)
    monkeypatch.setattr(data, "write_token_shard", real)
    data.write_token_shards(folder, np.full(10, 7, np.uint16), np.full(5, 7, np.uint16), 8)
    back = data.token_shards(folder)
    assert set(np.unique(back.train)) == {7} and set(np.unique(back.val)) == {7}
    # the description's numbers are checked, not truncated or multiplied
    with pytest.raises(ValueError, match="vocab_size must be an int"):
        data.write_token_shards(folder, np.zeros(4, np.uint16), np.zeros(4, np.uint16), 4.5)
    meta_path = folder / data.SHARD_META
    good = json.loads(meta_path.read_text())
    for edit in ({"vocab_size": 40.7}, {"tokens": {"train": "10", "val": 5}},
                 {"tokens": {"train": 10}}):  # fmt: skip
        meta_path.write_text(json.dumps({**good, **edit}))
        with pytest.raises(ValueError, match="is not a shard description"):
            data.token_shards(folder)


def _tiny_run(**kwargs):
    model = nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    return train(model, opt, lambda: (x, y), **{"steps": 3, **kwargs})


def test_train_checks_its_settings_and_records_a_non_finite_gradient():
    assert len(_tiny_run().history) == 3
    for kwargs, needle in (({"steps": 2.5}, "steps must be an int"),
                           ({"eval_every": -1}, "eval_every must be an int ≥ 0"),
                           ({"blowup": 0.5}, "blowup must be a number > 1"),
                           ({"blowup": float("nan")}, "blowup must be a number > 1")):
        with pytest.raises(ValueError, match=needle):
            _tiny_run(**kwargs)
    # a finite loss whose gradient is NaN: Muon's check refuses the step, train records it
    model = nn.Linear(4, 3, bias=False)
    opt = Muon(model.parameters(), lr=0.02)

    def loss_fn(out, y):  # d√u/du at u = 0 is inf, times du/dW = 0: NaN
        return cross_entropy(out, y) + (model.weight.abs().sum() * 0).sqrt()

    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    result = train(model, opt, lambda: (x, y), 3, loss_fn=loss_fn)
    assert result.diverged and "non-finite gradient" in result.reason and "NaN" in result.reason


def test_param_groups_optimizers_and_sweeps_refuse_bad_settings():
    model = MLP(4, 8, 1, depth=2)
    par = Parametrization("mup", base_width=8, optimizer="adam")
    for kwargs in ({"lr": -1e-2}, {"lr": float("nan")}, {"lr": 1e-2, "eps": -1.0},
                   {"lr": 1e-2, "weight_decay": float("inf")}):  # fmt: skip
        with pytest.raises(ValueError, match="param_groups"):
            par.param_groups(model, **kwargs)
    for cls in (Muon, Scion):
        with pytest.raises(TypeError, match="complex"):
            cls([nn.Parameter(torch.zeros(3, 4, dtype=torch.complex64))])
    with pytest.raises(ValueError, match="record_every must be an int ≥ 1"):
        norm_sweep("mup", [16], steps=2, record_every=0)
    import pandas as pd

    one_width = pd.DataFrame({"layer": "l", "stat": "out", "step": 1, "width": 64, "value": [1.0]})
    assert list(fit_slopes(one_width).columns) == ["layer", "stat", "step", "slope"]


def test_muon_steps_on_the_meta_device():
    W = nn.Parameter(torch.empty(8, 4, device="meta"))
    W.grad = torch.empty(8, 4, device="meta")
    Muon([W], lr=0.02).step()  # shapes only: nothing to check, nothing to wait for
    assert W.device.type == "meta"
