import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from optimal_scaling.data import TeacherTask
from optimal_scaling.models import MLP
from optimal_scaling.train import TrainResult, cross_entropy, evaluate, mse, train


def setup(lr=1e-2):
    torch.manual_seed(0)
    task = TeacherTask(d_in=8, width=16, seed=0)
    model = MLP(8, 32, 1)
    gen = torch.Generator().manual_seed(0)
    val = [task.batch(128, torch.Generator().manual_seed(9))]
    return model, torch.optim.Adam(model.parameters(), lr=lr), (lambda: task.batch(16, gen)), val


def test_training_lowers_the_loss_and_records_every_step():
    model, opt, batches, val = setup()
    before = evaluate(model, val, mse)
    result = train(model, opt, batches, 50, val_batches=val, loss_fn=mse, eval_every=10)
    h = result.history
    assert list(h.step) == list(range(1, 51))
    assert list(h.tokens) == [16 * s for s in range(1, 51)]
    assert h.val_loss.notna().sum() == 5 and not result.diverged
    assert result.final_val_loss < 0.5 * before
    assert (h.lr == 1e-2).all() and (h.tokens_per_s > 0).all()


def test_nan_loss_marks_the_run_diverged_without_raising():
    model, opt, batches, val = setup()
    with torch.no_grad():
        model.output.weight.fill_(float("nan"))
    result = train(model, opt, batches, 10, val_batches=val, loss_fn=mse)
    assert result.diverged and "non-finite" in result.reason
    assert result.final_loss == math.inf and result.final_val_loss == math.inf


def test_an_update_that_breaks_the_weights_at_the_last_step_is_a_divergence():
    """The training loss is read before each update: only the validation loss sees the last."""
    model, opt, batches, val = setup()

    class Breaks(torch.optim.Adam):
        def step(self, closure=None):
            super().step(closure)
            if self.state[model.output.weight]["step"] == 5:
                with torch.no_grad():
                    model.output.weight.fill_(float("inf"))

    opt = Breaks(model.parameters(), lr=1e-2)
    result = train(model, opt, batches, 5, val_batches=val, loss_fn=mse)
    assert math.isfinite(result.history["loss"].iloc[-1])
    assert result.diverged and result.reason == "step 5: non-finite validation loss"
    assert result.final_val_loss == math.inf and len(result.history) == 5


def test_blowup_marks_the_run_diverged():
    model, opt, batches, val = setup(lr=1e4)
    result = train(model, opt, batches, 50, val_batches=val, loss_fn=mse, blowup=4.0)
    assert result.diverged and "first loss" in result.reason
    assert len(result.history) < 50


def test_scheduler_and_callback():
    model, opt, batches, val = setup()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (1 + s))
    result = train(
        model,
        opt,
        batches,
        3,
        loss_fn=mse,
        scheduler=sched,
        callback=lambda step, m: {"norm": m.output.weight.norm().item()},
    )
    assert result.history.lr.tolist() == pytest.approx([1e-2, 5e-3, 1e-2 / 3])
    assert result.history["norm"].notna().all()


def test_bad_arguments():
    model, opt, batches, _ = setup()
    with pytest.raises(ValueError, match="steps must be"):
        train(model, opt, batches, 0)
    with pytest.raises(ValueError, match="at least one batch"):
        evaluate(model, [])


def test_evaluate_is_the_mean_over_every_batch():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    batches = [(torch.ones(2, 1), torch.full((2, 1), 1.0)),
               (torch.ones(2, 1), torch.full((2, 1), 3.0))]  # MSE 1 and 9 (the model says 0)

    def mse(p, t):
        return ((p - t) ** 2).mean()

    assert evaluate(model, batches, mse) == pytest.approx((1.0 + 9.0) / 2)


def test_blowup_is_relative_to_the_first_loss():
    losses = iter([1.0, 1.5, 2.25, 3.375, 5.0625, 7.6])
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)

    def loss_fn(out, y):
        return out.sum() * 0 + next(losses)

    result = train(model, opt, lambda: (torch.ones(1, 1), torch.ones(1, 1)), 6, loss_fn=loss_fn,
                   blowup=4.0)
    assert result.diverged and result.reason == "step 5: loss 5.06 > 4 × first loss 1"


def _constant_losses(values):
    losses = iter(values)

    def loss_fn(out, y):
        return out.sum() * 0 + next(losses)

    return loss_fn


def test_blowup_is_strict_and_the_diverging_step_is_recorded():
    """Diverged when the loss *exceeds* blowup × first loss (equal is fine); the diverging step
    is the history's last row, with its loss. (Kills: ≥; the diverging row missing.)"""
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    batch = (torch.ones(1, 1), torch.ones(1, 1))
    ok = train(model, opt, lambda: batch, 3, loss_fn=_constant_losses([1.0, 4.0, 4.0]), blowup=4.0)
    assert not ok.diverged and len(ok.history) == 3
    bad = train(model, opt, lambda: batch, 3, loss_fn=_constant_losses([1.0, 2.0, 4.5]),
                blowup=4.0)  # fmt: skip
    assert bad.diverged and list(bad.history.step) == [1, 2, 3]
    assert bad.history.loss.iloc[-1] == 4.5 and bad.history.tokens.iloc[-1] == 2
    with pytest.raises(ValueError, match="blowup must be a number > 1"):
        train(model, opt, lambda: batch, 1, blowup=1.0)


def test_every_training_step_runs_in_train_mode():
    """train() sets train mode at the start and again after each evaluation (evaluate leaves eval
    mode). (Kills: train mode not restored after eval; not set at the start.)"""
    model = nn.Sequential(nn.Linear(2, 1))
    model.eval()
    modes = []
    batch = (torch.randn(4, 2), torch.randn(4, 1))

    def batches():
        modes.append(model.training)
        return batch

    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    train(model, opt, batches, 3, val_batches=[batch], loss_fn=mse, eval_every=1)
    assert modes == [True, True, True]


def test_each_step_uses_only_its_own_gradient():
    """SGD on L(w) = (w − 1)²: w ← w − η·2(w − 1) each step, gradients not accumulated.
    (Kills: zero_grad dropped.)"""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.ones(1, 1), torch.ones(1, 1))
    seen = []
    train(model, opt, lambda: batch, 3, loss_fn=mse,
          callback=lambda step, m: seen.append(m.weight.item()))  # fmt: skip
    w, want = 3.0, []
    for _ in range(3):
        w -= 0.1 * 2 * (w - 1)
        want.append(w)
    assert seen == pytest.approx(want, rel=1e-6)


def test_evaluate_builds_no_graph():
    """evaluate runs under no_grad: its losses carry no autograd graph. (Kills: no_grad
    dropped.)"""
    model = nn.Linear(2, 1)
    seen = []

    def loss_fn(out, y):
        loss = mse(out, y)
        seen.append(loss.requires_grad)
        return loss

    evaluate(model, [(torch.randn(3, 2), torch.randn(3, 1))] * 2, loss_fn)
    assert seen == [False, False]


def test_final_val_loss_is_the_last_evaluation():
    """final_val_loss: the last validation loss recorded (NaN if never evaluated).
    (Kills: the first one.)"""
    hist = pd.DataFrame({"step": [1, 2, 3, 4], "loss": [4.0, 3.0, 2.0, 1.0],
                         "val_loss": [np.nan, 2.5, np.nan, 1.25]})  # fmt: skip
    assert TrainResult(hist).final_val_loss == 1.25
    assert math.isnan(TrainResult(hist.drop(columns="val_loss")).final_val_loss)


def test_losses_match_their_formulas():
    """cross_entropy: mean over all positions of −log softmax(logits)[target]; mse: mean of
    (pred − target)². (Kills: summed cross-entropy; L1 for mse.)"""
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(2, 3, 5, generator=g), torch.randint(0, 5, (2, 3), generator=g)
    logp = logits - logits.exp().sum(-1, keepdim=True).log()
    want = -logp.gather(-1, targets[..., None]).mean()
    assert cross_entropy(logits, targets).item() == pytest.approx(want.item(), rel=1e-6)
    pred, target = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    assert mse(pred, target).item() == pytest.approx((pred - target).pow(2).mean().item(),
                                                     rel=1e-6)  # fmt: skip


def test_a_combined_optimizer_takes_one_scheduler_per_member():
    """Muon + AdamW is no torch Optimizer; a list of schedulers, one per member, drives it."""
    from optimal_scaling.models import GPT
    from optimal_scaling.optim import muon_with_adamw

    torch.manual_seed(0)
    model = GPT(vocab_size=16, context=4, width=16, depth=1, n_heads=2, mlp_ratio=2)
    opt = muon_with_adamw(model, lr=0.02, adamw_lr=1e-3)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.5**s) for o in opt.optimizers]
    x = torch.randint(0, 16, (4, 4))
    result = train(model, opt, lambda: (x, x), 3, scheduler=scheds)
    assert result.history.lr.tolist() == pytest.approx([0.02, 0.01, 0.005])  # Muon's group
    assert opt.optimizers[1].param_groups[0]["lr"] == pytest.approx(1e-3 / 8)
    with pytest.raises(TypeError, match="scheduler must be an LR scheduler.*got float"):
        train(model, opt, lambda: (x, x), 1, scheduler=[0.5])
