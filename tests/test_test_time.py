"""pass@k and majority@k against brute-force enumeration; sampling from a GPT."""

import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from optimal_scaling import test_time as tt
from optimal_scaling.models import GPT


def brute_pass(n, c, k):
    right = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(right[i] for i in s) for s in subsets) / len(subsets)


def brute_majority(answers, correct, k):
    """Exact majority@k: every k-subset, ties split evenly."""
    total, subsets = 0.0, list(itertools.combinations(range(len(answers)), k))
    for s in subsets:
        counts = Counter(answers[i] for i in s)
        top = [a for a, m in counts.items() if m == max(counts.values())]
        total += (correct in top) / len(top)
    return total / len(subsets)


def test_pass_at_k_equals_the_fraction_of_k_subsets_holding_a_right_answer():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                got = tt.pass_at_k(np.array([n]), np.array([c]), k)[0]
                assert got == pytest.approx(brute_pass(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_1_is_the_fraction_right_and_the_edges_are_exact():
    n, c = np.array([64, 64, 64, 10]), np.array([0, 7, 64, 3])
    np.testing.assert_allclose(tt.pass_at_k(n, c, 1), c / n)
    np.testing.assert_allclose(tt.pass_at_k(n, c, 10)[[0, 2]], [0.0, 1.0])
    assert tt.pass_at_k(np.array([10]), np.array([3]), 8)[0] == 1.0  # n − c < k


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="1 ≤ k ≤ n"):
        tt.pass_at_k(np.array([4]), np.array([1]), 5)
    with pytest.raises(ValueError, match="0 ≤ c ≤ n"):
        tt.pass_at_k(np.array([4]), np.array([5]), 2)
    with pytest.raises(TypeError, match="must be integers"):
        tt.pass_at_k(np.array([4.0]), np.array([1.0]), 2)
    with pytest.raises(ValueError, match="1 ≤ k ≤ n, got k=True"):  # a bool is no count
        tt.pass_at_k(np.array([4]), np.array([1]), True)
    with pytest.raises(ValueError, match="do not broadcast"):
        tt.pass_at_k(np.array([4, 4]), np.array([1, 1, 1]), 2)
    with pytest.raises(ValueError, match="min n=none"):
        tt.pass_at_k(np.array([], int), np.array([], int), 0)


def test_majority_at_k_estimates_the_exact_vote_including_ties():
    rng = np.random.default_rng(0)
    answers = rng.integers(0, 3, (12, 7))
    correct = rng.integers(0, 3, 12)
    for k in (1, 2, 3, 7):
        pairs = zip(answers, correct, strict=True)
        exact = np.array([brute_majority(list(a), c, k) for a, c in pairs])
        est = tt.majority_at_k(answers, correct, k, draws=4000, seed=1)
        assert np.abs(est - exact).max() < 0.05, k  # 4,000 draws: SE ≤ 0.008 per problem
        if k == 7:  # every sample used: no randomness but tie-breaking, which is exact
            np.testing.assert_allclose(est, exact, atol=1e-12)


def test_majority_vote_never_finds_an_answer_that_is_not_among_the_samples():
    answers = np.array([[1, 1, 2, 3], [5, 5, 5, 5]])
    est = tt.majority_at_k(answers, np.array([9, 5]), 2, draws=50)
    np.testing.assert_allclose(est, [0.0, 1.0])


def test_majority_at_k_rejects_bad_shapes_and_k():
    with pytest.raises(ValueError, match="answers must be"):
        tt.majority_at_k(np.zeros((3, 4)), np.zeros(2), 1)
    with pytest.raises(ValueError, match="1 ≤ k ≤ n = 4"):
        tt.majority_at_k(np.zeros((3, 4)), np.zeros(3), 5)
    with pytest.raises(ValueError, match="draws must be an int ≥ 1"):
        tt.majority_at_k(np.zeros((3, 4)), np.zeros(3), 2, draws=0)


def test_majority_at_k_names_a_bad_seed():
    answers, correct = np.array([[1, 2, 1, 1], [3, 3, 2, 1]]), np.array([1, 3])
    for seed in ("x", -1, 1.5):
        with pytest.raises(ValueError, match="majority_at_k: seed must be an int ≥ 0"):
            tt.majority_at_k(answers, correct, 2, seed=seed)
    with pytest.raises(ValueError, match="scaling_table: seed must be an int ≥ 0, got 'x'"):
        tt.scaling_table(answers, correct, [2], seed="x")
    # a numpy integer is a seed like any other
    np.testing.assert_array_equal(tt.majority_at_k(answers, correct, 2, seed=np.int64(3)),
                                  tt.majority_at_k(answers, correct, 2, seed=3))  # fmt: skip


def test_scaling_table_reports_both_scores_for_every_k():
    answers = np.array([[1, 2, 1, 1], [3, 3, 4, 4], [0, 0, 0, 0]])
    correct = np.array([2, 4, 1])
    t = tt.scaling_table(answers, correct, [1, 2, 4], draws=2000)
    assert list(t.k) == [1, 2, 4]
    assert t.pass_at_k[0] == pytest.approx((1 / 4 + 2 / 4 + 0) / 3)
    assert t.pass_at_k[2] == pytest.approx(2 / 3)
    exact4 = np.mean([brute_majority(list(a), c, 4) for a, c in zip(answers, correct,
                                                                     strict=True)])  # fmt: skip
    assert t.majority_at_k[2] == pytest.approx(exact4)  # = (0 + 1/2 + 0)/3
    # the standard error over the 3 problems: pass@1 per problem is 1/4, 2/4, 0
    per_problem = np.array([1 / 4, 2 / 4, 0.0])
    sem = np.sqrt(((per_problem - per_problem.mean()) ** 2).sum() / 2) / np.sqrt(3)
    assert t.pass_at_k_sem[0] == pytest.approx(sem)
    assert np.isnan(tt.scaling_table(answers[:1], correct[:1], [1]).pass_at_k_sem[0])  # one


def test_scaling_table_wants_a_non_empty_list_of_ks_and_some_problems():
    answers, correct = np.array([[1, 2, 1, 1], [3, 3, 4, 4]]), np.array([2, 4])
    for ks in (4, "12"):  # one k or a string is not a list of ks
        with pytest.raises(TypeError, match="scaling_table: ks must be a list of ints"):
            tt.scaling_table(answers, correct, ks)
    with pytest.raises(ValueError, match="scaling_table: ks is empty"):
        tt.scaling_table(answers, correct, [])
    with pytest.raises(ValueError, match="scaling_table: answers hold no problems"):
        tt.scaling_table(answers[:0], correct[:0], [1])
    # any iterable of ints still works: pass@1 = (1/4 + 2/4) / 2
    t = tt.scaling_table(answers, correct, np.array([1, 4]), draws=10)
    assert list(t.k) == [1, 4] and t.pass_at_k[0] == pytest.approx(3 / 8)


def _tiny_gpt():
    torch.manual_seed(0)
    return GPT(vocab_size=7, context=6, width=16, depth=1, n_heads=2)


def test_greedy_generation_appends_the_argmax_token_by_token():
    model = _tiny_gpt()
    x = torch.randint(7, (5, 2), generator=torch.Generator().manual_seed(1))
    out = model.generate(x, 3, temperature=0)
    assert out.shape == (5, 5) and torch.equal(out[:, :2], x)
    seq = x
    for _ in range(3):
        seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)
    assert model.training  # the mode is restored
    long = model.generate(x, 8, temperature=0)  # beyond the context: reads the last 6 tokens
    seq = x
    for _ in range(8):
        seq = torch.cat([seq, model(seq[:, -6:])[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert long.shape == (5, 10) and torch.equal(long, seq)
    with pytest.raises(ValueError, match="at least|time ≥ 1"):  # an empty prompt
        model.generate(x[:, :0], 3)


def test_sampling_follows_the_softmax_and_is_reproducible():
    model = _tiny_gpt()
    x = torch.zeros(1, 3, dtype=torch.long)
    probs = torch.softmax(model.eval()(x)[0, -1] / 0.7, -1)
    draws = model.generate(x.repeat(20_000, 1), 1, temperature=0.7,
                           generator=torch.Generator().manual_seed(2))[:, -1]  # fmt: skip
    freq = torch.bincount(draws, minlength=7).double() / 20_000
    assert torch.allclose(freq, probs.double(), atol=4 * (0.25 / 20_000) ** 0.5)
    a = tt.sample_answers(model, torch.zeros(3, 2, dtype=torch.long), 2, 4, seed=5)
    b = tt.sample_answers(model, torch.zeros(3, 2, dtype=torch.long), 2, 4, seed=5)
    assert a.shape == (3, 4, 2) and torch.equal(a, b)
    prompts = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 0]])
    greedy = tt.sample_answers(model, prompts, 2, 4, temperature=0)
    assert (greedy == greedy[:, :1]).all()  # temperature 0: every sample the same
    assert len({tuple(row[0].tolist()) for row in greedy}) == 4  # distinct answers here
    for i, prompt in enumerate(prompts):  # … and each row belongs to its own prompt
        assert torch.equal(greedy[i, 0], model.generate(prompt[None], 2, temperature=0)[0, 2:])
    tiny = model.generate(prompts, 2, temperature=1e-30, generator=torch.Generator())
    assert torch.equal(tiny, model.generate(prompts, 2, temperature=0))  # no overflow to NaN
    with pytest.raises(ValueError, match="temperature must be finite and ≥ 0, got -1.0"):
        model.generate(x, 1, temperature=-1.0)
    with pytest.raises(ValueError, match="prompts must be"):
        tt.sample_answers(model, torch.zeros(3, dtype=torch.long), 2, 4)


def test_majority_and_scaling_table_name_bad_k_and_counts():
    answers, correct = np.zeros((3, 4), dtype=int), np.zeros(3, dtype=int)
    with pytest.raises(ValueError, match="1 ≤ k ≤ n = 4, got 0"):
        tt.majority_at_k(answers, correct, 0)
    with pytest.raises(ValueError, match="each k must be an int, got 1.7"):
        tt.scaling_table(answers, correct, [1.7])
    with pytest.raises(ValueError, match="0 ≤ c ≤ n"):
        tt.pass_at_k(np.array([4, 4]), np.array([1, -1]), 2)


def test_sample_answers_uses_its_seed_and_names_empty_requests():
    torch.manual_seed(0)
    model = GPT(vocab_size=7, context=8, width=16, depth=1, n_heads=2)
    prompts = torch.zeros(3, 2, dtype=torch.long)
    a = tt.sample_answers(model, prompts, 3, 8, seed=5)
    assert torch.equal(a, tt.sample_answers(model, prompts, 3, 8, seed=5))
    assert not torch.equal(a, tt.sample_answers(model, prompts, 3, 8, seed=6))
    for length, samples, needle in ((3, 0, "samples must be an int ≥ 1, got 0"),
                                    (0, 2, "length must be an int ≥ 1, got 0"),
                                    (3, 2.5, "samples must be an int ≥ 1, got 2.5"),
                                    ("3", 2, "length must be an int ≥ 1, got '3'")):  # fmt: skip
        with pytest.raises(ValueError, match=f"sample_answers: {needle}"):
            tt.sample_answers(model, prompts, length, samples)
