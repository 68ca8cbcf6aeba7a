import pytest
import torch

from optimal_scaling.data import TeacherTask
from optimal_scaling.models import MLP


@pytest.mark.parametrize("depth, bias", [(2, True), (3, True), (5, False)])
def test_mlp_parameter_count_matches_formula(depth, bias):
    d_in, w, d_out = 7, 12, 3
    b = int(bias)
    expected = (d_in + b) * w + (depth - 2) * (w + b) * w + (w + b) * d_out
    model = MLP(d_in, w, d_out, depth=depth, bias=bias)
    assert model.num_params() == expected
    assert len(model.hidden) == depth - 2
    assert model(torch.randn(4, d_in)).shape == (4, d_out)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"depth": 1}, "depth counts linear layers"),
        ({"width": 0}, "width must be a positive int"),
        ({"activation": "swish"}, "unknown activation 'swish'"),
    ],
)
def test_mlp_bad_arguments(kwargs, needle):
    args = {"d_in": 3, "width": 4, "d_out": 1, **kwargs}
    with pytest.raises(ValueError, match=needle):
        MLP(**args)


def test_mlp_wrong_input_width():
    with pytest.raises(ValueError, match="last dimension 3"):
        MLP(3, 4, 1)(torch.randn(2, 5))


def test_teacher_task_is_deterministic_and_fresh():
    task = TeacherTask(d_in=8, width=16, seed=3)
    x1, y1 = task.batch(5, torch.Generator().manual_seed(0))
    x2, y2 = task.batch(5, torch.Generator().manual_seed(0))
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and y1.shape == (5, 1)
    x3, _ = task.batch(5, torch.Generator().manual_seed(1))
    assert not torch.equal(x1, x3)
    # the target is the formula in the docstring
    manual = torch.tanh(x1 @ task.W.T) @ task.v
    assert torch.allclose(y1.squeeze(-1), manual)
    with pytest.raises(ValueError, match=r"shape \(batch, 8\)"):
        task(torch.randn(5, 9))
