"""Addition as a language, and one model's predictions scored three ways."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from optimal_scaling import emergence as em
from optimal_scaling.data import IGNORE, AdditionTask
from optimal_scaling.models import GPT


@pytest.mark.parametrize("digits", [1, 3, 7])
def test_addition_problems_add_up_and_batches_score_only_the_answer(digits):
    task = AdditionTask(digits)
    prompt, answer = task.problems(500, torch.Generator().manual_seed(0))
    assert prompt.shape == (500, 2 * digits + 2) and answer.shape == (500, digits + 1)
    a, b = task.value(prompt[:, :digits]), task.value(prompt[:, digits + 1 : 2 * digits + 1])
    assert torch.equal(task.value(answer), a + b)
    assert (prompt[:, digits] == task.PLUS).all() and (prompt[:, -1] == task.EQUALS).all()
    assert a.max() < 10**digits and len(torch.unique(a)) > min(10**digits, 500) // 2
    x, y = task.batch(500, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (500, task.context)
    assert torch.equal(x[:, : task.prompt_len], prompt)  # same generator, same problems
    assert (y[:, : task.prompt_len - 1] == IGNORE).all()
    assert torch.equal(y[:, task.prompt_len - 1 :], answer)


def test_addition_task_rejects_bad_sizes():
    for bad in (0, 19, 2.0, True):
        with pytest.raises(ValueError, match="digits must be an int in"):
            AdditionTask(bad)
    with pytest.raises(ValueError, match="n must be ≥ 1"):
        AdditionTask(2).problems(0, torch.Generator())


class Lookup(torch.nn.Module):
    """A 'model' whose logits are fixed in advance."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_answer_metrics_match_their_definitions_on_planted_logits():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(12, (6, 5), generator=g)
    y[:, :2] = IGNORE  # three scored tokens per row
    logits = torch.randn(6, 5, 12, generator=g)
    right = torch.zeros(6, 5, dtype=torch.bool)
    right[:3, 2:] = True  # rows 0–2 all right
    right[3, 2] = right[4, 3] = True  # rows 3, 4 one of three; row 5 none
    target = y.clamp(min=0)
    top = logits.max(-1).values + 1.0
    logits[right] = logits[right].scatter(1, target[right][:, None], top[right][:, None])
    wrong = ~right & (y != IGNORE)
    logits[wrong] = logits[wrong].scatter(1, target[wrong][:, None],
                                          logits[wrong].min(-1, keepdim=True).values - 1)
    got = em.answer_metrics(Lookup(logits), torch.zeros(6, 5, dtype=torch.long), y)
    scored = y != IGNORE
    ce = -torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0][scored].mean()
    assert got["token_loss"] == pytest.approx(ce.item(), rel=1e-6)
    assert got["token_accuracy"] == pytest.approx(11 / 18)
    assert got["exact_match"] == pytest.approx(3 / 6)
    # per scored position: 4/6, 4/6 and 3/6 right
    assert got["independent_exact_match"] == pytest.approx(4 / 6 * 4 / 6 * 3 / 6)


def test_teacher_forced_exact_match_is_greedy_decodings_exact_match():
    task = AdditionTask(2)
    torch.manual_seed(0)
    model = GPT(vocab_size=12, context=task.context, width=16, depth=1, n_heads=2)
    prompt, _ = task.problems(200, torch.Generator().manual_seed(1))
    greedy = model.generate(prompt, task.answer_len, temperature=0)[:, task.prompt_len :]
    answer = greedy.clone()
    answer[::2, 1] = (answer[::2, 1] + 1) % 12  # every other answer made wrong in one token
    seq = torch.cat([prompt, answer], dim=1)
    x, y = seq[:, :-1], seq[:, 1:].clone()
    y[:, : task.prompt_len - 1] = IGNORE
    got = em.answer_metrics(model, x, y)
    assert got["exact_match"] == pytest.approx(0.5)
    # unchanged rows are right throughout; a changed row is right before its changed token
    assert got["token_accuracy"] >= 1 - 100 * (task.answer_len - 1) / (200 * task.answer_len)


def test_answer_metrics_rejects_rows_without_a_scored_token_and_bad_shapes():
    model = Lookup(torch.zeros(2, 3, 12))
    with pytest.raises(ValueError, match="some rows score no token"):
        em.answer_metrics(model, torch.zeros(2, 3, dtype=torch.long),
                          torch.tensor([[IGNORE, 1, 2], [IGNORE] * 3]))  # fmt: skip
    with pytest.raises(ValueError, match="same shape"):
        em.answer_metrics(model, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4))


def test_answer_metrics_names_targets_outside_the_vocabulary():
    model, x = Lookup(torch.zeros(2, 3, 12)), torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"answer_metrics: targets must be token ids < 12.*got 15"):
        em.answer_metrics(model, x, torch.tensor([[IGNORE, 1, 15], [IGNORE, 1, 2]]))
    with pytest.raises(ValueError, match="answer_metrics: targets must be token ids ≥ 0.*got -5"):
        em.answer_metrics(model, x, torch.tensor([[IGNORE, 1, -5], [IGNORE, 1, 2]]))
    with pytest.raises(TypeError, match="answer_metrics: y must hold integer token ids"):
        em.answer_metrics(model, x, torch.ones(2, 3))
    y = torch.tensor([[IGNORE, 1, 11], [IGNORE, 1, 2]])  # the largest id is fine
    assert em.answer_metrics(model, x, y)["token_loss"] == pytest.approx(math.log(12))


def test_exact_match_from_accuracy_is_p_to_the_k():
    assert em.exact_match_from_accuracy(0.9, 5) == pytest.approx(0.9**5)
    np.testing.assert_allclose(em.exact_match_from_accuracy(np.array([0.5, 1.0]), 3), [0.125, 1])
    np.testing.assert_allclose(em.exact_match_from_accuracy([0.5, 0.9], 2), [0.25, 0.81])
    with pytest.raises(ValueError, match="k must be an int ≥ 1"):
        em.exact_match_from_accuracy(0.5, 0)


def test_sharpness_of_a_planted_logistic_in_log_compute():
    x = np.geomspace(1e6, 1e12, 6001)
    for s in (1.0, 4.0):
        rise = pd.DataFrame({"flops": x, "acc": 1 / (1 + np.exp(-s * (np.log(x) - np.log(1e9))))})
        # 10% → 90% of a logistic in u = log x spans 2·ln 9 / s
        assert em.sharpness(rise, "acc") == pytest.approx(2 * math.log(9) / s, rel=1e-2)
        fall = rise.assign(acc=1 - rise.acc)  # a loss falls the same way
        assert em.sharpness(fall, "acc") == pytest.approx(2 * math.log(9) / s, rel=1e-2)
    assert math.isnan(em.sharpness(pd.DataFrame({"flops": [1, 2], "acc": [0.3, 0.3]}), "acc"))
    # a leading NaN (a row not scored yet) is skipped, not read as an infinitely sharp rise
    late = pd.concat([pd.DataFrame({"flops": [1e5], "acc": [np.nan]}), rise])
    assert em.sharpness(late, "acc") == pytest.approx(em.sharpness(rise, "acc"))
    for bad, needle in (({"hi": 1.5}, "0 < lo < hi ≤ 1"), ({"by": "tokens"}, "missing"),
                        ({"lo": 0.5, "hi": 0.2}, "0 < lo < hi")):  # fmt: skip
        with pytest.raises(ValueError, match=needle):
            em.sharpness(rise, "acc", **bad)


def test_a_small_gpt_learns_one_digit_addition_and_the_table_counts_compute():
    runs = em.addition_runs(widths=(32,), digits=1, steps=300, every=100, eval_problems=400)
    t = runs.table
    assert list(t.step) == [100, 200, 300]
    assert (t.tokens == t.step * 64 * 2).all()
    assert (t.flops == 6 * t.params * t.tokens).all()
    assert t.params.iloc[0] == runs.models[32].num_params()
    assert t.exact_match.iloc[-1] > 0.9  # 1-digit addition is easy for this model
    assert runs.baseline == pytest.approx((0.1 + 0.55) / 2, abs=0.05)  # carry: 45 of 100 sums
    # Π_j p_j ≤ (mean p)^k (AM–GM), equality when every position is equally hard
    assert (t.independent_exact_match <= t.token_accuracy**2 + 1e-9).all()
    snap = runs.model_at(32, 100)
    x, y = runs.task.batch(400, torch.Generator().manual_seed(10_000))
    metrics = em.answer_metrics(snap, x, y)
    assert metrics["exact_match"] == pytest.approx(t.exact_match.iloc[0])
    # Π_j p_j written out: each scored position's accuracy, multiplied
    with torch.no_grad():
        pred = snap.eval()(x).argmax(-1)
    scored = y != em.IGNORE
    cols = scored.any(0)
    p_j = ((pred == y) & scored).sum(0)[cols].double() / scored.sum(0)[cols]
    assert len(p_j) == 2 and metrics["independent_exact_match"] == pytest.approx(
        p_j.prod().item())
    assert t.independent_exact_match.iloc[0] == pytest.approx(p_j.prod().item())
    with pytest.raises(KeyError, match=r"evaluated steps are \[100, 200, 300\]"):
        runs.model_at(32, 150)


def test_addition_runs_rejects_bad_settings():
    with pytest.raises(ValueError, match="each width must be an int ≥ 2, got 1"):
        em.addition_runs(widths=(1,), steps=2, every=1)
    with pytest.raises(ValueError, match="every ≤ steps"):
        em.addition_runs(widths=(8,), steps=2, every=5)


def test_addition_runs_wants_a_list_of_int_widths_and_int_steps():
    for widths in ("16", 16):  # a string is not a list of widths
        with pytest.raises(TypeError, match="addition_runs: widths must be a list of ints"):
            em.addition_runs(widths=widths, steps=2, every=1)
    with pytest.raises(ValueError, match="addition_runs: widths is empty"):
        em.addition_runs(widths=[], steps=2, every=1)
    with pytest.raises(ValueError, match="addition_runs: each width must be an int ≥ 2, got 8.5"):
        em.addition_runs(widths=[8.5], steps=2, every=1)
    with pytest.raises(ValueError, match="addition_runs: steps must be an int ≥ 1, got 2.5"):
        em.addition_runs(widths=(8,), steps=2.5, every=1)


def test_training_loss_counts_only_the_answer_tokens():
    from optimal_scaling.train import cross_entropy

    task = AdditionTask(3)
    x, y = task.batch(16, torch.Generator().manual_seed(0))
    logits = torch.randn(*x.shape, task.vocab_size, generator=torch.Generator().manual_seed(1))
    answer = slice(task.prompt_len - 1, None)
    by_hand = -torch.log_softmax(logits[:, answer], -1).gather(-1, y[:, answer, None]).mean()
    assert cross_entropy(logits, y).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_decode_rejects_answers_with_non_digit_tokens():
    task = AdditionTask(4)
    answers = torch.tensor([[1, 1, 0, 0, 0], [11, 0, 0, 0, 0], [1, 10, 0, 0, 0], [9, 9, 9, 9, 1]])
    assert task.decode(answers).tolist() == [11, -1, -1, 19999]
    _, right = task.problems(50, torch.Generator().manual_seed(0))
    assert torch.equal(task.decode(right), task.value(right))
    with pytest.raises(ValueError, match="not a digit"):
        task.value(answers)


def test_frequency_baseline_is_the_plateau_a_prompt_blind_model_reaches():
    y = torch.tensor([[IGNORE, 1, 2], [IGNORE, 1, 3], [IGNORE, 4, 3], [IGNORE, 1, 3]])
    assert em.frequency_baseline(y) == pytest.approx((3 + 3) / 8)
    # k-digit addition: each of the k low digits is uniform (0.1), the final carry ≈ ½ either way
    _, y = AdditionTask(3).batch(40_000, torch.Generator().manual_seed(0))
    assert em.frequency_baseline(y) == pytest.approx((0.1 * 3 + 0.5) / 4, abs=0.005)


def test_per_position_accuracy_divides_by_the_rows_that_score_it():
    y = torch.tensor([[IGNORE, 1, 2], [IGNORE, IGNORE, 3]])
    logits = torch.nn.functional.one_hot(y.clamp(min=0), 5).float()  # every token right
    got = em.answer_metrics(Lookup(logits), torch.zeros_like(y), y)
    assert got["independent_exact_match"] == 1.0 and got["exact_match"] == 1.0
    # a position scored by one row only still counts: one hit per position of 3 scored tokens
    assert em.frequency_baseline(torch.tensor([[5, 1], [6, IGNORE]])) == pytest.approx(2 / 3)


def test_frequency_baseline_names_its_own_argument_and_wants_integer_targets():
    y = torch.tensor([[IGNORE, 1, 2], [IGNORE, 1, 3]])
    assert em.frequency_baseline(y.int()) == pytest.approx(3 / 4)  # any integer dtype
    with pytest.raises(ValueError, match=r"frequency_baseline: y must be \(batch, time\), got"):
        em.frequency_baseline(y[0])
    with pytest.raises(TypeError, match="frequency_baseline: y must hold integer token ids"):
        em.frequency_baseline(y.float())
    with pytest.raises(ValueError, match="frequency_baseline: targets must be token ids ≥ 0"):
        em.frequency_baseline(torch.tensor([[IGNORE, -3], [IGNORE, 1]]))


def test_sharpness_sorts_the_rows_by_compute_first():
    x = np.geomspace(1e6, 1e12, 61)
    rise = pd.DataFrame({"flops": x, "acc": 1 / (1 + np.exp(-2 * (np.log(x) - np.log(1e9))))})
    shuffled = rise.sample(frac=1.0, random_state=0)
    assert em.sharpness(shuffled, "acc") == pytest.approx(em.sharpness(rise, "acc"))


def test_sharpness_of_a_metric_that_ends_where_it_started():
    """It moved, so not NaN: the extreme farther from the start is its best value."""
    dip = pd.DataFrame({"flops": [1, 10, 100, 1000.0], "loss": [1.0, 0.6, 0.5, 1.0]})
    # 10 % of the way to 0.5 first at flops 10, 90 % first at flops 100: ln 10
    assert em.sharpness(dip, "loss") == pytest.approx(math.log(10))
    bump = dip.assign(loss=2 - dip.loss)  # the mirror image: the maximum is the best value
    assert em.sharpness(bump, "loss") == pytest.approx(math.log(10))
    assert math.isnan(em.sharpness(dip.assign(loss=1.0), "loss"))  # never moves


def test_sharpness_sorts_compute_stored_as_text_by_value():
    table = pd.DataFrame({"flops": [1, 2, 5, 10, 20, 50, 100],
                          "acc": [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0]})  # fmt: skip
    # 10 % is first reached at flops 2, 90 % at flops 10: ln(10 / 2)
    assert em.sharpness(table, "acc") == pytest.approx(math.log(5))
    as_text = table.assign(flops=table.flops.astype(str)).sample(frac=1.0, random_state=0)
    assert em.sharpness(as_text, "acc") == pytest.approx(math.log(5))  # not "10" < "2"
    with pytest.raises(TypeError, match="sharpness: columns 'acc' and 'flops' must hold numbers"):
        em.sharpness(table.assign(flops="lots"), "acc")
    with pytest.raises(TypeError, match="sharpness: expected a pandas DataFrame"):
        em.sharpness(table.to_dict(), "acc")


def test_addition_runs_score_the_last_step_off_the_evaluation_grid():
    runs = em.addition_runs(widths=(8,), digits=1, steps=3, every=2, batch_size=8, depth=1,
                            eval_problems=20)  # fmt: skip
    assert runs.table.step.tolist() == [2, 3] and set(runs.snapshots) == {(8, 2), (8, 3)}


def test_addition_operands_are_uniform_over_all_ten_digits():
    """a, b uniform on [0, 10^k): every digit of both operands is uniform on 0–9."""
    task = AdditionTask(2)
    n = 20_000
    prompt, _ = task.problems(n, torch.Generator().manual_seed(0))
    digits = torch.cat([prompt[:, :2], prompt[:, 3:5]], dim=1)  # a_0 a_1, b_0 b_1
    for col in digits.T:
        freq = torch.bincount(col, minlength=10).double() / n
        sd = math.sqrt(0.1 * 0.9 / n)
        assert freq.shape == (10,) and (freq - 0.1).abs().max() < 6 * sd, freq
