"""Details of the CUDA-only paths checked on the CPU with stand-ins: the graph capture's order
of operations, the graph rules and key, the routing to the graph cache, the batched LMOs and
the benchmark's CUDA-only methods."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from test_graphs import fake_capture  # (tests/ is on sys.path under pytest's default imports)

from optimal_scaling import bench, graphs
from optimal_scaling import newton_schulz as ns
from optimal_scaling.duality import BiasRMS, ColNorm
from optimal_scaling.graphs import GraphCache
from optimal_scaling.optim import Scion
from optimal_scaling.optim import scion as scion_module
from optimal_scaling.optim.scion import lmo


class OnCuda:
    """What the rules read of a CUDA tensor: its shape and is_cuda."""

    is_cuda = True

    def __init__(self, *shape: int) -> None:
        self.shape = shape


class FakeCuda(torch.Tensor):
    """A CPU tensor that says it is on CUDA (for code that only branches on is_cuda)."""

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True


# ------------------------------------------------------------------------------ capture()
@pytest.fixture
def cuda_log(monkeypatch):
    """torch.cuda's streams and graphs replaced by stand-ins that log what is done to them."""
    log: list[tuple] = []

    class Stream:
        def __init__(self, name: str = "side") -> None:
            self.name = name

        def wait_stream(self, other) -> None:
            log.append(("wait", self.name, other.name))

    class Graph:
        def capture_begin(self, capture_error_mode: str = "global") -> None:
            log.append(("begin", capture_error_mode))

        def capture_end(self) -> None:
            log.append(("end",))

    @contextlib.contextmanager
    def stream(s):
        log.append(("enter", s.name))
        yield
        log.append(("exit", s.name))

    current = Stream("current")
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "stream", stream)
    return log


def test_capture_warms_up_then_captures_on_a_side_stream_on_a_private_copy(cuda_log):
    x = torch.arange(6.0).reshape(2, 3).mT  # not contiguous
    seen = []

    def fn(t):
        seen.append(t)
        cuda_log.append(("fn",))
        return 2 * t

    got = graphs.capture(fn, x)
    assert cuda_log == [("wait", "side", "current"), ("enter", "side"), ("fn",),
                        ("begin", "thread_local"), ("fn",), ("end",), ("exit", "side"),
                        ("wait", "current", "side")]  # fmt: skip
    assert got.static_in is not x and got.static_in.is_contiguous()
    assert all(t is got.static_in for t in seen)  # fn never sees the caller's tensor
    torch.testing.assert_close(got.static_in, x, atol=0, rtol=0)
    torch.testing.assert_close(got.static_out, 2 * x, atol=0, rtol=0)
    got.static_in.copy_(torch.zeros(3, 2))  # what the cache does at a replay
    torch.testing.assert_close(x, torch.arange(6.0).reshape(2, 3).mT, atol=0, rtol=0)


def test_a_capture_that_raises_still_ends_the_capture(cuda_log):
    calls = []

    def fn(t):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("not permitted while capturing")
        return t + 1

    with pytest.raises(RuntimeError, match="not permitted"):
        graphs.capture(fn, torch.ones(3))
    assert cuda_log[-1] in {("end",), ("exit", "side")} and ("end",) in cuda_log


# ---------------------------------------------------------------------------- row panels
def test_row_panels_are_panel_rows_tall_with_a_short_last_one(monkeypatch):
    """m = 9 in panels of 4: rows 0–4, 4–8, 8–9, each product up to its panel's last row."""
    written = {"mm": [], "addmm": []}
    real_mm, real_addmm = torch.mm, torch.addmm

    def mm(a, b, out=None):
        written["mm"].append((a.shape[0], b.shape[1]))
        return real_mm(a, b, out=out)

    def addmm(c, a, b, beta=1, alpha=1, out=None):
        written["addmm"].append((a.shape[0], b.shape[1]))
        return real_addmm(c, a, b, beta=beta, alpha=alpha, out=out)

    monkeypatch.setattr(torch, "mm", mm)
    monkeypatch.setattr(torch, "addmm", addmm)
    ns.torch_steps(torch.randn(9, 13) / 13, [ns.MUON], panel_rows=4)
    assert written["mm"] == [(4, 4), (4, 8), (1, 9)]
    assert written["addmm"] == [(4, 4), (4, 8), (1, 9), (9, 13)]  # (the last: B X)


# ------------------------------------------------------------------------- graph rules, key
def test_graphs_are_for_problems_of_at_most_graph_max_flops():
    assert ns.GRAPH_MAX_FLOPS == 2**36
    assert ns.step_flops(1024, 15872) == 2**36  # exactly the limit: graphed
    assert ns._graphed(OnCuda(1024, 15872)) or not ns.CUDA_GRAPHS
    assert not ns._graphed(OnCuda(1024, 15873))
    assert not ns._graphed(OnCuda(2, 1024, 15872))


def test_graphs_limit_is_read_at_each_call(monkeypatch):
    monkeypatch.setattr(ns, "CUDA_GRAPHS", True)
    monkeypatch.setattr(ns, "GRAPH_MAX_FLOPS", 3 * ns.step_flops(16, 16))
    assert ns._graphed(OnCuda(3, 16, 16)) and ns._graphed(OnCuda(16, 16))
    assert not ns._graphed(OnCuda(4, 16, 16)) and not ns._graphed(OnCuda(3, 16, 17))
    monkeypatch.setattr(ns, "GRAPH_MAX_FLOPS", ns.step_flops(1024, 15872))
    assert ns._graphed(OnCuda(1024, 15872)) and not ns._graphed(OnCuda(1024, 15873))


def test_the_graph_key_also_names_device_schedule_autocast_and_panel_start(monkeypatch):
    G = torch.randn(4, 6)
    args = (torch.bfloat16, [ns.MUON] * 5, 1.01, 0.0)
    key = ns._graph_key(G, *args)
    others = [
        ns._graph_key(G.to("meta"), *args),
        ns._graph_key(G, torch.bfloat16, [ns.CUBIC] * 5, 1.01, 0.0),
        ns._graph_key(G, torch.bfloat16, ns.polar_express_coefficients(5), 1.01, 0.0),
    ]
    torch.set_autocast_enabled("cuda", True)
    try:
        others.append(ns._graph_key(G, *args))
    finally:
        torch.set_autocast_enabled("cuda", False)
    monkeypatch.setattr(ns, "PANEL_FROM", 2048)
    others.append(ns._graph_key(G, *args))
    assert len({key, *others}) == len(others) + 1


# ------------------------------------------------------------------------------- routing
@pytest.fixture
def graphed_everywhere(monkeypatch):
    """Every problem "graphed", with a cache whose capture is a stand-in."""
    cache = GraphCache(capture=fake_capture)
    monkeypatch.setattr(ns, "GRAPHS", cache)
    monkeypatch.setattr(ns, "_graphed", lambda X: True)
    return cache


def test_unchecked_torch_path_goes_through_the_graph_cache(graphed_everywhere, monkeypatch):
    g = torch.Generator().manual_seed(7)
    Gs = [torch.randn(12, 7, generator=g) for _ in range(3)]  # tall
    monkeypatch.setattr(ns, "_graphed", lambda X: False)
    want = [ns.orthogonalize(G, check=False) for G in Gs]
    monkeypatch.setattr(ns, "_graphed", lambda X: True)
    got = [ns.orthogonalize(G, check=False) for G in Gs]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    cache = graphed_everywhere
    assert (cache.eager, cache.captures, cache.replays) == (1, 1, 2)


def test_checked_calls_and_other_backends_never_use_graphs(graphed_everywhere, monkeypatch):
    G = torch.randn(6, 9)
    ns.orthogonalize(G, check=True)
    ns.orthogonalize(G)  # CPU: checked by default
    from optimal_scaling import kernels

    monkeypatch.setattr(ns, "_backend", lambda backend, X, dtype: "triton")
    monkeypatch.setattr(kernels, "ns_step", lambda X, a, b, c: ns.torch_step(X, a, b, c),
                        raising=False)  # fmt: skip
    ns.orthogonalize(G, check=False)
    cache = graphed_everywhere
    assert (cache.eager, cache.captures, cache.replays, len(cache._seen)) == (0, 0, 0, 0)


# ------------------------------------------------------------------------ batching helpers
def test_orthogonalize_each_never_stacks_across_devices():
    mats = [torch.ones(4, 6), torch.ones(4, 6, device="meta"), torch.ones(6, 4)]
    got = ns.orthogonalize_each(mats, lambda W: W * 2)
    assert [o.device.type for o in got] == ["cpu", "meta", "cpu"]
    assert [tuple(o.shape) for o in got] == [(4, 6), (4, 6), (6, 4)]


def test_normalize_unchecked_turns_a_matrix_with_nan_into_nan_only_that_one():
    X = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(8))
    X[0, 1, 2] = float("nan")
    out = ns.normalize(X, check=False)
    assert out[0].isnan().all()
    want = X[1] / (1.01 * torch.linalg.matrix_norm(X[1].double())).float()
    torch.testing.assert_close(out[1], want, atol=1e-6, rtol=0)


def test_spectral_directions_merge_transposes_on_cuda_only():
    assert scion_module._merge_transposes(OnCuda(4, 8))
    assert not scion_module._merge_transposes(torch.zeros(4, 8))


def test_batched_bias_lmos_keep_the_maps_finite_check(monkeypatch):
    """A map built with check_finite=False lets NaN through, batched or not."""
    bad = torch.full((5,), float("nan"))
    work = [
        (None, bad, BiasRMS(check_finite=False)),
        (None, torch.ones(5), BiasRMS(check_finite=False)),
    ]
    for (_, d, m), out in zip(work, Scion._lmos({"transpose": False}, work), strict=True):
        torch.testing.assert_close(out, lmo(m, d), atol=1e-12, rtol=0, equal_nan=True)


def test_transposed_shapes_of_non_spectral_maps_are_not_merged(monkeypatch):
    monkeypatch.setattr(scion_module, "_merge_transposes", lambda d: True)
    g = torch.Generator().manual_seed(9)
    work = [(None, torch.randn(5, 3, generator=g), ColNorm()),
            (None, torch.randn(3, 5, generator=g), ColNorm())]  # fmt: skip
    for (_, d, m), out in zip(work, Scion._lmos({"transpose": False}, work), strict=True):
        torch.testing.assert_close(out, lmo(m, d), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ benchmark
def test_torch_dense_is_unchecked_without_panels_and_in_the_inputs_dtype(monkeypatch):
    seen = {}
    real_norm, real_steps = ns.normalize, ns.torch_steps

    def normalize(X, *args, **kwargs):
        seen["check"] = kwargs.get("check", args[2] if len(args) > 2 else True)
        return real_norm(X, *args, **kwargs)

    def torch_steps(X, triples, panel_rows=None):
        seen["panel_rows"], seen["steps"] = panel_rows, len(triples)
        return real_steps(X, triples, panel_rows)

    monkeypatch.setattr(ns, "normalize", normalize)
    monkeypatch.setattr(ns, "torch_steps", torch_steps)
    monkeypatch.setattr(ns, "panel_rows", lambda X: 2)  # what a large CUDA problem gets
    G = torch.randn(10, 6, generator=torch.Generator().manual_seed(10))
    out = bench._torch_dense(G, 3, torch.bfloat16)
    assert seen == {"check": False, "panel_rows": None, "steps": 3}
    assert out.dtype == torch.float32 and out.shape == (10, 6)


def test_cuda_only_methods_call_the_package_with_graphs_on_off_and_the_dense_path(monkeypatch):
    calls = []

    def orthogonalize(G, **kwargs):
        calls.append(("package", ns.CUDA_GRAPHS, kwargs.get("backend", "auto"), G))
        return G

    def dense(G, steps, dtype):
        calls.append(("dense", steps, dtype, G))
        return G

    monkeypatch.setattr(ns, "orthogonalize", orthogonalize)
    monkeypatch.setattr(bench, "_torch_dense", dense)
    monkeypatch.setattr(ns, "CUDA_GRAPHS", True)
    G = torch.randn(4, 6).as_subclass(FakeCuda)
    names = ("package_graphs", "package_no_graphs", "torch_dense")
    runs = bench.ns_methods(G, 3, torch.float16, names)
    assert tuple(runs) == names
    for name in names:
        runs[name]()
    assert [c[:3] for c in calls] == [("package", True, "auto"), ("package", False, "auto"),
                                      ("dense", 3, torch.float16)]  # fmt: skip
    assert all(c[3] is G for c in calls) and ns.CUDA_GRAPHS
    assert not set(bench.ns_methods(torch.randn(4, 6), 3, torch.float32)) & set(names)


def test_each_method_is_warmed_up_twice_and_timed_after(monkeypatch):
    calls: dict[str, int] = {}

    def method(name: str):
        def run() -> None:
            calls[name] = calls.get(name, 0) + 1

        return run

    runs = {"package": method("package"), "reference": method("reference")}
    times = {"package": [100.0, 100.0, 1.0, 3.0], "reference": [100.0, 100.0, 2.0, 4.0]}

    def clock_for(device):
        def clock(fn) -> float:
            name = next(k for k, v in runs.items() if v is fn)
            fn()
            return times[name][calls[name] - 1]

        return clock

    monkeypatch.setattr(bench, "ns_methods", lambda G, steps, dtype, methods: dict(runs))
    monkeypatch.setattr(bench, "_timer", clock_for)
    table = bench.newton_schulz_benchmark([(4, 4)], device="cpu", repeats=2)
    assert calls == {"package": 4, "reference": 4}
    assert table.set_index("method")["median_s"].to_dict() == {"package": 2.0, "reference": 3.0}
    assert math.isclose(table.set_index("method")["time_vs_reference"]["package"], 2 / 3)


# ------------------------------------------------------------------- dtypes, syncs, state
def test_normalize_computes_in_float32_for_half_input_and_returns_the_inputs_dtype_after():
    X = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(11)).to(torch.bfloat16)
    out = ns.normalize(X)
    assert out.dtype == torch.float32
    X64 = X.double()
    want = X64 / (1.01 * torch.linalg.matrix_norm(X64, keepdim=True))
    torch.testing.assert_close(out.double(), want, atol=1e-7, rtol=0)
    G = torch.randn(6, 9, dtype=torch.float64)
    assert ns.orthogonalize(G, dtype=torch.float32).dtype == torch.float64
    assert ns.orthogonalize(G.to(torch.bfloat16)).dtype == torch.bfloat16


def test_unchecked_normalize_of_float64_with_eps_never_syncs(monkeypatch):
    X = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    want = ns.normalize(X, eps=1e-3, check=False)

    def no_sync(self):
        raise AssertionError("host sync")

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "__bool__", no_sync)
        got = ns.normalize(X, eps=1e-3, check=False)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_scion_without_momentum_keeps_no_state():
    p = torch.nn.Parameter(torch.randn(6, 4))
    p.grad = torch.randn(6, 4)
    opt = Scion([p], lr=0.1, momentum=1.0)
    opt.step()
    assert len(opt.state) == 0 or all(len(s) == 0 for s in opt.state.values())
