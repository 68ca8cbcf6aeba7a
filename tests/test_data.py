"""Token data sources: the Markov language's entropy, batches, the byte corpus, token shards."""

from __future__ import annotations

import json
import math
import os
import sysconfig
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from optimal_scaling import data
from optimal_scaling.data import MarkovLanguage, TokenData, byte_corpus, token_shards

# ------------------------------------------------------------------------------ helpers


def next_token_matrix(lang: MarkovLanguage) -> np.ndarray:
    """Dense q(c | s), shape (n_states, V), built from the chain's public structure."""
    V = lang.vocab_size
    q = np.full((lang.n_states, V), lang.restart / V)
    rows = np.arange(lang.n_states)[:, None]
    np.add.at(q, (rows, lang.successors), (1 - lang.restart) * lang.rank_probs)
    return q


def states_of(tokens: np.ndarray, lang: MarkovLanguage) -> np.ndarray:
    """The state before each target x_t, t = order, …, n − 1 (most recent token last)."""
    x = tokens.astype(np.int64)
    k, n = lang.order, len(tokens)
    return sum(x[i : n - k + i] * lang.vocab_size ** (k - 1 - i) for i in range(k))


def inside_segments(lang: MarkovLanguage, n: int) -> np.ndarray:
    """Mask over targets t = order, …, n − 1: True where the whole state lies in t's segment."""
    t = np.arange(lang.order, n)
    return t % lang.segment_length >= lang.order


SMALL = {"n_train_tokens": 2**16, "n_val_tokens": 2**12}
CHAINS = [
    pytest.param({}, id="order1-default"),
    pytest.param({"order": 2, "vocab_size": 24, "branching": 5}, id="order2"),
    pytest.param({"order": 2, "vocab_size": 20, "restart": 0.0, **SMALL}, id="order2-no-restart"),
    pytest.param({"vocab_size": 50, "branching": 3, "restart": 0.0, **SMALL}, id="order1-sparse"),
]

# ---------------------------------------------------------------------- Markov language


@pytest.mark.parametrize("kwargs", CHAINS)
def test_stationary_distribution_is_a_fixed_point(kwargs):
    lang = MarkovLanguage(seed=1, **kwargs)
    pi, q, V = lang.stationary, next_token_matrix(lang), lang.vocab_size
    assert pi.shape == (V**lang.order,) and (pi >= 0).all()
    assert pi.sum() == pytest.approx(1.0, abs=1e-12)
    # (πQ)(rest, c) = Σ_a π(a, rest)·q(c | a, rest): the dense product, computed independently
    pi_next = (pi[:, None] * q).reshape(V, -1, V).sum(axis=0).ravel()
    np.testing.assert_allclose(pi_next, pi, rtol=0, atol=1e-12)
    np.testing.assert_allclose(lang.step_distribution(pi), pi_next, rtol=0, atol=1e-14)


@pytest.mark.parametrize("kwargs", CHAINS)
def test_entropy_rate_is_the_formula_and_the_measured_loss(kwargs):
    lang = MarkovLanguage(seed=2, **kwargs)
    q = next_token_matrix(lang)
    with np.errstate(divide="ignore", invalid="ignore"):
        state_entropy = -np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)
    assert lang.entropy_rate() == pytest.approx(lang.stationary @ state_entropy, rel=1e-10)
    assert lang.irreducible_loss == lang.entropy_rate()
    # the empirical mean of −log q(x_t | state) over the generated stream, inside segments
    x = np.asarray(lang.train)
    inside = inside_segments(lang, len(x))  # leave out the seams between segments
    logq = np.log(q[states_of(x, lang)[inside], x[lang.order :][inside]])
    assert np.isfinite(logq).all()
    assert -logq.mean() == pytest.approx(lang.entropy_rate(), rel=0.01)
    np.testing.assert_allclose(lang.log_prob(x)[inside], logq, rtol=1e-12)


def test_restarts_leave_the_successors_at_the_expected_rate():
    lang = MarkovLanguage(vocab_size=64, branching=4, restart=0.02, seed=3)
    x = np.asarray(lang.train)
    nxt = x[1:][inside_segments(lang, len(x))]
    succ = lang.successors[states_of(x, lang)[inside_segments(lang, len(x))]]
    outside = ~(succ == nxt[:, None].astype(np.int64)).any(axis=1)
    rate = lang.restart * (1 - lang.branching / lang.vocab_size)  # a restart missing them
    sd = math.sqrt(rate * (1 - rate) / len(nxt))
    assert abs(outside.mean() - rate) < 5 * sd


@pytest.mark.parametrize("order", [1, 2])
def test_without_restarts_every_transition_is_an_allowed_successor(order):
    lang = MarkovLanguage(vocab_size=32, order=order, restart=0.0, seed=4, **SMALL)
    for x in (np.asarray(lang.train), np.asarray(lang.val)):
        inside = inside_segments(lang, len(x))
        succ = lang.successors[states_of(x, lang)[inside]]
        nxt = x[order:][inside].astype(np.int64)
        hits = succ == nxt[:, None]
        assert hits.any(axis=1).all()
        # and successor k is taken with probability p_k ∝ k^(−zipf)
        freq = hits.mean(axis=0)
        sd = np.sqrt(lang.rank_probs * (1 - lang.rank_probs) / len(nxt))
        assert (np.abs(freq - lang.rank_probs) < 5 * sd + 1e-12).all()
    p = lang.rank_probs
    assert np.allclose(p[0] / p[1:], np.arange(2, lang.branching + 1) ** lang.zipf)


def test_successors_are_distinct_tokens():
    lang = MarkovLanguage(vocab_size=16, order=2, branching=12, **SMALL)
    s = np.sort(lang.successors, axis=1)
    assert s.shape == (16**2, 12) and (np.diff(s, axis=1) > 0).all()
    assert s.min() >= 0 and s.max() < 16


def test_token_frequencies_follow_the_stationary_distribution():
    lang = MarkovLanguage(seed=5)  # order 1: a state is a token
    freq = np.bincount(lang.train, minlength=lang.vocab_size) / len(lang.train)
    uniform = np.full(lang.vocab_size, 1 / lang.vocab_size)
    assert np.abs(uniform - lang.stationary).sum() > 0.1  # π is far from uniform …
    assert np.abs(freq - lang.stationary).sum() < 0.03  # … and the stream follows it


def test_markov_is_deterministic_and_stored_as_uint16():
    a = MarkovLanguage(seed=7, **SMALL)
    b = MarkovLanguage(seed=7, **SMALL)
    c = MarkovLanguage(seed=8, **SMALL)
    assert a.train.dtype == np.uint16 and a.val.dtype == np.uint16
    assert len(a.train) == SMALL["n_train_tokens"] and len(a.val) == SMALL["n_val_tokens"]
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert np.array_equal(a.successors, b.successors)
    assert not np.array_equal(a.train, c.train)
    assert not np.array_equal(a.val[:1000], a.train[:1000])
    assert a.vocab_size == 256 and "markov" in repr(a) and "256" in repr(a)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"vocab_size": 65537}, "vocab_size must be in"),
        ({"order": 0}, "order must be"),
        ({"branching": 300}, "branching must be in"),
        ({"vocab_size": 4096, "order": 2}, "transitions"),
        ({"restart": 1.5}, "restart must be in"),
        ({"zipf": -1.0}, "zipf must be"),
        ({"n_val_tokens": 0}, "n_val_tokens"),
        ({"segment_length": 1}, "segment_length"),
    ],
)
def test_markov_bad_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        MarkovLanguage(**kwargs)


# ------------------------------------------------------------------------------- batches


def counting_data(n_train: int = 1000, n_val: int = 300) -> TokenData:
    return TokenData(np.arange(n_train), np.arange(n_val) + 5000, vocab_size=6000, name="count")


def test_batch_windows_are_shifted_slices():
    tokens = counting_data()
    x, y = tokens.batch("train", 16, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 10) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    # data[i] = i, so every row of x is a contiguous window and y = x + 1
    assert torch.equal(x, x[:, :1] + torch.arange(10)) and torch.equal(y, x + 1)
    xv, _ = tokens.batch("val", 4, 10, torch.Generator().manual_seed(0))
    assert (xv >= 5000).all()


def test_batch_covers_every_offset_and_stays_in_range():
    tokens = TokenData(np.arange(6), np.arange(6), vocab_size=6, name="tiny")
    x, y = tokens.batch("train", 400, 3, torch.Generator().manual_seed(1))
    assert set(x[:, 0].tolist()) == {0, 1, 2}  # offsets 0 … n − context − 1
    assert y.max().item() == 5


def test_batch_is_reproducible_and_respects_device():
    tokens = counting_data()
    a = tokens.batch("train", 8, 5, torch.Generator().manual_seed(3), device="cpu")
    b = tokens.batch("train", 8, 5, torch.Generator().manual_seed(3), device=torch.device("cpu"))
    c = tokens.batch("train", 8, 5, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[0].device.type == "cpu" and a[1].device.type == "cpu"


@pytest.mark.parametrize(
    "split, batch_size, context, needle",
    [
        ("test", 2, 4, "unknown split 'test'"),
        ("train", 0, 4, "batch_size must be"),
        ("train", 2, 0, "context must be in"),
        ("val", 2, 300, r"context must be in \[1, 299\]"),
    ],
)
def test_batch_bad_arguments(split, batch_size, context, needle):
    with pytest.raises(ValueError, match=needle):
        counting_data().batch(split, batch_size, context, torch.Generator())


def test_bad_markov_settings_and_generators_are_named():
    for kwargs, needle in (({"zipf": float("nan")}, "zipf must be a finite number"),
                           ({"order": 2.5}, "order must be an int"),
                           ({"n_train_tokens": 10.5}, "n_train_tokens must be")):  # fmt: skip
        with pytest.raises((TypeError, ValueError), match=needle):
            MarkovLanguage(**kwargs)
    with pytest.raises(ValueError, match="needs a CPU torch.Generator"):
        counting_data().batch("train", 2, 4, None)


def test_the_longest_context_has_exactly_one_window():
    data = counting_data()
    n = len(data.val)
    x, y = data.batch("val", 3, n - 1, torch.Generator())
    assert torch.equal(x[0], torch.as_tensor(data.val[:-1]).long()) and (x == x[0]).all()
    assert torch.equal(y[0], torch.as_tensor(data.val[1:]).long())


def test_batch_empty_split_and_bad_arrays():
    tokens = TokenData(np.arange(10), np.zeros(0, dtype=np.int64), vocab_size=10, name="e")
    with pytest.raises(ValueError, match="'val' split is empty"):
        tokens.batch("val", 1, 2, torch.Generator())
    with pytest.raises(ValueError, match="1-D integer array"):
        TokenData(np.zeros((2, 3), dtype=np.int64), np.arange(3), vocab_size=3, name="bad")
    with pytest.raises(ValueError, match="1-D integer array"):
        TokenData(np.arange(3.0), np.arange(3), vocab_size=3, name="bad")


def test_repr_names_the_source_and_sizes():
    text = repr(counting_data())
    assert "count" in text and "6000" in text and "1,000" in text and "300" in text


# --------------------------------------------------------------------------- byte corpus


def make_tree(root: Path, n_files: int = 40) -> dict[str, bytes]:
    """Python files with varied bytes under ``root``; returns {relative path: content}."""
    rng = np.random.default_rng(0)
    files = {}
    for i in range(n_files):
        rel = f"pkg{i % 3}/mod_{i:02d}.py" if i % 2 else f"top_{i:02d}.py"
        content = f"# file {i}\n".encode() + rng.integers(0, 256, 50 + 7 * i, np.uint8).tobytes()
        files[rel] = content
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    (root / "notes.txt").write_bytes(b"not python")  # does not match the pattern
    (root / "site-packages").mkdir()
    (root / "site-packages" / "skipped.py").write_bytes(b"skipped")
    return files


def expected_streams(files: dict[str, bytes], val_fraction: float) -> tuple[bytes, bytes]:
    train, val = b"", b""
    for rel in sorted(files):
        chunk = files[rel] + b"\n"
        if zlib.crc32(rel.encode()) % 1000 < val_fraction * 1000:
            val += chunk
        else:
            train += chunk
    return train, val


def test_byte_corpus_round_trips_and_splits_by_file(tmp_path):
    files = make_tree(tmp_path / "src")
    want_train, want_val = expected_streams(files, 0.25)
    assert want_train and want_val  # the rule gives both splits files
    corpus = byte_corpus(tmp_path / "src", val_fraction=0.25, cache_dir=tmp_path / "cache")
    assert corpus.vocab_size == 256 and corpus.irreducible_loss is None
    assert corpus.train.dtype == np.uint8
    assert corpus.train.tobytes() == want_train and corpus.val.tobytes() == want_val
    again = byte_corpus(str(tmp_path / "src"), val_fraction=0.25, cache_dir=tmp_path / "other")
    assert np.array_equal(again.train, corpus.train) and np.array_equal(again.val, corpus.val)
    x, y = corpus.batch("train", 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == (4, 16) and torch.equal(y[:, :-1], x[:, 1:])
    # two files with one relative path (under two roots) are two files to split
    for root in ("a", "b"):
        (tmp_path / root).mkdir()
        (tmp_path / root / "x.py").write_bytes(root.encode() * 4)
    twins = byte_corpus([tmp_path / "a" / "x.py", tmp_path / "b" / "x.py"], val_fraction=0.1,
                        cache_dir=tmp_path / "twins")  # fmt: skip
    assert len(twins.train) == len(twins.val) == 5  # one each (val was empty)


def test_byte_corpus_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    files = make_tree(tmp_path / "src")
    cache = tmp_path / "cache"
    first = byte_corpus(tmp_path / "src", cache_dir=cache)
    (key,) = [p.name for p in cache.iterdir()]
    assert sorted(p.name for p in (cache / key).iterdir()) == ["meta.json", "train.npy", "val.npy"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (cache / key).iterdir()}

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data, "_read_prefix", no_reading)
    second = byte_corpus(tmp_path / "src", cache_dir=cache)
    assert isinstance(second.train, np.memmap)
    assert np.array_equal(second.train, first.train) and np.array_equal(second.val, first.val)
    assert {p.name: p.stat().st_mtime_ns for p in (cache / key).iterdir()} == stamps
    monkeypatch.undo()
    # changing a file changes the key: the corpus is rebuilt and sees the new bytes
    rel = sorted(files)[0]
    (tmp_path / "src" / rel).write_bytes(b"changed!")
    third = byte_corpus(tmp_path / "src", cache_dir=cache)
    assert len(list(cache.iterdir())) == 2
    assert b"changed!" in third.train.tobytes() + third.val.tobytes()


def test_byte_corpus_crash_leaves_no_partial_cache(tmp_path, monkeypatch):
    make_tree(tmp_path / "src")
    cache = tmp_path / "cache"
    real_save = np.save
    calls = []

    def crashing_save(f, arr):
        calls.append(1)
        if len(calls) == 2:  # train.npy is written, then the crash hits val.npy
            f.write(b"half")
            raise KeyboardInterrupt
        real_save(f, arr)

    monkeypatch.setattr(np, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        byte_corpus(tmp_path / "src", cache_dir=cache)
    monkeypatch.undo()
    leftovers = [p.name for p in cache.rglob("*") if p.is_file()]
    assert leftovers == ["train.npy"]  # no temporary file, no val.npy, no meta.json marker
    corpus = byte_corpus(tmp_path / "src", cache_dir=cache)  # incomplete: rebuilt
    assert len(corpus.val) > 0
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]


def test_byte_corpus_max_bytes_caps_each_split(tmp_path):
    make_tree(tmp_path / "src")
    full = byte_corpus(tmp_path / "src", val_fraction=0.25, cache_dir=tmp_path / "c")
    capped = byte_corpus(
        tmp_path / "src", max_bytes=1000, val_fraction=0.25, cache_dir=tmp_path / "c"
    )
    assert len(capped.train) == 750 and len(capped.val) == 250
    assert np.array_equal(capped.train, full.train[:750])
    assert np.array_equal(capped.val, full.val[:250])


def test_byte_corpus_files_and_lists_of_paths(tmp_path):
    files = make_tree(tmp_path / "src")
    one = tmp_path / "src" / "top_00.py"
    single = byte_corpus(one, val_fraction=0.0, cache_dir=tmp_path / "c")
    assert single.train.tobytes() == files["top_00.py"] + b"\n" and len(single.val) == 0
    both = byte_corpus([one, tmp_path / "src" / "pkg1"], cache_dir=tmp_path / "c")
    total = len(both.train) + len(both.val)
    pkg1 = [c for rel, c in files.items() if rel.startswith("pkg1/")]
    assert total == sum(len(c) + 1 for c in [files["top_00.py"], *pkg1])
    # one file with a validation split: its last ⌈f·n⌉ bytes (the split is by file otherwise)
    split = byte_corpus(one, val_fraction=0.1, cache_dir=tmp_path / "c")
    stream = files["top_00.py"] + b"\n"
    n_val = -(-len(stream) // 10)
    assert split.val.tobytes() == stream[-n_val:] and split.train.tobytes() == stream[:-n_val]


def test_byte_corpus_errors_name_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        byte_corpus(missing, cache_dir=tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no files matching '\*\.py' under .*empty"):
        byte_corpus(tmp_path / "empty", cache_dir=tmp_path / "c")
    (tmp_path / "blank").mkdir()
    for name in ("a.py", "b.py"):
        (tmp_path / "blank" / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"'\*\.py' under .*blank are empty"):
        byte_corpus(tmp_path / "blank", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="val_fraction"):
        byte_corpus(tmp_path / "blank", val_fraction=1.0, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()  # nothing cached for failed calls


def test_default_corpus_is_the_standard_library(tmp_path):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if not (stdlib / "os.py").is_file():
        pytest.skip(f"no Python sources in {stdlib}")
    corpus = byte_corpus(max_bytes=200_000, cache_dir=tmp_path / "cache")
    assert len(corpus.train) == 180_000 and len(corpus.val) == 20_000
    assert corpus.name == "bytes:stdlib" and corpus.vocab_size == 256
    assert b"def " in corpus.train.tobytes() and b"import" in corpus.val.tobytes()
    x, y = corpus.batch("val", 2, 64, torch.Generator().manual_seed(0))
    assert x.shape == (2, 64) and torch.equal(y[:, :-1], x[:, 1:])


# -------------------------------------------------------------------------- token shards


def test_token_shards_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 50257, 5000)
    val = rng.integers(0, 1000, 700)
    path = data.write_token_shard(train, tmp_path / "gpt" / "train.bin")
    data.write_token_shard(torch.from_numpy(val), tmp_path / "gpt" / "val.bin")
    assert path.stat().st_size == 2 * len(train)
    assert np.array_equal(np.memmap(path, dtype=np.uint16, mode="r"), train)
    shards = token_shards(tmp_path / "gpt")
    assert isinstance(shards.train, np.memmap) and shards.train.dtype == np.uint16
    assert np.array_equal(shards.train, train) and np.array_equal(shards.val, val)
    assert shards.vocab_size == max(train.max(), val.max()) + 1
    assert token_shards(tmp_path / "gpt", vocab_size=50304).vocab_size == 50304
    x, y = shards.batch("train", 3, 32, torch.Generator().manual_seed(0))
    assert torch.equal(y[:, :-1], x[:, 1:]) and x.max() < shards.vocab_size
    assert not [p for p in (tmp_path / "gpt").iterdir() if p.name.endswith(".tmp")]


def test_vocab_size_is_scanned_in_chunks():
    tokens = np.random.default_rng(1).integers(0, 60000, 1001).astype(np.uint16)
    assert data._chunked_max(tokens, chunk=64) == tokens.max()


@pytest.mark.parametrize(
    "tokens, needle",
    [
        (np.array([1, -1, 2]), r"\[0, 65536\)"),
        (np.array([0, 65536]), r"\[0, 65536\)"),
        (np.zeros((2, 2), dtype=np.int64), "1-D integer array"),
        (np.array([0.5, 1.0]), "1-D integer array"),
    ],
)
def test_write_token_shard_rejects_bad_tokens(tmp_path, tokens, needle):
    with pytest.raises(ValueError, match=needle):
        data.write_token_shard(tokens, tmp_path / "train.bin")
    assert not list(tmp_path.iterdir())


def test_token_shards_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        token_shards(tmp_path / "missing")
    data.write_token_shard(np.arange(10), tmp_path / "train.bin")
    with pytest.raises(FileNotFoundError, match=r"val\.bin"):
        token_shards(tmp_path)
    (tmp_path / "val.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"val\.bin is empty"):
        token_shards(tmp_path)
    (tmp_path / "val.bin").write_bytes(b"abc")
    with pytest.raises(ValueError, match="odd size"):
        token_shards(tmp_path)
    (tmp_path / "val.bin").write_bytes(b"abcd")
    with pytest.raises(ValueError, match="vocab_size must be"):
        token_shards(tmp_path, vocab_size=70000)


@pytest.mark.parametrize(("vocab", "dtype"), [(256, "uint16"), (65536, "uint16"),
                                              (128256, "uint32")])  # fmt: skip
def test_described_shards_round_trip_in_uint16_and_uint32(tmp_path, vocab, dtype):
    rng = np.random.default_rng(0)
    train, val = rng.integers(0, vocab, 3000), rng.integers(0, vocab, 500)
    train[0] = vocab - 1  # the largest id survives the dtype
    data.write_token_shards(tmp_path / "s", train, val, vocab_size=vocab)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta == {"dtype": dtype, "vocab_size": vocab, "tokens": {"train": 3000, "val": 500}}
    shards = token_shards(tmp_path / "s")
    assert shards.train.dtype == np.dtype(dtype) and shards.vocab_size == vocab
    assert np.array_equal(shards.train, train) and np.array_equal(shards.val, val)
    x, y = shards.batch("train", 4, 16, torch.Generator().manual_seed(0))
    assert x.dtype == torch.int64 and torch.equal(y[:, :-1], x[:, 1:])


def test_described_shards_errors(tmp_path):
    rng = np.random.default_rng(0)
    folder = data.write_token_shards(tmp_path / "s", rng.integers(0, 70000, 100),
                                     rng.integers(0, 70000, 50), vocab_size=70000)  # fmt: skip
    with pytest.raises(ValueError, match="vocabulary of 70000 tokens.*50257"):
        token_shards(folder, vocab_size=50257)
    with open(folder / "train.bin", "r+b") as f:  # a truncated shard
        f.truncate(4 * 99)
    with pytest.raises(ValueError, match="truncated"):
        token_shards(folder)
    with pytest.raises(ValueError, match=r"in \[0, vocab_size = 10\), got min 1 and max 10"):
        data.write_token_shards(tmp_path / "t", np.array([1, 10]), np.array([1]), vocab_size=10)
    # input refused for any reason leaves a good shard folder as it was (readable, unchanged)
    good = data.write_token_shards(tmp_path / "g", np.array([1, 2, 3]), np.array([4]), 10)
    for bad, needle in ((np.array([1, -2, 3]), "got min -2"), (np.array([1.0, 2.0]), "float64"),
                        (np.ones((2, 2), int), r"shape \(2, 2\)")):  # fmt: skip
        with pytest.raises(ValueError, match=needle):
            data.write_token_shards(good, bad, np.array([1]), vocab_size=10)
        assert np.array_equal(token_shards(good).train, [1, 2, 3])
    with pytest.raises(ValueError, match="the val split is empty"):  # unreadable if written
        data.write_token_shards(tmp_path / "e", np.array([1, 2]), np.array([], int), vocab_size=10)
    assert not (tmp_path / "e").exists()
    (folder / "meta.json").write_text('{"dtype": "int8"}')
    with pytest.raises(ValueError, match="not a shard description"):
        token_shards(folder)
    (folder / "meta.json").write_text('{"dtype": ["uint32"], "vocab_size": 9, "tokens": {}}')
    with pytest.raises(ValueError, match="not a shard description.*'dtype' must be a name"):
        token_shards(folder)
    (folder / "meta.json").write_text('{"dtype": "uint32", "vocab_size": 9, "tokens": [1, 2]}')
    with pytest.raises(ValueError, match="not a shard description.*'tokens' must map"):
        token_shards(folder)
    with pytest.raises(ValueError, match="uint16 or uint32"):
        data.write_token_shard(np.arange(3), tmp_path / "x.bin", dtype="int64")
    # meta.json edited to a smaller vocabulary: the batch names the ids (not the embedding)
    small = data.write_token_shards(tmp_path / "m", np.full(64, 7), np.full(32, 7), vocab_size=10)
    meta = json.loads((small / "meta.json").read_text())
    (small / "meta.json").write_text(json.dumps({**meta, "vocab_size": 5}))
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"train: token ids must lie in \[0, 4\].*from 7 to 7"):
        token_shards(small).batch("train", 2, 8, gen)


def test_the_shards_command_writes_byte_shards_a_sweep_can_train_on(tmp_path):
    from optimal_scaling import sweep
    from optimal_scaling.cli import main as cli

    for i in range(12):
        (tmp_path / "text" / f"d{i // 4}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "text" / f"d{i // 4}" / f"f{i}.txt").write_text(f"line {i} of text. " * 80)
    assert cli(["shards", str(tmp_path / "text"), str(tmp_path / "sh")]) == 0
    shards = token_shards(tmp_path / "sh")
    assert shards.vocab_size == 256 and len(shards.train) + len(shards.val) > 12 * 80 * 10
    raw = {"name": "s", "horizons": [512],
           "run": {"batch_size": 4, "context": 16, "eval_batches": 1, "eval_batch_size": 4,
                   "model": {"width": 16, "depth": 1, "n_heads": 2},
                   "data": {"source": "shards", "folder": str(tmp_path / "sh")}}}  # fmt: skip
    assert sweep.run(sweep.from_dict(raw), tmp_path / "runs", progress=False) == {"done": 1}
    assert cli(["shards", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2


def test_entropy_rate_of_a_nearly_deterministic_chain_is_finite():
    """Rank probabilities that underflow to 0 contribute 0·log 0 = 0, not NaN."""
    lang = MarkovLanguage(vocab_size=16, branching=8, zipf=1100.0, restart=0.0,
                          n_train_tokens=1000, n_val_tokens=1000)  # fmt: skip
    assert lang.entropy_rate() == pytest.approx(0.0, abs=1e-12)


def test_token_ids_outside_the_vocabulary_are_named_before_any_training(tmp_path):
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 9\].*from 0 to 10"):
        TokenData(np.arange(11), np.arange(5), vocab_size=10, name="toy")
    raw = tmp_path / "raw"
    raw.mkdir()
    np.arange(300, dtype=np.uint16).tofile(raw / "train.bin")  # nanoGPT layout, no meta.json
    np.arange(100, dtype=np.uint16).tofile(raw / "val.bin")
    with pytest.raises(ValueError, match=r"train.bin: token ids must lie in \[0, 255\]"):
        token_shards(raw, vocab_size=256)
    assert token_shards(raw).vocab_size == 300  # inferred from the data instead


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


def test_segments_start_from_the_stationary_distribution():
    lang = data.MarkovLanguage(seed=5, segment_length=2, n_train_tokens=2**20)
    starts = np.asarray(lang.train)[::2]
    freq = np.bincount(starts, minlength=lang.vocab_size) / len(starts)
    assert np.abs(freq - lang.stationary).sum() < 0.05


# ------------------------------------------------------------------ TokenData validation


def test_token_data_names_negative_ids_and_a_non_positive_vocabulary():
    with pytest.raises(ValueError, match=r"train: token ids must lie in \[0, 9\].*from -1 to 3"):
        TokenData(np.array([0, -1, 3]), np.arange(5), vocab_size=10, name="neg")
    with pytest.raises(ValueError, match=r"val: token ids must lie in \[0, 9\].*from -2 to 1"):
        TokenData(np.arange(5), np.array([1, -2]), vocab_size=10, name="neg")
    with pytest.raises(ValueError, match="vocab_size must be a positive int, got 0"):
        TokenData(np.zeros(4, np.int64), np.zeros(4, np.int64), vocab_size=0, name="v0")
    with pytest.raises(ValueError, match="vocab_size must be a positive int, got True"):
        TokenData(np.zeros(4, np.int64), np.zeros(4, np.int64), vocab_size=True, name="bool")


# ---------------------------------------------------------------------- Markov language


def test_log_prob_needs_more_than_order_tokens():
    lang = MarkovLanguage(vocab_size=8, order=2, branching=2, n_train_tokens=64, n_val_tokens=64)
    with pytest.raises(ValueError, match="more than 2 tokens"):
        lang.log_prob(np.array([1, 2]))
    assert lang.log_prob(np.array([1, 2, 3])).shape == (1,)


@pytest.mark.parametrize("n_train, n_val", [(5000, 4097), (1, 1), (3, 2)])
def test_markov_streams_have_exactly_the_requested_lengths(n_train, n_val):
    for order in (1, 2):
        lang = MarkovLanguage(vocab_size=8, order=order, branching=3, n_train_tokens=n_train,
                              n_val_tokens=n_val, segment_length=4096)  # fmt: skip
        assert (len(lang.train), len(lang.val)) == (n_train, n_val)


def test_restarts_draw_from_the_whole_vocabulary():
    """With many restarts (ε = 0.9) the stream's token frequencies still follow π, which
    gives every token at least ε/V: the restart draws must reach every token, V − 1 too."""
    lang = MarkovLanguage(vocab_size=4, branching=1, restart=0.9, n_train_tokens=2**16,
                          n_val_tokens=16, seed=0)  # fmt: skip
    freq = np.bincount(lang.train, minlength=4) / len(lang.train)
    assert (lang.stationary >= 0.9 / 4 - 1e-12).all()
    assert np.abs(freq - lang.stationary).sum() < 0.03


@pytest.mark.parametrize("branching", [1, 5])
def test_the_k_th_successor_is_a_uniformly_random_token(branching):
    """c_k(s) for each rank k is uniform over the vocabulary (a uniform random ordered subset):
    a token's count among the 4096 states is Binomial(4096, 1/16) ≈ 256 ± 15.5."""
    V, order = 16, 3
    lang = MarkovLanguage(vocab_size=V, order=order, branching=branching, n_train_tokens=64,
                          n_val_tokens=64, seed=11, restart=0.5)  # fmt: skip (fast mixing)
    n = V**order
    sd = math.sqrt(n * (1 / V) * (1 - 1 / V))
    for k in range(branching):
        counts = np.bincount(lang.successors[:, k], minlength=V)
        assert np.abs(counts - n / V).max() < 6 * sd, (k, counts)


def test_the_validation_stream_does_not_depend_on_the_training_size():
    """Chain, train and val come from independent streams of one seed: a longer training
    stream leaves the language and its held-out stream as they were."""
    small = MarkovLanguage(vocab_size=32, n_train_tokens=4096, n_val_tokens=2048, seed=3)
    large = MarkovLanguage(vocab_size=32, n_train_tokens=8192, n_val_tokens=2048, seed=3)
    assert np.array_equal(small.successors, large.successors)
    assert np.array_equal(small.val, large.val)


def test_markov_edge_settings_allowed_by_the_docstring():
    """zipf ≥ 0 (0: uniform ranks), restart in [0, 1] (1: i.i.d. uniform), branching ≤ V."""
    flat = MarkovLanguage(vocab_size=16, branching=4, zipf=0.0, n_train_tokens=64,
                          n_val_tokens=64)  # fmt: skip
    np.testing.assert_allclose(flat.rank_probs, np.full(4, 0.25))
    # restart = 1: q(c|s) = 1/V for every c, so H = log V exactly
    iid = MarkovLanguage(vocab_size=16, branching=4, restart=1.0, n_train_tokens=64,
                         n_val_tokens=64)  # fmt: skip
    assert iid.entropy_rate() == pytest.approx(math.log(16), rel=1e-12)
    full = MarkovLanguage(vocab_size=6, branching=6, n_train_tokens=64, n_val_tokens=64)
    assert (np.sort(full.successors, axis=1) == np.arange(6)).all()


def test_without_restarts_pi_is_the_lazy_chains_limit_from_uniform():
    """ε = 0: π is the limit of the lazy chain (I + Q)/2 started from the uniform
    distribution (the docstring), also for periodic and for reducible chains, where the
    plain power iteration oscillates or the limit depends on the start."""
    kinds = set()
    for seed in range(40):
        lang = MarkovLanguage(vocab_size=3, branching=1, restart=0.0, n_train_tokens=8,
                              n_val_tokens=8, seed=seed)  # fmt: skip
        nxt = lang.successors[:, 0]
        Q = np.zeros((3, 3))
        Q[np.arange(3), nxt] = 1.0
        pi = np.full(3, 1 / 3)
        for _ in range(300):
            pi = 0.5 * pi + 0.5 * pi @ Q
        np.testing.assert_allclose(lang.stationary, pi, atol=1e-9, err_msg=str(nxt))
        fixed = int((nxt == np.arange(3)).sum())
        if fixed >= 2:
            kinds.add("reducible")
        if any(nxt[s] != s and nxt[nxt[s]] == s for s in range(3)) and len(set(nxt)) < 3:
            kinds.add("periodic")
    assert kinds == {"reducible", "periodic"}  # both hard cases were exercised


# -------------------------------------------------------------------------- byte corpus


def _names_with_hashes(wanted: list[int]) -> list[str]:
    """One file name f"m{i}.py" per wanted value of crc32(name) mod 1000."""
    out = {}
    i = 0
    while len(out) < len(set(wanted)):
        name = f"m{i}.py"
        h = zlib.crc32(name.encode()) % 1000
        if h in wanted and h not in out:
            out[h] = name
        i += 1
    return [out[h] for h in wanted]


def test_a_file_exactly_at_the_threshold_is_training(tmp_path):
    """Validation when crc32 mod 1000 < 1000·f: strictly less, so 250 stays in training."""
    below, at, above = _names_with_hashes([100, 250, 900])
    src = tmp_path / "src"
    src.mkdir()
    for name in (below, at, above):
        (src / name).write_bytes(name.encode())
    corpus = byte_corpus(src, val_fraction=0.25, cache_dir=tmp_path / "c")
    assert corpus.val.tobytes() == below.encode() + b"\n"
    assert corpus.train.tobytes() == b"".join(n.encode() + b"\n" for n in sorted([at, above]))


def test_the_file_closest_to_the_threshold_is_moved(tmp_path):
    """No file in validation: the one with the smallest hash goes there; every file in
    validation: the one with the largest hash goes back to training."""
    names = _names_with_hashes([300, 500, 700])
    src = tmp_path / "src"
    src.mkdir()
    for name in names:
        (src / name).write_bytes(name.encode() * 3)
    none = byte_corpus(src, val_fraction=0.2, cache_dir=tmp_path / "c")  # threshold 200
    assert none.val.tobytes() == names[0].encode() * 3 + b"\n"
    every = byte_corpus(src, val_fraction=0.8, cache_dir=tmp_path / "c")  # threshold 800
    assert every.train.tobytes() == names[2].encode() * 3 + b"\n"


def test_a_file_reached_twice_is_read_once(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, text in (("a.py", b"alpha" * 20), ("b.py", b"beta" * 30)):
        (src / name).write_bytes(text)
    corpus = byte_corpus([src, src / "a.py"], val_fraction=0.0, cache_dir=tmp_path / "c")
    assert corpus.train.tobytes() == b"alpha" * 20 + b"\n" + b"beta" * 30 + b"\n"


def test_the_cache_key_sees_an_edit_that_keeps_the_size(tmp_path):
    """The key hashes every file's path, size and mtime: same-size edits rebuild it."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_bytes(b"old text")
    (src / "b.py").write_bytes(b"other")
    first = byte_corpus(src, val_fraction=0.0, cache_dir=tmp_path / "c")
    assert b"old text" in first.train.tobytes()
    (src / "a.py").write_bytes(b"new text")  # same size
    st = (src / "a.py").stat()
    os.utime(src / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = byte_corpus(src, val_fraction=0.0, cache_dir=tmp_path / "c")
    assert b"new text" in second.train.tobytes() and b"old text" not in second.train.tobytes()


def test_byte_corpus_names_bad_max_bytes_and_negative_fractions(tmp_path):
    (tmp_path / "a.py").write_bytes(b"x" * 100)
    with pytest.raises(ValueError, match="max_bytes must be ≥ 1"):
        byte_corpus(tmp_path, max_bytes=0, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        byte_corpus(tmp_path, val_fraction=-0.1, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


# ------------------------------------------------------------------------- token shards


def test_raw_uint16_shards_accept_the_full_65536_vocabulary(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    np.array([0, 65535, 3], dtype=np.uint16).tofile(raw / "train.bin")
    np.array([1, 2], dtype=np.uint16).tofile(raw / "val.bin")
    assert data.token_shards(raw, vocab_size=65536).vocab_size == 65536
    with pytest.raises(ValueError, match="vocab_size must be in"):
        data.token_shards(raw, vocab_size=65537)


def test_the_inferred_vocabulary_covers_the_validation_split(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    np.array([0, 5, 3], dtype=np.uint16).tofile(raw / "train.bin")
    np.array([1, 40], dtype=np.uint16).tofile(raw / "val.bin")
    assert data.token_shards(raw).vocab_size == 41


def test_the_chunked_max_sees_the_last_element_of_every_chunk():
    for where in (0, 63, 64, 127, 999):
        tokens = np.zeros(1000, dtype=np.uint16)
        tokens[where] = 7
        assert data._chunked_max(tokens, chunk=64) == 7, where


def test_a_shard_longer_than_its_description_is_refused(tmp_path):
    folder = data.write_token_shards(tmp_path / "s", np.arange(10), np.arange(4), vocab_size=10)
    with open(folder / "train.bin", "ab") as f:  # overwritten with more tokens than meta says
        f.write(np.arange(3, dtype=np.uint16).tobytes())
    with pytest.raises(ValueError, match="truncated or overwritten"):
        data.token_shards(folder)


def test_a_description_with_a_zero_count_is_not_a_shard_description(tmp_path):
    folder = data.write_token_shards(tmp_path / "s", np.arange(10), np.arange(4), vocab_size=10)
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "val.bin").write_bytes(b"")
    (folder / "meta.json").write_text(json.dumps({**meta, "tokens": {"train": 10, "val": 0}}))
    with pytest.raises(ValueError, match="not a shard description.*'tokens' must map"):
        data.token_shards(folder)


@pytest.mark.parametrize("restart", [1e-4, 1e-6])
def test_a_nearly_deterministic_chain_with_a_tiny_restart_has_its_stationary_distribution(
    restart,
):
    """branching = 1 and a small ε > 0: Q is a deterministic map plus ε/V everywhere, whose
    cycles make plain power iteration oscillate for ~30/ε steps. π must still be found, and be
    the fixed point of Q written out densely here."""
    V = 16
    lang = MarkovLanguage(vocab_size=V, branching=1, restart=restart, n_train_tokens=64,
                          n_val_tokens=64, seed=2)  # fmt: skip
    Q = np.full((V, V), restart / V)
    Q[np.arange(V), lang.successors[:, 0]] += 1 - restart
    pi = lang.stationary
    assert pi.sum() == pytest.approx(1.0) and (pi > 0).all()
    np.testing.assert_allclose(pi @ Q, pi, rtol=0, atol=1e-12)
