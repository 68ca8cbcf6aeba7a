import math

import numpy as np
import pytest
import torch
from torch import nn

from optimal_scaling import norms
from optimal_scaling.data import MarkovLanguage
from optimal_scaling.models import GPT
from optimal_scaling.optim import Scion, scion_groups
from optimal_scaling.tracking import NormTracker
from optimal_scaling.train import train


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(vocab_size=32, context=8, width=32, depth=1, n_heads=2, mlp_ratio=2,
               norm_before_linear=True)


def batches(model: GPT):
    lang = MarkovLanguage(vocab_size=32, n_train_tokens=4096, n_val_tokens=512, seed=0)
    g = torch.Generator().manual_seed(1)
    return lambda: lang.batch("train", 8, model.config["context"], g)


def exact_norm(W: torch.Tensor, role: str, transpose: bool) -> float:
    W = W.detach().double()
    W = W.mT if transpose else W
    name = {"input": "l1->rms", "hidden": "rms->rms", "output": "rms->inf"}[role]
    return norms.operator_norm(W, name).item()


@pytest.mark.parametrize("preset", ["colnorm-spectral-sign", "colnorm-spectral-rownorm"])
def test_a_tracker_with_scions_preset_sees_updates_of_norm_lr_times_radius(preset):
    model = tiny_gpt()
    opt = Scion(scion_groups(model, preset, lr=0.02, spectral_method="svd"), momentum=1.0)
    tracker = NormTracker(model, every=2, preset=preset)
    result = train(model, opt, batches(model), steps=4, callback=tracker)
    tracked = result.history.dropna(subset=["dW[output]"])
    assert list(tracked["step"]) == [2, 4]  # (an empty frame would pass the next lines)
    for role in ("input", "hidden", "output"):
        assert tracked[f"dW[{role}]"].to_numpy() == pytest.approx(0.02, rel=1e-4), role
    if preset == "colnorm-spectral-rownorm":  # watched in the other preset's output norm
        model = tiny_gpt()
        opt = Scion(scion_groups(model, preset, lr=0.02, spectral_method="svd"), momentum=1.0)
        other = NormTracker(model, every=2, preset="colnorm-spectral-sign")
        result = train(model, opt, batches(model), steps=2, callback=other)
        assert result.history["dW[output]"].dropna().iloc[0] > 1.5 * 0.02  # not γ·ρ
    with pytest.raises(ValueError, match="unknown preset"):
        NormTracker(model, preset="spectral-everywhere")


def test_scion_updates_have_norm_lr_times_radius_and_weights_are_tracked():
    model = tiny_gpt()
    lr, mult, radii = 0.01, {"input": 2.0, "hidden": 1.0, "output": 0.5}, {"output": 3.0}
    groups = scion_groups(model, "colnorm-spectral-rownorm", lr=lr, lr_multipliers=mult,
                          radii=radii, spectral_method="svd")
    opt = Scion(groups, momentum=1.0)
    tracker = NormTracker(model, every=3)
    result = train(model, opt, batches(model), steps=9, callback=tracker)
    tracked = result.history.dropna(subset=["W[hidden]"])
    assert list(tracked["step"]) == [3, 6, 9]
    # unconstrained Scion: every update has norm γ·ρ in its group's norm (the LMO has norm 1)
    for role in ("input", "hidden", "output"):
        expected = lr * mult[role] * radii.get(role, 1.0)
        assert tracked[f"dW[{role}]"].to_numpy() == pytest.approx(expected, rel=1e-4), role
    # weights: the cheap estimates against the exact norms, parameter by parameter
    table = tracker.table
    last = table[table.step == 9].set_index("param")
    params = dict(model.named_parameters())
    for name, (_, role, transpose) in tracker.params.items():
        if role not in ("input", "hidden", "output"):
            continue
        exact = exact_norm(params[name], role, transpose)
        # power iteration (2 warm-started iterations per tracked step) approaches σ_max from below
        tol = 0.03 if role == "hidden" else 1e-5
        assert last.loc[name, "weight"] == pytest.approx(exact, rel=tol), name
        assert last.loc[name, "weight"] <= exact * (1 + 1e-5)


def test_every_step_tracking_and_errors():
    model = tiny_gpt()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = NormTracker(model, every=1, norms={"output": "sign"})
    result = train(model, opt, batches(model), steps=2, callback=tracker)
    assert result.history["dW[output]"].notna().all()  # step 1 too: snapshot at construction
    assert (tracker.table["norm"][tracker.table.role == "output"] == "sign").all()
    gains = tracker.table[tracker.table.role == "gain"]
    assert len(gains) and math.isclose(gains["weight"].iloc[0], 1.0, rel_tol=0.05)
    with pytest.raises(ValueError, match="unknown norm 'frobenius'"):
        NormTracker(model, norms={"hidden": "frobenius"})
    with pytest.raises(ValueError, match="every"):
        NormTracker(model, every=0)
    with pytest.raises(ValueError, match=r"unknown role\(s\) \['outptu'\]"):
        NormTracker(model, norms={"outptu": "sign"})
    with pytest.raises(ValueError, match="cold_iters must be an int ≥ 1"):
        NormTracker(model, cold_iters=-5)
    with pytest.raises(ValueError, match="every must be an int ≥ 1, got 2.5"):
        NormTracker(model, every=2.5)
    NormTracker(model, every=np.int64(3))  # numpy integers are integers


def test_group_norms_are_exact_operator_norms_per_role():
    torch.manual_seed(0)
    model = GPT(vocab_size=40, context=8, width=24, depth=2, n_heads=2)
    got = NormTracker(model).group_norms()
    hidden = max(
        float(torch.linalg.matrix_norm(p.detach(), 2)) * (p.shape[1] / p.shape[0]) ** 0.5
        for name, p in model.named_parameters() if model.param_roles()[name] == "hidden"
    )
    emb = [model.wte.weight.detach().T, model.wpe.weight.detach().T]
    colnorm = max(float((W.pow(2).mean(0)).sqrt().max()) for W in emb)  # max_j RMS(col_j)
    head = model.head.weight.detach()
    rownorm = float(head.norm(dim=1).max()) * head.shape[1] ** 0.5  # max_i √d_in·‖row_i‖₂
    assert got["W[hidden]"] == pytest.approx(hidden, rel=1e-5)
    assert got["W[input]"] == pytest.approx(colnorm, rel=1e-5)
    assert got["W[output]"] == pytest.approx(rownorm, rel=1e-5)
    assert got["W[gain]"] == pytest.approx(1.0)
    assert float(norms.rms_to_inf(head)) == pytest.approx(rownorm, rel=1e-5)


def test_a_diverged_weight_reads_as_nan_instead_of_raising():
    from optimal_scaling.models import GPT

    torch.manual_seed(0)
    model = GPT(vocab_size=32, context=8, width=16, depth=1, n_heads=2)
    tracker = NormTracker(model, every=1)
    with torch.no_grad():
        model.blocks[0].mlp.fc.weight[0, 0] = float("nan")
    row = tracker(1)
    assert math.isnan(row["W[hidden]"]) and not math.isnan(row["W[output]"])
    # the update of that layer is NaN too, and the group's largest update shows it
    assert math.isnan(row["dW[hidden]"]) and not math.isnan(row["dW[output]"])
    assert math.isnan(tracker.group_norms()["W[hidden]"])


def test_the_sign_norm_scales_the_largest_entry_by_d_in():
    """‖W‖_{ℓ1→ℓ∞}·d_in = d_in·max|W_ij| (Sign's norm); a non-square head tells d_in from
    d_out."""
    torch.manual_seed(0)
    model = GPT(vocab_size=40, context=8, width=24, depth=1, n_heads=2)
    got = NormTracker(model, norms={"output": "sign"}).group_norms()
    head = model.head.weight.detach()  # (40, 24): d_in = 24
    assert got["W[output]"] == pytest.approx(24 * head.abs().max().item(), rel=1e-6)


def test_empty_and_scalar_parameters_are_tracked_with_their_norms():
    """A zero-width layer (a map into a 0-dimensional space) has norm 0; a scalar its |x|."""

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.empty = nn.Linear(4, 0)
            self.temperature = nn.Parameter(torch.tensor(-2.0))

    model = Odd()
    tracker = NormTracker(model, every=1)
    with torch.no_grad():
        model.temperature.add_(0.5)
    out = tracker(1)
    rows = tracker.table.set_index("param")
    assert rows.loc["empty.weight", "weight"] == 0.0 and rows.loc["empty.bias", "update"] == 0.0
    assert rows.loc["temperature", "weight"] == 1.5 and rows.loc["temperature", "update"] == 0.5
    assert out["W[gain]"] == 1.5
    group = tracker.group_norms()
    s = torch.linalg.matrix_norm(model.fc.weight.detach(), ord=2).item()  # √(4/4)·σ_max
    assert group["W[hidden]"] == pytest.approx(s, rel=1e-5)
    scion = Scion([{"params": list(model.named_parameters())}], norm="auto").norms()
    assert scion["empty.weight"] == scion["empty.bias"] == 0.0 and scion["temperature"] == 1.5
