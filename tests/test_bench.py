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


def test_benchmark_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown benchmark methods"):
        bench.newton_schulz_benchmark([(4, 4)], methods=["fastest"])
    with pytest.raises(ValueError, match="shape"):
        bench.newton_schulz_benchmark([(4,)])
    with pytest.raises(ValueError, match="repeats"):
        bench.newton_schulz_benchmark([(4, 4)], repeats=0)


def test_cli_writes_json_with_provenance(tmp_path, capsys):
    out = tmp_path / "ns.json"
    assert main(["bench", "ns", "--fast", "--repeats", "1", "--steps", "1", "--device", "cpu",
                 "--out", str(out)]) == 0  # fmt: skip
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "newton_schulz" and payload["dtype"] == "float32"
    assert "partial" not in payload  # the shape-by-shape writes were replaced by the whole
    assert payload["versions"]["torch"] == torch.__version__
    assert payload["device_type"] == "cpu" and payload["device"]
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
