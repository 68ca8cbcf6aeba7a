import math

import pytest
import torch
from torch import nn

from optimal_scaling.data import TeacherTask
from optimal_scaling.models import MLP
from optimal_scaling.train import evaluate, mse, train


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
