"""The CUDA-graph cache's bookkeeping, with a stand-in for the capture (no GPU needed); the
real capture is checked against eager results in tests/test_gpu.py."""

from __future__ import annotations

import pytest
import torch

from optimal_scaling.graphs import Captured, GraphCache


class FakeGraph:
    """Replays fn on the static input, as a captured graph would."""

    def __init__(self, fn, static_in: torch.Tensor, static_out: torch.Tensor) -> None:
        self.fn, self.static_in, self.static_out = fn, static_in, static_out

    def replay(self) -> None:
        self.static_out.copy_(self.fn(self.static_in))


def fake_capture(fn, x: torch.Tensor) -> Captured:
    static_in = x.clone()
    static_out = torch.empty_like(fn(static_in))
    return Captured(FakeGraph(fn, static_in, static_out), static_in, static_out)  # type: ignore[arg-type]


def test_first_call_eager_second_captures_later_ones_replay():
    calls = []

    def fn(x):
        calls.append(x)
        return 2 * x + 1

    cache = GraphCache(capture=fake_capture)
    xs = [torch.full((3,), float(k)) for k in range(4)]
    outs = [cache("k", fn, x) for x in xs]
    for x, out in zip(xs, outs, strict=True):  # every call reads its own input
        torch.testing.assert_close(out, 2 * x + 1)
    assert (cache.eager, cache.captures, cache.replays, len(cache)) == (1, 1, 3, 1)
    assert calls[0] is xs[0]  # the first call ran fn on the caller's tensor
    # results are copies: the next replay does not overwrite what a caller holds
    assert all(o.data_ptr() != cache._graphs["k"].static_out.data_ptr() for o in outs)


def test_a_failed_capture_is_a_clear_error_not_a_silent_fallback():
    def broken(fn, x):
        raise RuntimeError("operation not permitted when stream is capturing")

    cache = GraphCache(capture=broken)
    cache("k", lambda x: x * 3, torch.ones(2))  # eager
    with pytest.raises(RuntimeError, match="OPTIMAL_SCALING_CUDA_GRAPHS=0") as info:
        cache("k", lambda x: x * 3, torch.ones(2))
    assert "operation not permitted" in str(info.value) and len(cache) == 0


def test_inside_another_capture_it_always_runs_eagerly(monkeypatch):
    from optimal_scaling import graphs

    cache = GraphCache(capture=fake_capture)
    x = torch.ones(2)
    for _ in range(2):
        cache("k", lambda t: t + 1, x)  # eager, then captured
    monkeypatch.setattr(graphs, "_capturing", lambda x: True)
    torch.testing.assert_close(cache("k", lambda t: t * 5, x), 5 * x)  # fn itself, not a replay
    torch.testing.assert_close(cache("new", lambda t: t * 5, x), 5 * x)
    assert (cache.eager, cache.captures, cache.replays) == (3, 1, 1) and "new" not in cache._seen


def test_least_recently_used_graphs_are_dropped():
    cache = GraphCache(maxsize=2, capture=fake_capture)
    x = torch.ones(2)
    for key in ("a", "a", "b", "b", "a", "c", "c"):  # 'a' used after 'b': 'b' goes
        cache(key, lambda t: t + 1, x)
    assert list(cache._graphs) == ["a", "c"]
    cache.clear()
    assert len(cache) == 0
    cache("a", lambda t: t + 1, x)
    assert cache.captures == 3 and len(cache) == 0  # forgotten: eager first again
    with pytest.raises(ValueError, match="maxsize must be ≥ 1"):
        GraphCache(maxsize=0)


def test_keys_are_separate():
    cache = GraphCache(capture=fake_capture)
    x = torch.arange(3.0)
    for _ in range(3):
        a = cache(("double",), lambda t: 2 * t, x)
        b = cache(("square",), lambda t: t * t, x)
    torch.testing.assert_close(a, 2 * x)
    torch.testing.assert_close(b, x * x)
    assert cache.captures == 2 and cache.replays == 4  # (capture + replay, then replay) × 2
