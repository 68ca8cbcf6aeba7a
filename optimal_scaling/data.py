"""Data sources. Nothing is ever downloaded: data is generated from a seed or read from disk.

``TeacherTask``: regression on the outputs of a fixed random "teacher" network,

    y = v·tanh(s·W x / √d_in) / √k,   x ~ N(0, I_d_in),   W_ij, v_i ~ N(0, 1),  k = teacher width,

a task that never runs out of fresh samples, so "more data" simply means more steps.

Token sources for language models all return a ``TokenData`` (a train and a validation
stream of token ids, plus nanoGPT-style random ``batch``-es):

* ``MarkovLanguage``: a synthetic Zipf-like language from a sparse random Markov chain whose
  entropy rate, the best loss any model can reach, is known exactly;
* ``byte_corpus``: bytes of local text files (by default the Python standard library's own
  sources), split by file and cached as ``.npy``;
* ``write_token_shard`` / ``token_shards``: nanoGPT's ``train.bin``/``val.bin`` layout.

``AdditionTask``: k-digit addition as prompt/answer sequences, for tasks scored by exact match.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import sysconfig
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from optimal_scaling._validate import check_int
from optimal_scaling.results import atomic_write


class TeacherTask:
    """Fresh ``(x, y)`` batches from a fixed random one-hidden-layer tanh teacher.

    ``scale`` (s above) sets how nonlinear the target is; the irreducible loss is zero.
    """

    def __init__(self, d_in: int = 32, width: int = 256, scale: float = 2.0, seed: int = 0):
        if d_in < 1 or width < 1:
            raise ValueError(f"TeacherTask: d_in and width must be ≥ 1, got {d_in}, {width}")
        g = torch.Generator().manual_seed(seed)
        self.d_in, self.width, self.scale = d_in, width, scale
        self.W = torch.randn(width, d_in, generator=g) * (scale / d_in**0.5)
        self.v = torch.randn(width, generator=g) / width**0.5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The target ``y`` (shape ``(batch, 1)``) for inputs ``x`` (shape ``(batch, d_in)``)."""
        if x.ndim != 2 or x.shape[1] != self.d_in:
            raise ValueError(
                f"TeacherTask expects x of shape (batch, {self.d_in}), got {tuple(x.shape)}"
            )
        W, v = self.W.to(x), self.v.to(x)
        return (torch.tanh(x @ W.T) @ v).unsqueeze(-1)

    def batch(
        self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh batch ``(x, y)`` drawn on the CPU from ``generator``, moved to ``device``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        x = torch.randn(batch_size, self.d_in, generator=generator)
        return x.to(device), self(x).to(device)


# --------------------------------------------------------------------------- token data

SPLITS = ("train", "val")
MAX_UINT16_VOCAB = 2**16  # token ids are stored as uint16


class TokenData:
    """A train and a validation stream of token ids, and random windows drawn from them.

    ``train`` and ``val`` are 1-D integer arrays (in memory or ``np.memmap``-ed from disk);
    ``irreducible_loss`` is the entropy rate of the source in nats per token, the loss of
    the best possible predictor, or ``None`` when unknown.
    """

    def __init__(
        self,
        train: np.ndarray,
        val: np.ndarray,
        vocab_size: int,
        name: str,
        irreducible_loss: float | None = None,
    ):
        self.train = _as_token_array(train, f"{name}: train")
        self.val = _as_token_array(val, f"{name}: val")
        is_int = isinstance(vocab_size, (int, np.integer)) and not isinstance(vocab_size, bool)
        if not is_int or vocab_size < 1:
            raise ValueError(f"{name}: vocab_size must be a positive int, got {vocab_size!r}")
        self.vocab_size = int(vocab_size)
        self.name = name
        for split, arr in (("train", self.train), ("val", self.val)):
            if len(arr) and not isinstance(arr, np.memmap):  # shards are checked as they open
                _check_ids(arr.min(), arr.max(), self.vocab_size, f"{name}: {split}")
        self.irreducible_loss = None if irreducible_loss is None else float(irreducible_loss)

    def split(self, split: str) -> np.ndarray:
        """The token stream of ``split`` ("train" or "val")."""
        if split not in SPLITS:
            raise ValueError(f"{self.name}: unknown split {split!r}; choose 'train' or 'val'")
        return self.train if split == "train" else self.val

    def batch(
        self,
        split: str,
        batch_size: int,
        context: int,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows ``(x, y)`` of ``context`` tokens, ``y`` = ``x`` shifted.

        Start offsets i ~ Uniform{0, …, n − context − 1} come from ``generator`` (a CPU
        generator), and ``x[b] = data[i_b : i_b + context]``, ``y[b] = data[i_b + 1 :
        i_b + context + 1]``, as in nanoGPT. Only the selected windows are read, so a memmap is
        never loaded whole. Both tensors are int64 of shape ``(batch_size, context)`` on
        ``device``.
        """
        data = self.split(split)
        n = len(data)
        if n == 0:
            raise ValueError(f"{self.name}: the {split!r} split is empty")
        if batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be ≥ 1, got {batch_size}")
        if context < 1 or context >= n:
            raise ValueError(
                f"{self.name}: context must be in [1, {n - 1}] for the {split!r} split of "
                f"{n} tokens, got {context}"
            )
        if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
            raise ValueError(f"{self.name}: batch needs a CPU torch.Generator (for reproducible "
                             f"batches), got {generator!r}")  # fmt: skip
        starts = torch.randint(n - context, (batch_size,), generator=generator).numpy()
        windows = np.asarray(data[starts[:, None] + np.arange(context + 1)], dtype=np.int64)
        if isinstance(data, np.memmap):  # shards described by meta.json are not scanned whole
            _check_ids(windows.min(), windows.max(), self.vocab_size, f"{self.name}: {split}")
        xy = torch.from_numpy(windows)
        x, y = xy[:, :-1].contiguous(), xy[:, 1:].contiguous()
        return x.to(device), y.to(device)

    def __repr__(self) -> str:
        loss = "unknown" if self.irreducible_loss is None else f"{self.irreducible_loss:.4f}"
        return (
            f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size}, "
            f"train={len(self.train):,} tokens, val={len(self.val):,} tokens, "
            f"irreducible_loss={loss})"
        )


def _check_ids(lowest, highest, vocab_size: int, what: str) -> None:
    if lowest < 0 or highest >= vocab_size:
        raise ValueError(f"{what}: token ids must lie in [0, {vocab_size - 1}] for vocab_size "
                         f"{vocab_size}, found ids from {lowest} to {highest}")  # fmt: skip


def _as_token_array(tokens: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(tokens, np.ndarray):
        tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"{what} must be a 1-D integer array, got shape {tokens.shape} and {tokens.dtype}"
        )
    return tokens


# ---------------------------------------------------------------------------- addition

IGNORE = -100  # a target the loss skips (torch's cross_entropy default ignore_index)


class AdditionTask:
    """k-digit addition written as a language, digits least significant first.

    Tokens 0–9 are digits, 10 is "+", 11 is "=". A problem a + b (a, b uniform on
    [0, 10^k)) is the sequence

        a_0 … a_{k−1} + b_0 … b_{k−1} = s_0 … s_k        (3k + 3 tokens, s = a + b)

    with a_0 the units digit: in this order each answer digit depends only on digits already
    seen and one carry, the order in which people add. The **prompt** is the first 2k + 2
    tokens, the **answer** the last k + 1 (s_k is the final carry, 0 or 1).
    """

    PLUS, EQUALS = 10, 11
    vocab_size = 12

    def __init__(self, digits: int = 4):
        if not isinstance(digits, int) or isinstance(digits, bool) or not 1 <= digits <= 18:
            raise ValueError(f"AdditionTask: digits must be an int in [1, 18], got {digits!r}")
        self.digits = digits
        self.prompt_len = 2 * digits + 2
        self.answer_len = digits + 1
        self.context = 3 * digits + 2  # what the model reads: the sequence minus its last token

    def problems(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """``n`` random problems: prompts ``(n, 2k + 2)`` and their answers ``(n, k + 1)``."""
        if n < 1:
            raise ValueError(f"AdditionTask: n must be ≥ 1, got {n}")
        k = self.digits
        a = torch.randint(10, (n, k), generator=generator)
        b = torch.randint(10, (n, k), generator=generator)
        answer = torch.zeros(n, k + 1, dtype=torch.long)
        carry = torch.zeros(n, dtype=torch.long)
        for i in range(k):
            column = a[:, i] + b[:, i] + carry
            answer[:, i], carry = column % 10, column // 10
        answer[:, k] = carry
        prompt = torch.cat([a, torch.full((n, 1), self.PLUS), b, torch.full((n, 1), self.EQUALS)],
                           dim=1)  # fmt: skip
        return prompt.to(device), answer.to(device)

    def batch(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Next-token pairs ``(x, y)``, both ``(n, 3k + 2)``: ``y`` is ``x`` shifted by one, with
        the prompt's targets set to ``IGNORE`` so that the loss counts answer tokens only."""
        prompt, answer = self.problems(n, generator)
        seq = torch.cat([prompt, answer], dim=1)
        x, y = seq[:, :-1], seq[:, 1:].clone()
        y[:, : self.prompt_len - 1] = IGNORE
        return x.to(device), y.to(device)

    @staticmethod
    def value(digits: torch.Tensor) -> torch.Tensor:
        """The integer a digit string (least significant first, last dim) stands for.

        Every entry must be a digit 0–9; use :meth:`decode` for sampled answers, which may
        hold other tokens."""
        if ((digits < 0) | (digits > 9)).any():
            raise ValueError("AdditionTask.value: a token is not a digit 0–9; decode() maps "
                             "such answers to −1")  # fmt: skip
        powers = 10 ** torch.arange(digits.shape[-1], device=digits.device)
        return (digits.long() * powers).sum(-1)

    @staticmethod
    def decode(answers: torch.Tensor) -> torch.Tensor:
        """The integer each answer (last dim, least significant digit first) stands for, or −1
        for an answer holding any token that is not a digit ("+" or "=" sampled by a model), so
        that a malformed answer never equals a right one."""
        digit = (answers >= 0) & (answers <= 9)
        powers = 10 ** torch.arange(answers.shape[-1], device=answers.device)
        values = (answers.long().clamp(0, 9) * powers).sum(-1)
        return torch.where(digit.all(-1), values, torch.full_like(values, -1))

    def __repr__(self) -> str:
        return f"AdditionTask(digits={self.digits})"


# ------------------------------------------------------------------------ Markov language


class MarkovLanguage(TokenData):
    r"""A synthetic language with a known entropy rate: a sparse random Markov chain.

    The state is the last ``order`` tokens, s_t = (x_{t-order}, …, x_{t-1}), encoded as the
    integer Σ_i x_{t-order+i}·V^{order-1-i} (V = ``vocab_size``, so there are V^order states).
    Every state s gets ``branching`` = b distinct successor tokens c_1(s), …, c_b(s), drawn
    at random, and the k-th of them has the Zipf probability

        p_k = k^(−zipf) / Σ_{j=1}^{b} j^(−zipf).

    With probability ε = ``restart`` the next token is instead drawn uniformly from the whole
    vocabulary (a restart), which makes the chain irreducible and aperiodic, so its
    stationary distribution π is unique. The next-token distribution is therefore

        q(c | s) = (1 − ε)·Σ_k p_k·[c = c_k(s)] + ε/V,

    π solves π = πQ (``stationary``, found by power iteration on the sparse structure), and
    the entropy rate, the expected loss of the best possible predictor in nats per token, is

        H = Σ_s π(s)·H(q(·|s)),  H(q(·|s)) = −Σ_k q_k log q_k − (V − b)·(ε/V)·log(ε/V),

    with q_k = (1 − ε)·p_k + ε/V. (Every state here has the same p up to a permutation, so
    H(q(·|s)) does not depend on s; π still sets the token frequencies.) With ε = 0 the chain
    may be reducible or periodic: π is then the limit of the lazy chain started from the
    uniform distribution, still stationary, and H is still the loss of the ideal predictor.

    Streams are generated vectorized: independent segments of ``segment_length`` tokens, each
    started from π (its first ``order`` tokens are the state), run in parallel and
    concatenated. The few seams between segments are the only places where the stream does
    not follow the chain. In a window of a ``batch``, the first ``order − 1`` targets lack
    part of their state, so a model's loss there is above H.
    """

    def __init__(
        self,
        vocab_size: int = 256,
        order: int = 1,
        branching: int = 8,
        zipf: float = 1.2,
        n_train_tokens: int = 2**20,
        n_val_tokens: int = 2**17,
        seed: int = 0,
        restart: float = 1e-3,
        segment_length: int = 4096,
    ):
        _check_markov_args(vocab_size, order, branching, zipf, restart, segment_length)
        for name, value in (("n_train_tokens", n_train_tokens), ("n_val_tokens", n_val_tokens),
                            ("seed", seed)):  # fmt: skip
            check_int("MarkovLanguage", name, value, low=0)
        if n_train_tokens < 1 or n_val_tokens < 1:
            raise ValueError(
                "MarkovLanguage: n_train_tokens and n_val_tokens must be ≥ 1, "
                f"got {n_train_tokens}, {n_val_tokens}"
            )
        self.order, self.branching, self.zipf = order, branching, float(zipf)
        self.restart, self.segment_length, self.seed = float(restart), segment_length, seed
        self.vocab_size, self.n_states = vocab_size, vocab_size**order  # set before the chain
        chain_rng, train_rng, val_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
        )
        ranks = np.arange(1, branching + 1, dtype=np.float64)
        self.rank_probs = ranks ** (-self.zipf) / np.sum(ranks ** (-self.zipf))
        self.successors = _random_successors(self.n_states, vocab_size, branching, chain_rng)
        # Next state after emitting successor k from state s: drop the oldest token.
        suffix = np.arange(self.n_states, dtype=np.int64) % vocab_size ** (order - 1)
        self._next_states = suffix[:, None] * vocab_size + self.successors
        self.stationary = self._stationary_distribution()
        entropy = self._entropy_rate()
        super().__init__(
            train=self._generate(n_train_tokens, train_rng),
            val=self._generate(n_val_tokens, val_rng),
            vocab_size=vocab_size,
            name=f"markov(V={vocab_size}, order={order}, b={branching}, seed={seed})",
            irreducible_loss=entropy,
        )

    def entropy_rate(self) -> float:
        """H = Σ_s π(s)·H(q(·|s)) in nats per token: the irreducible loss of this language."""
        assert self.irreducible_loss is not None
        return self.irreducible_loss

    # The chain ---------------------------------------------------------------------------

    def step_distribution(self, dist: np.ndarray) -> np.ndarray:
        """One step of the chain on a distribution over states: returns ``dist @ Q``."""
        V = self.vocab_size
        mass = (1.0 - self.restart) * dist[:, None] * self.rank_probs[None, :]
        out = np.bincount(self._next_states.ravel(), mass.ravel(), minlength=self.n_states)
        if self.restart > 0:
            # a restart from s = (a, rest) goes to (rest, c) for every c with mass ε/V
            suffix_mass = dist.reshape(V, -1).sum(axis=0)
            out += np.repeat(suffix_mass, V) * (self.restart / V)
        return out

    def _stationary_distribution(self, tol: float = 1e-13, max_iter: int = 100_000) -> np.ndarray:
        """π = πQ by power iteration of the lazy chain (I + Q)/2 from the uniform distribution,
        to ‖Δπ‖₁ < ``tol``.

        The lazy chain has the same fixed points as Q, and an eigenvalue λ of Q becomes
        (1 + λ)/2: a cycle of Q (λ on or near the unit circle away from 1, as in a nearly
        deterministic chain with a small restart probability) no longer keeps the iterates
        oscillating, and with ε = 0 the iteration converges even when Q is periodic.
        """
        pi = np.full(self.n_states, 1.0 / self.n_states)
        for _ in range(max_iter):
            new = 0.5 * (self.step_distribution(pi) + pi)
            new /= new.sum()
            if np.abs(new - pi).sum() < tol:
                return new
            pi = new
        raise RuntimeError(
            f"MarkovLanguage: the stationary distribution did not converge in {max_iter} "
            f"iterations (order={self.order}, branching={self.branching}, "
            f"restart={self.restart}): the chain mixes too slowly; use a larger restart "
            "probability or branching"
        )

    def _state_entropies(self) -> np.ndarray:
        """H(q(·|s)) for every state s, in nats."""
        V, eps, b = self.vocab_size, self.restart, self.branching
        q = (1.0 - eps) * self.rank_probs + eps / V
        h = -np.sum(q[q > 0] * np.log(q[q > 0]))  # 0·log 0 = 0 (underflowed ranks)
        if eps > 0:
            h -= (V - b) * (eps / V) * math.log(eps / V)
        return np.full(self.n_states, h)

    def _entropy_rate(self) -> float:
        return float(self.stationary @ self._state_entropies())

    def log_prob(self, tokens: np.ndarray) -> np.ndarray:
        """log q(x_t | x_{t-order}, …, x_{t-1}) for t = order, …, len(tokens) − 1 (nats).

        The mean of −``log_prob`` over a long stream estimates ``entropy_rate()``. At the
        seams between generated segments (targets at positions t with t mod
        ``segment_length`` < ``order``) the stream does not follow the chain: leave them out.
        """
        x = np.asarray(tokens, dtype=np.int64)
        V, k = self.vocab_size, self.order
        if x.ndim != 1 or len(x) <= k:
            raise ValueError(f"log_prob needs a 1-D stream of more than {k} tokens")
        states = np.zeros(len(x) - k, dtype=np.int64)
        for i in range(k):
            states = states * V + x[i : len(x) - k + i]
        nxt = x[k:]
        p = ((self.successors[states] == nxt[:, None]) * self.rank_probs).sum(axis=1)
        with np.errstate(divide="ignore"):  # −inf marks an impossible transition (a seam)
            return np.log((1.0 - self.restart) * p + self.restart / V)

    # Generation -----------------------------------------------------------------------------

    def _generate(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` tokens: ⌈n/L⌉ independent stationary segments of L tokens, run in parallel."""
        V, k, eps = self.vocab_size, self.order, self.restart
        length = max(min(n, self.segment_length), k)
        n_seg = -(-n // length)
        out = np.empty((length, n_seg), dtype=np.uint16)
        cdf = np.cumsum(self.stationary)
        state = np.searchsorted(cdf / cdf[-1], rng.random(n_seg), side="right")
        state = np.minimum(state, self.n_states - 1)
        for i in range(k):  # the first `order` tokens of a segment spell out its state
            out[i] = state // V ** (k - 1 - i) % V
        steps = length - k
        ranks = _sample_categorical(self.rank_probs, (steps, n_seg), rng)
        restarts = rng.random((steps, n_seg)) < eps if eps > 0 else None
        uniform = rng.integers(0, V, size=(steps, n_seg)) if eps > 0 else None
        suffix = V ** (k - 1)
        for t in range(steps):
            tok = self.successors[state, ranks[t]]
            if restarts is not None:
                tok = np.where(restarts[t], uniform[t], tok)
            out[k + t] = tok
            state = (state % suffix) * V + tok
        return np.ascontiguousarray(out.T).ravel()[:n]


MAX_MARKOV_TRANSITIONS = 2**24


def _check_markov_args(
    vocab_size: int, order: int, branching: int, zipf: float, restart: float, segment_length: int
) -> None:
    for name, value in (("vocab_size", vocab_size), ("order", order), ("branching", branching),
                        ("segment_length", segment_length)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"MarkovLanguage: {name} must be an int, got {value!r}")
    for name, value in (("zipf", zipf), ("restart", restart)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(value):  # fmt: skip
            raise ValueError(f"MarkovLanguage: {name} must be a finite number, got {value!r}")
    if not 1 <= vocab_size <= MAX_UINT16_VOCAB:
        raise ValueError(
            f"MarkovLanguage: vocab_size must be in [1, {MAX_UINT16_VOCAB}] (tokens are "
            f"stored as uint16), got {vocab_size}"
        )
    if order < 1:
        raise ValueError(f"MarkovLanguage: order must be ≥ 1, got {order}")
    if not 1 <= branching <= vocab_size:
        raise ValueError(
            f"MarkovLanguage: branching must be in [1, vocab_size={vocab_size}], got {branching}"
        )
    if vocab_size**order * branching > MAX_MARKOV_TRANSITIONS:
        raise ValueError(
            f"MarkovLanguage: vocab_size**order * branching = {vocab_size**order * branching:,}"
            f" transitions is more than {MAX_MARKOV_TRANSITIONS:,}; lower one of them"
        )
    if zipf < 0:
        raise ValueError(f"MarkovLanguage: zipf must be ≥ 0, got {zipf}")
    if not 0 <= restart <= 1:
        raise ValueError(f"MarkovLanguage: restart must be in [0, 1], got {restart}")
    if segment_length <= order:
        raise ValueError(
            f"MarkovLanguage: segment_length must be > order={order}, got {segment_length}"
        )


def _random_successors(
    n_states: int, vocab_size: int, branching: int, rng: np.random.Generator
) -> np.ndarray:
    """For every state, ``branching`` distinct tokens in random order (vectorized Floyd)."""
    chosen = np.empty((n_states, branching), dtype=np.int64)
    for i, j in enumerate(range(vocab_size - branching, vocab_size)):
        t = rng.integers(0, j + 1, size=n_states)
        taken = (chosen[:, :i] == t[:, None]).any(axis=1)
        chosen[:, i] = np.where(taken, j, t)
    # Floyd's algorithm draws a uniform random subset; shuffle each row for a random order.
    return rng.permuted(chosen, axis=1)


def _sample_categorical(
    probs: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator
) -> np.ndarray:
    """Indices drawn i.i.d. from ``probs`` (inverse-CDF sampling)."""
    cdf = np.cumsum(probs)
    idx = np.searchsorted(cdf / cdf[-1], rng.random(shape), side="right")
    return np.minimum(idx, len(probs) - 1)


# ---------------------------------------------------------------------------- byte corpus

_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}
_SEPARATOR = b"\n"
_CACHE_FORMAT = 1


def byte_corpus(
    paths: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    pattern: str = "*.py",
    max_bytes: int | None = None,
    val_fraction: float = 0.1,
    cache_dir: str | os.PathLike | None = None,
) -> TokenData:
    """A byte-level corpus (vocab 256) from local text files, split into train/val by file.

    ``paths``: a file, a folder, or a list of them; default: the standard library's source
    folder (``sysconfig.get_paths()["stdlib"]``). Folders are searched recursively for file
    names matching ``pattern`` (``site-packages``, ``dist-packages`` and ``__pycache__`` are
    skipped), in order of relative path; files named directly are always taken.

    A file goes to validation when crc32(relative path) mod 1000 < 1000·``val_fraction``,
    so the split is stable as files come and go (if no file, or every file, lands in
    validation, the single file closest to the threshold is moved); a single file is split by
    bytes instead, its last ⌈val_fraction·n⌉ bytes for validation. Files are concatenated,
    each followed by a newline; with ``max_bytes`` the validation stream keeps its first
    ⌈val_fraction·max_bytes⌉ bytes and the training stream the rest of ``max_bytes``.

    The streams are cached once as uint8 ``.npy`` files in ``cache_dir/<key>`` (default
    ``cache_dir``: ``~/.cache/optimal_scaling/byte_corpus``), where the key hashes the
    arguments and every file's path, size and mtime; later calls memory-map them.
    """
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"byte_corpus: max_bytes must be ≥ 1 or None, got {max_bytes}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"byte_corpus: val_fraction must be in [0, 1), got {val_fraction}")
    roots = _resolve_paths(paths)
    files = [f for root in roots for f in _files_under(root, pattern)]
    files = _unique_paths(files)
    stats = [(str(path), *_size_mtime(path)) for path, _ in files]
    where = ", ".join(str(r) for r in roots)
    if sum(size for _, size, _ in stats) == 0:
        raise ValueError(f"byte_corpus: the files matching {pattern!r} under {where} are empty")
    key = _cache_key([str(r) for r in roots], pattern, max_bytes, val_fraction, stats)
    folder = _default_cache_root() if cache_dir is None else Path(cache_dir).expanduser()
    folder = folder / key
    name = "bytes:" + ("stdlib" if paths is None else "+".join(r.name for r in roots))
    cached = _load_cache(folder)
    if cached is None:
        if len(files) == 1 and val_fraction > 0:  # one file: its last bytes are validation
            stream = _concat([files[0][0]], max_bytes)
            cut = len(stream) - math.ceil(val_fraction * len(stream))
            train, val = stream[:cut], stream[cut:]
        else:
            train_files, val_files = _split_by_file(files, val_fraction)
            val_cap = (None if max_bytes is None
                       else min(max_bytes, math.ceil(val_fraction * max_bytes)))  # fmt: skip
            train_cap = None if max_bytes is None else max_bytes - (val_cap or 0)
            train, val = _concat(train_files, train_cap), _concat(val_files, val_cap)
        if len(train) == 0:
            raise ValueError(
                f"byte_corpus: no training bytes from {pattern!r} under {where} "
                f"(the training files are empty or max_bytes={max_bytes} is too small)"
            )
        meta = {"name": name, "files": len(files), "train": len(train), "val": len(val)}
        _save_cache(folder, train, val, meta)
        cached = train, val
    return TokenData(cached[0], cached[1], vocab_size=256, name=name)


def _default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "optimal_scaling" / "byte_corpus"


def _resolve_paths(paths: str | os.PathLike | Iterable[str | os.PathLike] | None) -> list[Path]:
    if paths is None:
        paths = [sysconfig.get_paths()["stdlib"]]
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    roots = [Path(p).expanduser() for p in paths]
    if not roots:
        raise ValueError("byte_corpus: paths is an empty list")
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"byte_corpus: {root} does not exist")
        if not (root.is_file() or root.is_dir()):  # os.walk would find nothing in it
            raise ValueError(f"byte_corpus: {root} is not a regular file or a folder (a device "
                             "or a pipe)")  # fmt: skip
    return [root.resolve() for root in roots]


def _files_under(root: Path, pattern: str) -> list[tuple[Path, str]]:
    """(path, relative path) of the files under ``root`` matching ``pattern``, sorted."""
    if root.is_file():
        return [(root, root.name)]
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in fnmatch.filter(names, pattern):
            path = Path(folder) / name
            if path.is_file():
                found.append((path, path.relative_to(root).as_posix()))
    if not found:
        raise FileNotFoundError(f"byte_corpus: no files matching {pattern!r} under {root}")
    return sorted(found, key=lambda f: f[1])


def _unique_paths(files: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """Drop files already reached through an earlier path, so none is read twice."""
    seen: set[Path] = set()
    unique = []
    for path, rel in files:
        if path not in seen:
            seen.add(path)
            unique.append((path, rel))
    return unique


def _size_mtime(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _cache_key(
    roots: list[str],
    pattern: str,
    max_bytes: int | None,
    val_fraction: float,
    stats: list[tuple[str, int, int]],
) -> str:
    blob = json.dumps(
        {
            "format": _CACHE_FORMAT,
            "roots": roots,
            "pattern": pattern,
            "max_bytes": max_bytes,
            "val_fraction": val_fraction,
            "files": stats,
        }
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _split_hash(rel: str) -> int:
    return zlib.crc32(rel.encode("utf-8")) % 1000


def _split_by_file(
    files: list[tuple[Path, str]], val_fraction: float
) -> tuple[list[Path], list[Path]]:
    """Train and validation files: validation when crc32(relative path) mod 1000 < 1000·f."""
    if val_fraction == 0:
        return [path for path, _ in files], []
    threshold = val_fraction * 1000
    # one decision per file (two files may share a relative path under different roots)
    order = [(_split_hash(rel), rel, i) for i, (_, rel) in enumerate(files)]
    is_val = [h < threshold for h, _, _ in order]
    if not any(is_val):
        is_val[min(order)[2]] = True
    if all(is_val):
        is_val[max(order)[2]] = False
    train = [path for (path, _), v in zip(files, is_val, strict=True) if not v]
    val = [path for (path, _), v in zip(files, is_val, strict=True) if v]
    return train, val


def _read_prefix(path: Path, limit: int | None) -> bytes:
    """The first ``limit`` bytes of ``path`` (all of it when ``limit`` is None)."""
    with open(path, "rb") as f:
        return f.read() if limit is None else f.read(limit)


def _concat(files: list[Path], cap: int | None) -> np.ndarray:
    """The files' bytes, each followed by a newline, cut at ``cap`` bytes."""
    chunks: list[bytes] = []
    total = 0
    for path in files:
        if cap is not None and total >= cap:
            break
        data = _read_prefix(path, None if cap is None else cap - total)
        chunks += [data, _SEPARATOR]
        total += len(data) + len(_SEPARATOR)
    out = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    return out if cap is None else out[:cap]


def _load_cache(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (train, val), or None when the cache is absent or incomplete."""
    if not (folder / "meta.json").is_file():
        return None
    try:
        return _load_npy(folder / "train.npy"), _load_npy(folder / "val.npy")
    except (OSError, ValueError):
        return None


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # older numpy cannot memory-map an empty array
        return np.load(path)


def _save_cache(folder: Path, train: np.ndarray, val: np.ndarray, meta: dict) -> None:
    """Write train.npy, val.npy, then meta.json (the "complete" marker), each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "train.npy", lambda f: np.save(f, train))
    atomic_write(folder / "val.npy", lambda f: np.save(f, val))
    atomic_write(folder / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))


# --------------------------------------------------------------------------- token shards


#: Shard dtypes: uint16 holds vocabularies up to 2^16 (GPT-2's), uint32 larger ones (Llama 3's).
SHARD_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
SHARD_META = "meta.json"


def shard_dtype(vocab_size: int) -> str:
    """The smallest shard dtype that holds token ids below ``vocab_size``."""
    if not 1 <= vocab_size <= 2**32:
        raise ValueError(f"shard_dtype: vocab_size must be in [1, 2^32], got {vocab_size}")
    return "uint16" if vocab_size <= MAX_UINT16_VOCAB else "uint32"


def write_token_shard(tokens: np.ndarray | torch.Tensor, path: str | os.PathLike,
                      dtype: str = "uint16") -> Path:  # fmt: skip
    """Write a 1-D stream of token ids as raw ``dtype`` (nanoGPT's ``train.bin`` is uint16).

    ``np.memmap(path, dtype=dtype, mode="r")`` reads it back. The file is written atomically
    (temporary file, then ``os.replace``); parent folders are created.
    """
    if dtype not in SHARD_DTYPES:
        raise ValueError(f"write_token_shard: unknown dtype {dtype!r}; choose uint16 or uint32")
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    arr = np.asarray(tokens)
    path = Path(path)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"write_token_shard({path}): tokens must be a 1-D integer array, got shape "
            f"{arr.shape} and {arr.dtype}"
        )
    limit = int(np.iinfo(SHARD_DTYPES[dtype]).max) + 1
    if arr.size and (arr.min() < 0 or arr.max() >= limit):
        raise ValueError(
            f"write_token_shard({path}): token ids must be in [0, {limit}) to fit {dtype}, "
            f"got min {arr.min()} and max {arr.max()}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(arr.astype(SHARD_DTYPES[dtype]).tobytes()))
    return path


def write_token_shards(folder: str | os.PathLike, train: np.ndarray, val: np.ndarray,
                       vocab_size: int) -> Path:  # fmt: skip
    """``folder/train.bin``, ``val.bin`` and ``meta.json`` (dtype, vocab_size, tokens).

    The dtype is uint16 when the vocabulary fits, else uint32. Every id must be below
    ``vocab_size``, and neither split may be empty. Each file is written atomically, and the
    three together too, as far as a reader can tell: ``meta.json`` first becomes an
    "incomplete" marker that :func:`token_shards` refuses, and the real description is
    written last, so an interrupted write (or overwrite) never reads as a mix of two datasets.
    """
    folder = Path(folder)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int | np.integer):
        raise ValueError(f"write_token_shards({folder}): vocab_size must be an int, got "
                         f"{vocab_size!r}")  # fmt: skip
    dtype = shard_dtype(vocab_size)
    counts = {}
    arrays = [np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t)
              for t in (train, val)]  # fmt: skip
    empty = [split for split, arr in zip(SPLITS, arrays, strict=True) if arr.size == 0]
    if empty:  # (token_shards could not read it back, and a run needs both)
        raise ValueError(f"write_token_shards({folder}): the {' and '.join(empty)} split is "
                         "empty; both need tokens (for a byte corpus: val_fraction > 0)")
    for split, arr in zip(SPLITS, arrays, strict=True):  # all of it before touching folder
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"write_token_shards({folder}): {split} must be a 1-D integer "
                             f"array, got shape {arr.shape} and {arr.dtype}")  # fmt: skip
        if arr.min() < 0 or arr.max() >= vocab_size:
            raise ValueError(f"write_token_shards({folder}): {split}'s token ids must be in "
                             f"[0, vocab_size = {vocab_size}), got min {arr.min()} and max "
                             f"{arr.max()}")  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / SHARD_META, lambda f: f.write(json.dumps(_INCOMPLETE).encode()))
    for split, arr in zip(SPLITS, arrays, strict=True):
        write_token_shard(arr, folder / f"{split}.bin", dtype)
        counts[split] = int(arr.size)
    meta = {"dtype": dtype, "vocab_size": int(vocab_size), "tokens": counts}
    atomic_write(folder / SHARD_META, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return folder


_INCOMPLETE = {"incomplete": "write_token_shards was interrupted; write the shards again"}


def token_shards(folder: str | os.PathLike, vocab_size: int | None = None) -> TokenData:
    """Memory-map ``folder/train.bin`` and ``folder/val.bin``.

    With ``meta.json`` (:func:`write_token_shards`): its dtype (uint16 or uint32) and token
    counts are checked against the files (a truncated shard is an error), a ``vocab_size``
    given here must equal its vocabulary, and each batch's ids are checked against it (the
    files are not scanned whole). Without it: nanoGPT's raw uint16;
    ``vocab_size`` defaults to 1 + the largest token id (scanned in chunks).
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"token_shards: {folder} is not a folder (the shards' folder "
                                 "holds train.bin and val.bin)")  # fmt: skip
    if not folder.is_dir():
        raise FileNotFoundError(f"token_shards: folder {folder} does not exist")
    meta_path = folder / SHARD_META
    if not meta_path.is_file():
        train, val = (_open_shard(folder / f"{s}.bin") for s in SPLITS)
        if vocab_size is None:
            vocab_size = 1 + max(_chunked_max(train), _chunked_max(val))
        elif not 1 <= vocab_size <= MAX_UINT16_VOCAB:
            raise ValueError(f"token_shards: vocab_size must be in [1, 65536] for uint16 shards "
                             f"without {SHARD_META}, got {vocab_size}")  # fmt: skip
        else:  # ids at or above the vocabulary would fail deep inside the embedding
            for split, arr in zip(SPLITS, (train, val), strict=True):
                _check_ids(0, _chunked_max(arr), vocab_size, f"token_shards: {folder}/{split}.bin")
        return TokenData(train, val, vocab_size=vocab_size, name=f"shards:{folder.name}")
    try:
        meta = json.loads(meta_path.read_text())
        if meta == _INCOMPLETE:
            raise RuntimeError(f"token_shards: {folder} is incomplete: writing it was "
                               "interrupted; write the shards again")  # fmt: skip
        dtype, vocab, counts = meta["dtype"], meta["vocab_size"], meta["tokens"]
        if not isinstance(dtype, str):
            raise TypeError(f"'dtype' must be a name (uint16 or uint32), got {dtype!r}")
        if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
            raise TypeError(f"'vocab_size' must be an int ≥ 1, got {vocab!r}")
        if (not isinstance(counts, dict) or set(counts) != set(SPLITS)
                or not all(type(v) is int and v > 0 for v in counts.values())):  # fmt: skip
            raise TypeError(f"'tokens' must map each of {list(SPLITS)} to its count (an int "
                            f"> 0), got {counts!r}")  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"token_shards: {meta_path} is not a shard description "
                         f"(dtype, vocab_size, tokens): {exc}") from None  # fmt: skip
    if dtype not in SHARD_DTYPES:
        raise ValueError(f"token_shards: {meta_path}: unknown dtype {dtype!r}")
    if vocab_size is not None and vocab_size != vocab:
        raise ValueError(f"token_shards: {folder} holds a vocabulary of {vocab} tokens "
                         f"({SHARD_META}), but vocab_size = {vocab_size} was asked "
                         "for")  # fmt: skip
    arrays = [_open_shard(folder / f"{s}.bin", dtype, counts.get(s)) for s in SPLITS]
    return TokenData(*arrays, vocab_size=vocab, name=f"shards:{folder.name}")


def _open_shard(path: Path, dtype: str = "uint16", count: int | None = None) -> np.memmap:
    if not path.is_file():
        raise FileNotFoundError(f"token_shards: {path} does not exist")
    size, item = path.stat().st_size, np.dtype(SHARD_DTYPES[dtype]).itemsize
    if count is not None and size != count * item:
        raise ValueError(f"token_shards: {path} has {size} bytes but {SHARD_META} says "
                         f"{count} {dtype} tokens ({count * item} bytes): truncated or "
                         "overwritten")  # fmt: skip
    if size == 0:
        raise ValueError(f"token_shards: {path} is empty")
    if size % item:
        raise ValueError(f"token_shards: {path} has an odd size ({size} bytes); not {dtype}")
    return np.memmap(path, dtype=SHARD_DTYPES[dtype], mode="r")


def _chunked_max(tokens: np.ndarray, chunk: int = 2**24) -> int:
    return max(int(tokens[i : i + chunk].max()) for i in range(0, len(tokens), chunk))
