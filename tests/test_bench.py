import json

import pytest
import torch

from optimal_scaling import bench
from optimal_scaling import newton_schulz as ns
from optimal_scaling.cli import main
from optimal_scaling.newton_schulz import step_flops


def test_flop_counts_follow_the_formula():
    m, n = 4, 8
    assert step_flops(m, n) == 2 * m * m * n + 2 * m**3 + 2 * m * m * n
    assert step_flops(n, m) == step_flops(m, n)  # tall matrices are transposed first
    assert bench.ns_flops((3, m, n), steps=2) == 3 * 2 * step_flops(m, n)
    # the symmetric kernels save 1.5× on squares, 4/3 as n/m grows
    assert step_flops(64, 64) / step_flops(64, 64, symmetric=True) == pytest.approx(1.5)
    assert step_flops(8, 8000) / step_flops(8, 8000, symmetric=True) == pytest.approx(4 / 3, 1e-3)


def test_benchmark_rows_and_ratios():
    seen: list = []  # the rows so far after each shape (what the command writes)
    table = bench.newton_schulz_benchmark([(8, 16), (2, 12, 5)], repeats=2, steps=2,
                                          device="cpu", after_shape=seen.append,
                                          methods=[m for m in bench.METHODS
                                                   if m != "reference_compiled"])  # fmt: skip
    assert [len(part) for part in seen] == [len(table) // 2, len(table)]
    assert set(table["shape"]) == {"8x16", "2x12x5"}
    assert {"package", "torch_path", "reference", "three_matmuls"} <= set(table["method"])
    assert "triton_path" not in set(table["method"])  # the interpreter is no speed reference
    for _, rows in table.groupby("shape"):  # every ratio is against this shape's reference
        ref = rows.loc[rows["method"] == "reference", "median_s"].item()
        assert rows["time_vs_reference"].to_numpy() == pytest.approx(
            rows["median_s"].to_numpy() / ref)
        flops = bench.ns_flops(tuple(int(v) for v in rows["shape"].iloc[0].split("x")), steps=2)
        assert rows["gflops"].to_numpy() == pytest.approx(flops / rows["median_s"].to_numpy()
                                                          / 1e9)  # fmt: skip
    wide = bench.summary(table)
    assert list(wide.index) == ["8x16", "2x12x5"]


def test_every_benchmarked_method_computes_the_same_orthogonalization():
    """What is timed is the real work: each method's output against an SVD-free check."""
    G = torch.randn(2, 24, 40, generator=torch.Generator().manual_seed(0))
    runs = bench.ns_methods(G, 5, torch.float32)
    assert "reference_compiled" in runs and "three_matmuls" in runs
    expected = None
    for name in bench.ORTHOGONALIZING:
        if name not in runs:
            continue
        out = runs[name]()
        # singular values after 5 Muon steps = response() of the normalized ones (lecture 04);
        # pytorch_optimizer normalizes without the 1.01 margin
        margin = 1.0 if name == "pytorch_optimizer" else 1.01
        sigma = torch.linalg.svdvals(G.double()) / (margin * torch.linalg.matrix_norm(G.double())
                                                     .unsqueeze(-1))  # fmt: skip
        want = torch.from_numpy(ns.response(sigma.numpy(), "muon", 5)).sort(-1).values
        got = torch.linalg.svdvals(out.double()).sort(-1).values  # p∘…∘p is not monotone
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0, msg=name)
        if expected is None:
            expected = out
        elif name != "pytorch_optimizer":  # it normalizes without the 1.01 margin
            torch.testing.assert_close(out, expected, atol=1e-4, rtol=0, msg=name)


def test_the_cuda_only_methods_compute_the_same_and_leave_the_switch_as_it_was(monkeypatch):
    G = torch.randn(3, 40, 24, generator=torch.Generator().manual_seed(1))  # tall
    want = ns.orthogonalize(G, backend="torch")
    torch.testing.assert_close(bench._torch_dense(G, 5, torch.float32), want, atol=1e-6, rtol=0)
    seen = []
    for before in (True, False):
        for on in (True, False):
            monkeypatch.setattr(ns, "CUDA_GRAPHS", before)
            bench._with_graphs(lambda: seen.append(ns.CUDA_GRAPHS), on)()
            assert seen[-1] == on and ns.CUDA_GRAPHS == before

    def fails():
        raise MemoryError

    with pytest.raises(MemoryError):
        bench._with_graphs(fails, not before)()
    assert ns.CUDA_GRAPHS == before


def test_benchmark_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown benchmark methods"):
        bench.newton_schulz_benchmark([(4, 4)], methods=["fastest"])
    with pytest.raises(ValueError, match="shape"):
        bench.newton_schulz_benchmark([(4,)])
    with pytest.raises(ValueError, match="repeats"):
        bench.newton_schulz_benchmark([(4, 4)], repeats=0)


def test_the_torch_path_settings_on_cuda_are_recorded(monkeypatch):
    monkeypatch.setattr(ns, "CUDA_GRAPHS", True)
    got = bench.torch_path_settings(torch.device("cuda"))
    assert got == {"row_panels": {"from": ns.PANEL_FROM, "rows": ns.PANEL_ROWS},
                   "cuda_graphs": True, "graph_max_flops": ns.GRAPH_MAX_FLOPS}  # fmt: skip


def test_cli_writes_json_with_provenance(tmp_path, capsys):
    out = tmp_path / "ns.json"
    assert main(["bench", "ns", "--fast", "--repeats", "1", "--steps", "1", "--device", "cpu",
                 "--out", str(out)]) == 0  # fmt: skip
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "newton_schulz" and payload["dtype"] == "float32"
    assert "partial" not in payload  # the shape-by-shape writes were replaced by the whole
    assert payload["versions"]["torch"] == torch.__version__
    assert payload["device_type"] == "cpu" and payload["device"]
    assert payload["torch_path"] == {"row_panels": False, "cuda_graphs": False}
    table, meta = bench.read_json(out)
    assert len(table) >= 3 * len(bench.FAST_SHAPES) and meta["steps"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ns.json"]  # no temporary file left
    assert "package / reference" in capsys.readouterr().out
    assert main(["bench", "ns", "--fast", "--repeats", "0"]) == 2
    capsys.readouterr()
    assert main(["bench", "ns", "--fast", "--device", "gpu"]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err
    assert main(["bench", "optim", "--fast", "--dtype", "bfloat16", "--no-write"]) == 2
    assert "--dtype does not apply" in capsys.readouterr().err


def test_optimizer_benchmark_shares():
    table = bench.optimizer_benchmark(widths=(32,), depth=1, batch_size=2, context=8,
                                      vocab_size=16, steps=1, repeats=1)
    assert list(table["optimizer"]) == ["adamw", "muon_reference", "muon", "scion"]
    assert table["opt_share"].between(0, 1).all()
    row = table.iloc[1]
    assert row["opt_share"] == pytest.approx(row["opt_ms"] / row["step_ms"])
    assert table.loc[table.optimizer == "adamw", "step_vs_adamw"].item() == 1.0
    with pytest.raises(ValueError, match="unknown optimizers"):
        bench.optimizer_benchmark(optimizers=["sgd"])


def test_triton_faster_rule_from_a_planted_table():
    import pandas as pd

    from optimal_scaling.bench import triton_faster_rule

    def table(ratios):  # shape → triton/torch time ratio
        rows = []
        for shape, r in ratios.items():
            rows += [{"shape": shape, "method": "torch_path", "median_s": 1.0},
                     {"shape": shape, "method": "triton_path", "median_s": r}]
        return pd.DataFrame(rows)

    # faster from 2048 up (the batch of 512² is slower, so 512 cannot be the threshold)
    t = table({"256x256": 1.5, "8x512x512": 1.2, "1024x4096": 1.0, "2048x2048": 0.9,
               "4096x4096": 0.7, "8192x8192": 0.8})
    assert triton_faster_rule(t) == 2048
    # slower at the largest shape: no threshold works
    assert triton_faster_rule(table({"256x256": 0.5, "4096x4096": 1.1})) is None
    # no Triton timings (a CPU run)
    assert triton_faster_rule(t[t.method == "torch_path"]) is None
    # 5% margin: 0.97 is noise, not a win
    assert triton_faster_rule(table({"1024x1024": 0.97, "4096x4096": 0.9})) == 4096


def test_the_cuda_benchmark_measures_the_issue_shapes_first_and_every_shape_once():
    shapes = bench.cuda_shapes()
    assert shapes[: len(bench.ISSUE_SHAPES)] == list(bench.ISSUE_SHAPES)
    assert sorted(shapes) == sorted(set(bench.FULL_SHAPES + bench.CUDA_SHAPES))


def test_the_optimizer_command_writes_width_by_width(tmp_path, monkeypatch):
    seen = []
    real = bench.write_json
    monkeypatch.setattr(bench, "write_json", lambda path, table, **meta: (
        seen.append((len(table), meta.get("partial"))), real(path, table, **meta))[1])
    table = bench.run_optimizers(tmp_path / "o.json", fast=True, device="cpu", repeats=1)
    per_width = len(bench.OPTIMIZERS)
    assert seen == [(per_width, True), (2 * per_width, True), (2 * per_width, None)]
    assert table["width"].is_monotonic_increasing
    payload = json.loads((tmp_path / "o.json").read_text())
    assert "partial" not in payload and payload["device_type"] == "cpu"


def test_a_failing_method_loses_only_its_own_row(monkeypatch):
    """A kernel that does not compile (or runs out of memory) on the GPU run: its error is
    recorded, the other methods are timed and the ratios still computed."""
    real = bench.ns_methods

    def with_a_broken_one(G, steps, dtype, methods=bench.METHODS):
        runs = real(G, steps, dtype, ["reference", "torch_path"])

        def broken():
            raise RuntimeError("triton.compiler.errors.CompilationError: out of resources")

        return {**runs, "triton_path": broken}

    monkeypatch.setattr(bench, "ns_methods", with_a_broken_one)
    parts: list = []
    table = bench.newton_schulz_benchmark([(8, 16), (12, 20)], repeats=2, steps=2,
                                          device="cpu", after_shape=parts.append)  # fmt: skip
    assert len(parts) == 2 and len(table) == 2 * 3
    broken = table[table["method"] == "triton_path"]
    assert broken["median_s"].isna().all() and broken["error"].str.contains("out of res").all()
    fine = table[table["method"] != "triton_path"]
    assert (fine["error"] == "").all() and (fine["median_s"] > 0).all()
    assert (fine.loc[fine["method"] == "reference", "time_vs_reference"] == 1).all()
    assert bench.triton_faster_rule(table) is None


def _planted_clock(monkeypatch, seconds):
    """bench's timer replaced by one that runs ``fn`` and returns ``seconds(call index)``."""
    calls = []

    def timer(device):
        def clock(fn):
            fn()
            calls.append(fn)
            return seconds(len(calls) - 1)

        return clock

    monkeypatch.setattr(bench, "_timer", timer)
    return calls


def test_the_warm_up_round_is_not_timed_and_the_ratios_follow_the_planted_times(monkeypatch):
    # Newton–Schulz: round 0 (one call per method) takes 100 s; then torch 1 s, reference 2 s
    _planted_clock(monkeypatch, lambda i: 100.0 if i < 2 else [1.0, 2.0][i % 2])
    table = bench.newton_schulz_benchmark([(8, 16)], repeats=1, steps=1, device="cpu",
                                          methods=["reference", "torch_path"])  # fmt: skip
    assert table["method"].tolist() == ["torch_path", "reference"]  # timed in METHODS' order
    assert table["median_s"].tolist() == [1.0, 2.0]
    assert table["time_vs_reference"].tolist() == [0.5, 1.0]
    flops = bench.ns_flops((8, 16), steps=1)
    assert table["gflops"].tolist() == pytest.approx([flops / 1e9, flops / 2e9])

    # optimizers, one step per round: call 2k is optimizer k's forward + backward (1 s),
    # call 2k + 1 its step (k + 2 s); round 0 (8 calls) takes 100 s a call
    seen = []
    real = bench._make_optimizer

    def spy(name, model):
        seen.append([p.detach().clone() for p in model.parameters()])
        return real(name, model)

    monkeypatch.setattr(bench, "_make_optimizer", spy)
    _planted_clock(monkeypatch, lambda i: 100.0 if i < 8 else
                   (1.0 if i % 2 == 0 else (i % 8) // 2 + 2.0))  # fmt: skip
    table = bench.optimizer_benchmark(widths=(32,), depth=1, batch_size=2, context=8,
                                      vocab_size=16, steps=1, repeats=1)  # fmt: skip
    assert list(table["optimizer"]) == ["adamw", "muon_reference", "muon", "scion"]
    opt_s = [2.0, 3.0, 4.0, 5.0]
    assert table["fwd_bwd_ms"].tolist() == pytest.approx([1000.0] * 4)
    assert table["opt_ms"].tolist() == pytest.approx([1e3 * o for o in opt_s])
    assert table["step_ms"].tolist() == pytest.approx([1e3 * (1 + o) for o in opt_s])
    assert table["opt_share"].tolist() == pytest.approx([o / (1 + o) for o in opt_s])
    assert table["step_vs_adamw"].tolist() == pytest.approx([(1 + o) / 3.0 for o in opt_s])
    assert table["opt_vs_muon_reference"].tolist() == pytest.approx([o / 3.0 for o in opt_s])
    # the same model (same init) for every optimizer
    assert len(seen) == 4
    for params in seen[1:]:
        assert all(torch.equal(a, b) for a, b in zip(seen[0], params, strict=True))


@pytest.mark.parametrize("shape", [(8, 4), (4, 8)])
def test_the_reference_muon_is_muon_written_from_the_algorithm(shape):
    """Nesterov momentum, Frobenius normalization (no margin), √max(1, d_out/d_in) scale:
    in float64 it takes the package Muon's steps (margin 1, eps 10⁻⁷), tall and wide."""
    from optimal_scaling.optim import Muon

    g = torch.Generator().manual_seed(0)
    W = torch.randn(*shape, generator=g, dtype=torch.float64)
    grads = [torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(2)]
    a, b = torch.nn.Parameter(W.clone()), torch.nn.Parameter(W.clone())
    ref = bench.ReferenceMuon([a], lr=0.02, dtype=torch.float64)
    muon = Muon([b], lr=0.02, margin=1.0, eps=1e-7, dtype=torch.float64)
    for G in grads:
        a.grad, b.grad = G.clone(), G.clone()
        ref.step()
        muon.step()
    assert not torch.equal(a, W)
    torch.testing.assert_close(a.detach(), b.detach(), atol=1e-12, rtol=0)


def test_sweep_benchmark_overheads_and_tokens_per_second_follow_the_planted_times(monkeypatch):
    """The module doc's formulas on planted timings: N = W − T of each way, engine_own =
    (N1 − N0)/T1, shell_non_training = N1/T1, per_run_in_worker = (N2 − E0)/T2, each the
    smallest over the rounds; tokens/s from each version's fastest block."""
    import types

    import optimal_scaling.sweep.benchmark as sb

    tps = sb.LAPTOP_RUN["batch_size"] * sb.LAPTOP_RUN["context"]
    # the probe: 32 steps in 3.2 s, so about 3.2 s of training is 32 steps
    monkeypatch.setattr(sb, "reference_run", lambda run, horizons, threads: {
        "train_s": 3.2, "eval_s": 0.0})  # fmt: skip
    inside = iter([{"train_s": 8.0, "eval_s": 1.0}, {"train_s": 8.0, "eval_s": 1.0}])
    monkeypatch.setattr(sb, "subprocess", types.SimpleNamespace(
        run=lambda *a, **k: types.SimpleNamespace(stdout=json.dumps(next(inside)))))
    bare_clock = iter([0.0, 12.0, 100.0, 111.0])  # the bare script's wall: 12 s, then 11 s
    monkeypatch.setattr(sb, "time", types.SimpleNamespace(perf_counter=lambda: next(bare_clock)))
    engines = iter([{"wall_s": 20.0, "train_s": 10.0}, {"wall_s": 13.0, "train_s": 10.0},
                    {"wall_s": 22.0, "train_s": 10.0}, {"wall_s": 12.5, "train_s": 10.0}])
    colds = []
    monkeypatch.setattr(sb, "engine_run", lambda toml, threads, cold: (
        colds.append(cold), next(engines))[1])  # fmt: skip
    over = sb.overhead(seconds=3.2, repeats=2, threads=1)
    assert colds == [True, False, True, False]
    assert over["steps"] == 32 and over["horizons"] == [4 * tps, 8 * tps, 16 * tps, 32 * tps]
    # round 1: N0 = 12 − 8 = 4, N1 = 10, N2 = 3, E0 = 1; round 2: N0 = 3, N1 = 12, N2 = 2.5
    rounds = [r[k] for r in over["rounds"]
              for k in ("engine_own", "shell_non_training", "per_run_in_worker")]  # fmt: skip
    assert rounds == pytest.approx([(10 - 4) / 10, 10 / 10, (3 - 1) / 10,
                                    (12 - 3) / 10, 12 / 10, (2.5 - 1) / 10])  # fmt: skip
    assert over["engine_own"] == pytest.approx(0.6)
    assert over["shell_non_training"] == pytest.approx(1.0)
    assert over["per_run_in_worker"] == pytest.approx(0.15)
    assert over["startup_s"] == pytest.approx(11 - 8 - 1) and over["train_s"] == 10.0

    # tokens/s: warm-ups 5 s (eager) and 7 s (compiled); then blocks of one step, eager 2 s
    # and 4 s, compiled 1 s and 3 s: each keeps its fastest
    ticks = iter([0, 5, 0, 7, 0, 2, 0, 1, 0, 4, 0, 3])
    monkeypatch.setattr(sb, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    monkeypatch.setattr(torch, "compile", lambda model: model)  # no compile wait here
    table = sb.tokens_per_second(steps=1, warmup=1, repeats=2)
    assert table["compile"].tolist() == [False, True]
    assert table["tokens_per_s"].tolist() == pytest.approx([tps / 2, tps / 1])
    assert table["vs_eager"].tolist() == pytest.approx([1.0, 2.0])
    assert table["warmup_s"].tolist() == [5, 7]


def test_the_step_forms_gpu_variants_times_compute_the_same_steps(root):
    """benchmarks/gpu_variants.py times other forms of a step: the same arithmetic."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gpu_variants", root / "benchmarks" / "gpu_variants.py")
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    for shape in [(6, 10), (3, 5, 9)]:
        X = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        X = X / torch.linalg.matrix_norm(X, keepdim=True)
        want = ns.torch_steps(X.clone(), [ns.MUON] * 5)
        torch.testing.assert_close(variants.mm_axpy_steps(X.clone(), [ns.MUON] * 5), want,
                                   atol=1e-12, rtol=0)  # fmt: skip
    for m, n, k in [(8, 10, 2), (8, 10, 4), (12, 12, 3), (6, 6, 1), (16, 20, 8)]:
        X = torch.randn(m, n, generator=torch.Generator().manual_seed(m + k), dtype=torch.float64)
        X = X / torch.linalg.matrix_norm(X)
        want = ns.torch_steps(X.clone(), [ns.MUON] * 5)
        for fused in (True, False):
            got = variants.block_diagonal_steps(X.clone(), [ns.MUON] * 5, k, fused)
            torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    S = torch.arange(36.0).reshape(6, 6)
    for d in range(3):  # the strided views are the blocks they name
        r = 2
        for i in range(d, 3):
            lower = S[i * r:(i + 1) * r, (i - d) * r:(i - d + 1) * r]
            upper = S[(i - d) * r:(i - d + 1) * r, i * r:(i + 1) * r]
            assert torch.equal(variants._block_diagonal(S, 3, d)[i - d], lower)
            assert torch.equal(variants._block_diagonal(S, 3, d, upper=True)[i - d], upper)
    with pytest.raises(ValueError, match="7 rows do not split into 2 blocks"):
        variants.block_diagonal_steps(torch.randn(7, 9), [ns.MUON], 2)

    # the timing loop on the CPU: every form timed and checked against addmm; a form that
    # fails is one row with its error, and the others go on
    table = variants.step_forms(shapes=((8, 8), (2, 4, 4)), repeats=1, device="cpu")
    assert table.groupby("shape")["form"].apply(list).to_dict() == {
        "8x8": ["addmm", "mm_axpy", "block_diagonal_2", "block_diagonal_4",
                "block_diagonal_4_mm", "block_diagonal_8", "bare_products"],
        "2x4x4": ["addmm", "mm_axpy", "bare_products"]}
    assert (table.max_abs_diff_vs_addmm.dropna() < 1e-5).all()
    assert table.query("form == 'addmm'").time_vs_addmm.tolist() == [1.0, 1.0]

    def broken(*args):
        raise RuntimeError("no strided output here")

    variants.block_diagonal_steps = broken
    table = variants.step_forms(shapes=((8, 8),), repeats=1, device="cpu")
    failed = table[table.error.notna()]
    assert failed.form.tolist() == ["block_diagonal_2", "block_diagonal_4",
                                    "block_diagonal_4_mm", "block_diagonal_8"]
    assert failed.error.str.contains("RuntimeError: no strided output here").all()
    assert table[table.error.isna()].form.tolist() == ["addmm", "mm_axpy", "bare_products"]
