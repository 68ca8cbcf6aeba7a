import math

import pandas as pd
import pytest
import torch

from optimal_scaling.measure import (
    layer_measurements,
    linear_inputs,
    log_alignment_ratio,
    norm_sweep,
    plot_alignment,
    plot_norms,
    width_slopes,
)
from optimal_scaling.models import GPT, MLP


def test_alignment_ratio_limits():
    g = torch.Generator().manual_seed(0)
    n = 2048
    W, z = torch.randn(n, n, generator=g), torch.randn(16, n, generator=g)
    assert log_alignment_ratio(W, z) == pytest.approx(0.5, abs=0.03)  # √n: independent
    u, v = torch.randn(64, generator=g), torch.randn(n, generator=g)
    assert log_alignment_ratio(torch.outer(u, v), v.repeat(8, 1)) == pytest.approx(1.0)  # n


def test_alignment_ratio_errors():
    with pytest.raises(ValueError, match="expected a matrix"):
        log_alignment_ratio(torch.ones(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="do not match"):
        log_alignment_ratio(torch.ones(4, 3), torch.ones(2, 5))


def test_measure_errors_start_with_the_function_name():
    with pytest.raises(ValueError, match="log_alignment_ratio: expected a matrix"):
        log_alignment_ratio(torch.ones(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="log_alignment_ratio: inputs of width 5 do not match"):
        log_alignment_ratio(torch.ones(4, 3), torch.ones(2, 5))
    with pytest.raises(ValueError, match="log_alignment_ratio: needs fan_in ≥ 2"):
        log_alignment_ratio(torch.ones(4, 1), torch.ones(2, 1))
    with pytest.raises(ValueError, match="plot_alignment: unknown column 'norm_W'"):
        plot_alignment(pd.DataFrame(), "norm_W")


@pytest.fixture(scope="module")
def slopes():
    widths = [64, 128, 256, 512]
    frames = [norm_sweep(p, widths, steps=20, lr=3e-3, record_every=20) for p in ("sp", "mup")]
    return width_slopes(pd.concat(frames)).set_index(["parametrization", "layer", "step"])


def test_mup_keeps_natural_norms_flat(slopes):
    mup = slopes.loc["mup"]
    # ‖W‖ at init and after training, ‖ΔW‖ after training: all Θ(1) in width. (The input
    # layer's ‖W‖ is 1 + O(√(d_in/n)) for a Gaussian 16-column matrix: slope ≈ −0.15 here.)
    assert mup["norm_W"].abs().max() <= 0.2, mup
    assert mup.xs(20, level="step")["norm_dW"].abs().max() <= 0.15, mup


def test_sp_breaks_the_spectral_condition(slopes):
    sp = slopes.loc["sp"]
    # readout init std 1/√n: ‖W‖_RMS→RMS = √(n/d_out)·σ_max ≈ √n·(1 + 1/√n)
    assert sp.loc[("output", 0), "norm_W"] == pytest.approx(0.5, abs=0.1)
    # Adam's ±lr entries, partly aligned with the inputs: ‖ΔW‖ grows with fan-in
    assert sp.loc[("hidden.0", 20), "norm_dW"] >= 0.4
    assert sp.loc[("output", 20), "norm_dW"] >= 0.4


def test_step_zero_has_no_update():
    df = norm_sweep("mup", [32], steps=2, record_every=1)
    assert (df[df.step == 0].norm_dW == 0).all()
    assert df[df.step == 0].align_dW.apply(math.isnan).all()


def test_sweeps_use_the_parametrizations_optimizer_and_accept_one_shot_iterables(monkeypatch):
    from optimal_scaling import measure
    from optimal_scaling.coord_check import lr_transfer, mlp_coord_check

    def no_adam(*args, **kwargs):
        raise AssertionError("Adam used for an SGD parametrization")

    monkeypatch.setattr(torch.optim, "Adam", no_adam)
    table = measure.norm_sweep("mup_sgd", [16, 32], steps=1, lr=0.05,
                               seeds=(s for s in [0]))  # fmt: skip
    assert sorted(table["width"].unique()) == [16, 32]  # the generator did not run dry
    coords = mlp_coord_check("mup_sgd", widths=(16, 32), steps=2, seeds=(s for s in [0]))
    assert sorted(coords["width"].unique()) == [16, 32]
    from optimal_scaling.train import TrainResult

    def run(width, lr):
        return TrainResult(pd.DataFrame({"step": [1], "loss": [2.0], "val_loss": [1.5]}))

    grid = lr_transfer(run, [8, 16], (lr for lr in [0.1, 0.2]), progress=False)
    assert len(grid) == 4
    # W z = 0: the inputs lie in W's null space (a log of 0)
    assert measure.log_alignment_ratio(torch.tensor([[1.0, -1.0]]),
                                       torch.tensor([[1.0, 1.0]])) == -math.inf  # fmt: skip
    # the model itself a linear layer: its parameter is "weight"
    lin = torch.nn.Linear(4, 3)
    rows = measure.layer_measurements(lin, {"weight": lin.weight.detach().clone()},
                                      torch.randn(5, 4))  # fmt: skip
    assert rows[0]["layer"] == "Linear" and rows[0]["norm_dW"] == 0
    with pytest.raises(KeyError, match="initial has no 'weight'"):
        measure.layer_measurements(lin, {}, torch.randn(5, 4))
    # a wrong-shaped start would broadcast into ‖ΔW‖ = ‖W‖: refused
    for start, got in ((torch.zeros(1), r"\(1,\)"), (torch.zeros(4, 3), r"\(4, 3\)"),
                       (None, "NoneType")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"initial\['weight'\] has shape {got}, the "
                                             r"layer's weight \(3, 4\)"):
            measure.layer_measurements(lin, {"weight": start}, torch.randn(5, 4))
    with pytest.raises(ValueError, match="positive, finite learning rates"):
        lr_transfer(lambda w, lr: None, [8], [0.0], progress=False)


def test_layer_measurements_fold_in_the_forward_multipliers():
    """μP in Table 8 form computes the readout as (1/m)·W x: its measured norms are those of
    the map W/m, not of the stored W (at 4× the base width, a factor 4)."""
    from optimal_scaling.norms import rms_to_rms
    from optimal_scaling.parametrization import Parametrization

    par = Parametrization("mup", base_width=32, form="table8")
    model = par.apply(MLP(8, 128, 4, depth=3), torch.Generator().manual_seed(0))
    assert model.output.multiplier == pytest.approx(1 / 4)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.output.weight.add_(0.01 * torch.randn_like(model.output.weight))
    rows = {r["layer"]: r for r in layer_measurements(model, initial, torch.randn(32, 8))}
    W, W0 = model.output.weight.detach(), initial["output.weight"]
    assert rows["output"]["norm_W"] == pytest.approx(rms_to_rms(W).item() / 4, rel=1e-5)
    assert rows["output"]["norm_dW"] == pytest.approx(rms_to_rms(W - W0).item() / 4, rel=1e-4)
    assert rows["hidden.0"]["norm_W"] == pytest.approx(
        rms_to_rms(model.hidden[0].weight.detach()).item(), rel=1e-5)  # multiplier 1


def test_alignment_ratio_needs_fan_in_two_and_is_nan_for_zero_weights():
    with pytest.raises(ValueError, match="fan_in ≥ 2"):
        log_alignment_ratio(torch.ones(3, 1), torch.ones(4, 1))
    assert math.isnan(log_alignment_ratio(torch.zeros(3, 4), torch.randn(5, 4)))
    assert math.isnan(log_alignment_ratio(torch.randn(3, 4), torch.zeros(5, 4)))


def test_layer_measurements_report_each_layers_fan_in_and_fan_out():
    model = MLP(5, 12, 3, depth=3)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = layer_measurements(model, initial, torch.randn(7, 5))
    shapes = {n.removesuffix(".weight"): tuple(p.shape) for n, p in model.named_parameters()
              if p.ndim == 2}  # fmt: skip
    assert rows and {r["layer"] for r in rows} == set(shapes)
    for r in rows:
        assert (r["fan_out"], r["fan_in"]) == shapes[r["layer"]]


def test_linear_inputs_leaves_no_hooks_and_skips_embeddings():
    torch.manual_seed(0)
    model = GPT(vocab_size=11, context=8, width=16, depth=1, n_heads=2)
    idx = torch.randint(0, 11, (2, 8))
    got = linear_inputs(model, idx)
    assert "head" in got and not any(n.startswith(("wte", "wpe")) for n in got)
    assert all(not m._forward_pre_hooks for m in model.modules())
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = layer_measurements(model, initial, idx)  # embeddings take ids, not activations
    assert {r["layer"] for r in rows} == set(got)


def test_norm_sweep_records_the_last_step_and_draws_each_seeds_init():
    df = norm_sweep("mup", [16], steps=3, record_every=2, seeds=(0, 1), d_in=4, depth=2,
                    batch_size=4)  # fmt: skip
    assert sorted(df.step.unique()) == [0, 2, 3]
    init = df[df.step == 0].set_index(["layer", "seed"]).norm_W.unstack("seed")
    assert (init[0] != init[1]).all()  # seed 1 is another initialization


def test_norm_sweep_refuses_settings_that_would_record_nothing():
    kw = {"d_in": 4, "depth": 2, "batch_size": 4}
    for bad, needle in (({"widths": []}, "needs at least one width and one seed"),
                        ({"seeds": ()}, "needs at least one width and one seed"),
                        ({"steps": -1}, "steps must be an int ≥ 0, got -1"),
                        ({"steps": 2.5}, "steps must be an int ≥ 0, got 2.5"),
                        ({"widths": [0]}, "each width must be an int ≥ 1, got 0"),
                        ({"seeds": ["a"]}, "each seed must be an int ≥ 0, got 'a'")):  # fmt: skip
        with pytest.raises(ValueError, match=f"norm_sweep: {needle}"):
            norm_sweep("mup", **{"widths": [8], **kw, **bad})
    for widths in (16, "16"):
        with pytest.raises(TypeError, match="norm_sweep: widths must be a list of ints"):
            norm_sweep("mup", widths, **kw)
    # steps=0 is the initialization alone
    assert norm_sweep("mup", [8], steps=0, **kw).step.unique().tolist() == [0]


def test_plot_norms_names_the_steps_the_table_has():
    df = norm_sweep("mup", [8, 16], steps=2, d_in=4, depth=2, batch_size=4)
    with pytest.raises(ValueError, match=r"plot_norms: no rows at step 999; the table has steps "
                                         r"\[0, 1, 2\]"):  # fmt: skip
        plot_norms(df, step=999)
    with pytest.raises(ValueError, match="plot_norms: the table is empty"):
        plot_norms(df.iloc[:0])
    with pytest.raises(ValueError, match=r"plot_norms: missing columns \['norm_dW'\]"):
        plot_norms(df.drop(columns="norm_dW"))
    assert plot_norms(df).layout.title.text == "natural norms at step 2"  # the last by default
    assert len(plot_norms(df, step=1).data) > 0


def test_width_slopes_need_two_widths_with_positive_values():
    one = pd.DataFrame({"parametrization": "sp", "layer": "l", "step": 0, "width": [64],
                        "norm_W": [2.0], "norm_dW": [1.0]})  # fmt: skip
    assert width_slopes(one).isna()[["norm_W", "norm_dW"]].all(axis=None)
    two = pd.DataFrame({"parametrization": "sp", "layer": "l", "step": 0, "width": [64, 256],
                        "norm_W": [2.0, 8.0], "norm_dW": [0.0, 0.0]})  # fmt: skip
    got = width_slopes(two).iloc[0]
    assert got.norm_W == pytest.approx(1.0) and math.isnan(got.norm_dW)
    # a zero (no update yet) at one width is left out; the other two still give a slope
    three = pd.DataFrame({"parametrization": "sp", "layer": "l", "step": 0,
                          "width": [16, 64, 256], "norm_W": [1.0, 2.0, 4.0],
                          "norm_dW": [0.0, 1.0, 4.0]})  # fmt: skip
    got = width_slopes(three).iloc[0]
    assert got.norm_W == pytest.approx(0.5) and got.norm_dW == pytest.approx(1.0)
    with pytest.raises(ValueError, match="width_slopes: the table is empty"):
        width_slopes(three.iloc[:0])
    with pytest.raises(ValueError, match=r"width_slopes: missing columns \['width'\]"):
        width_slopes(three.drop(columns="width"))
