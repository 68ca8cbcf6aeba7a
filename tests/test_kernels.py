"""Triton Newton–Schulz kernels against the torch formulas.

Without CUDA every kernel runs on CPU tensors in Triton's interpreter: conftest.py sets
``TRITON_INTERPRET=1`` at start-up, before anything imports Triton (which fixes its mode at
import), and an autouse fixture keeps it set in case a test cleared it. With CUDA the same
tests run compiled, on the GPU.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch

from optimal_scaling import kernels
from optimal_scaling import newton_schulz as ns

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton")

# Error allowed, relative to the largest entry of the float64 result computed from the same
# (rounded) inputs: accumulation is fp32, so what is left is the final rounding. bf16 gets
# 2⁻⁶: the interpreter rounds fp32 → bf16 towards zero (up to 2⁻⁷ relative), a GPU to
# nearest (2⁻⁸).
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2**-6}
DTYPES = list(TOL)
# Non-multiples of the block (16 in the interpreter, 64 on a GPU), square, wide, tall,
# batched, 4-D.
SHAPES = [(5, 7), (17, 33), (33, 50), (24, 24), (20, 9), (3, 17, 40), (2, 2, 9, 13)]
MUON = ns.MUON


@pytest.fixture(autouse=True)
def _interpreter_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def randn(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype=dtype, device=DEVICE)


def sym(m: int, lead: tuple[int, ...] = (), dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A symmetric (…, m, m) matrix with entries of order 1, like X Xᵀ of a normalized X."""
    G = randn(*lead, m, m + 3, seed=1).double()
    A = G @ G.mT / (m + 3)
    return A.to(dtype)


def assert_close(got: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype) -> None:
    assert got.dtype == dtype and got.shape == ref.shape
    scale = ref.abs().max().item() or 1.0
    err = (got.double() - ref).abs().max().item()
    assert err <= TOL[dtype] * scale, f"max error {err:.3g} > {TOL[dtype]:.3g} × {scale:.3g}"


# -- the three kernels --------------------------------------------------------------------


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_syrk_is_x_xt_and_exactly_symmetric(shape, dtype):
    X = randn(*shape, dtype=dtype)
    A = kernels.syrk(X)
    assert_close(A, X.double() @ X.double().mT, dtype)
    assert torch.equal(A, A.mT)


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_sym_poly_is_b_a_plus_c_a_a(shape, dtype):
    A = sym(shape[-2], shape[:-2], dtype)
    _, b, c = MUON
    B = kernels.sym_poly(A, b, c)
    Ad = A.double()
    assert_close(B, b * Ad + c * Ad @ Ad, dtype)
    assert torch.equal(B, B.mT)


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_ns_update_is_a_x_plus_b_x(shape, dtype):
    X = randn(*shape, dtype=dtype)
    B = sym(shape[-2], shape[:-2], dtype)
    a = MUON[0]
    assert_close(kernels.ns_update(X, B, a), a * X.double() + B.double() @ X.double(), dtype)


@needs_triton
def test_ns_step_is_the_reference_step():
    X = randn(3, 17, 40) / 10
    a, b, c = MUON
    assert_close(kernels.ns_step(X, a, b, c), ns.reference_step(X.double(), a, b, c), X.dtype)


@needs_triton
def test_strided_inputs():
    """Transposes and slices run as they are (the kernels take strides), and a 4-D input whose
    leading dims cannot be viewed as one batch is reshaped."""
    X = randn(2, 40, 17).mT  # (2, 17, 40), column-major
    Xd = X.double()
    assert not X.is_contiguous()
    A = kernels.syrk(X)
    assert_close(A, Xd @ Xd.mT, X.dtype)
    assert torch.equal(A, A.mT)

    Xs = randn(17, 80)[:, ::2]  # every other column
    assert_close(kernels.syrk(Xs), Xs.double() @ Xs.double().mT, Xs.dtype)

    S = sym(17, (2,)).mT  # symmetric, so the same values; strides (289, 1, 17)
    B = kernels.sym_poly(S, -1.0, 0.5)
    assert_close(B, -S.double() + 0.5 * S.double() @ S.double(), S.dtype)

    N = randn(2, 17, 17, seed=3).mT  # ns_update needs no symmetry: a transposed B
    assert_close(kernels.ns_update(X, N, 2.0), 2 * Xd + N.double() @ Xd, X.dtype)

    X4 = randn(2, 9, 2, 13).permute(0, 2, 1, 3)  # (2, 2, 9, 13), not viewable as (4, 9, 13)
    with pytest.raises(RuntimeError):
        X4.view(-1, 9, 13)
    A4 = kernels.syrk(X4)
    assert A4.shape == (2, 2, 9, 9)
    assert_close(A4, X4.double() @ X4.double().mT, X4.dtype)


@needs_triton
def test_a_batch_beyond_the_grid_limit_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(kernels, "_MAX_GRID_Y", 2)  # pretend CUDA's limit is 2
    with pytest.raises(ValueError, match="batch of 5 matrices exceeds CUDA's grid limit 2"):
        kernels.syrk(randn(5, 6, 7))
    monkeypatch.setattr(kernels, "_MAX_GRID_Y", 5)  # exactly at the limit is allowed
    X = randn(5, 6, 7)
    torch.testing.assert_close(kernels.syrk(X), X @ X.mT, rtol=TOL[X.dtype], atol=TOL[X.dtype])


@needs_triton
def test_empty_shapes():
    assert kernels.syrk(randn(0, 5, 7)).shape == (0, 5, 5)
    assert torch.equal(kernels.syrk(randn(3, 0)), torch.zeros(3, 3, device=DEVICE))  # n = 0
    assert kernels.ns_step(randn(2, 0, 4), *MUON).shape == (2, 0, 4)


# -- Newton–Schulz with the kernels ----------------------------------------------------------


def normalized(G: torch.Tensor) -> torch.Tensor:
    return G / (1.01 * torch.linalg.vector_norm(G, dim=(-2, -1), keepdim=True))


@needs_triton
def test_five_muon_steps_match_the_torch_path():
    G = randn(24, 40)
    X = normalized(G)
    for a, b, c in ns.coefficients("muon", 5):
        X = kernels.ns_step(X, a, b, c)
    ref = ns.orthogonalize(G, steps=5, schedule="muon", dtype=torch.float32, backend="torch")
    # measured ≈ 1e-6 (fp32 rounding, differently ordered sums) over several seeds
    assert (X - ref).abs().max().item() < 1e-5


@needs_triton
def test_eight_polar_express_steps_reach_u_vt():
    G = randn(24, 40, seed=2)
    X = normalized(G)
    for a, b, c in ns.coefficients("polar_express", 8):
        X = kernels.ns_step(X, a, b, c)
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    # σ_min / ‖G‖_F ≈ 0.05 here, well inside [10⁻³, 1], so 8 steps converge to fp32
    # precision: measured ≈ 6e-7 (the torch path gives the same)
    assert (X.double() - U @ Vh).abs().max().item() < 1e-5


# -- availability, modes and input errors -----------------------------------------------------


def test_importing_kernels_does_not_import_triton():
    code = (
        "import sys, optimal_scaling as osc\n"
        "assert 'kernels' in dir(osc) and 'torch' not in sys.modules\n"
        "import optimal_scaling.kernels\n"
        "print('triton' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_triton(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    assert not kernels.available()
    assert not kernels.available(randn(3, 4))
    with pytest.raises(RuntimeError, match="Triton is not installed"):
        kernels.syrk(randn(3, 4))


@needs_triton
def test_modes(monkeypatch: pytest.MonkeyPatch):
    # Triton fixes interpreter vs compiled mode at its first import: on a machine without
    # CUDA the suite imports it interpreted (tests/conftest.py), on a GPU machine compiled.
    imported_interpreted = kernels._imported_interpreted(kernels._load_triton())
    if imported_interpreted:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert kernels.interpreting()
        assert kernels.available(torch.zeros(2, 2))
        monkeypatch.delenv("TRITON_INTERPRET")
        assert not kernels.interpreting()
        assert not kernels.available(torch.zeros(2, 2))
        assert not kernels.available()  # a CPU-only machine, or Triton's mode is the wrong one
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            kernels.syrk(torch.zeros(2, 3))
    else:  # compiled Triton (a CUDA machine): the interpreter cannot be switched on any more
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        assert kernels.available() == CUDA
        assert not kernels.available(torch.zeros(2, 2))  # a CPU tensor
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert not kernels.available(torch.zeros(2, 2, device="cuda" if CUDA else "cpu"))
        with pytest.raises(RuntimeError, match="imported without it"):
            kernels.syrk(torch.zeros(2, 3))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: kernels.syrk([[1.0]]), TypeError, "X must be a torch.Tensor"),
        (lambda: kernels.syrk(torch.zeros(4)), ValueError, "ndim 1"),
        (lambda: kernels.syrk(torch.zeros(2, 3, dtype=torch.int32)), TypeError, "dtype"),
        (lambda: kernels.syrk(torch.zeros(2, 3, dtype=torch.float64)), TypeError, "float64"),
        (lambda: kernels.sym_poly(torch.zeros(2, 3), 1.0, 1.0), ValueError, "square"),
        (
            lambda: kernels.ns_update(torch.zeros(2, 4, 5), torch.zeros(2, 5, 5), 1.0),
            ValueError,
            "shape mismatch",
        ),
        (
            lambda: kernels.ns_update(torch.zeros(2, 4, 5), torch.zeros(3, 4, 4), 1.0),
            ValueError,
            "shape mismatch",
        ),
        (
            lambda: kernels.ns_update(torch.zeros(4, 5), torch.zeros(4, 4, device="meta"), 1.0),
            ValueError,
            "device",
        ),
        (
            lambda: kernels.ns_update(torch.zeros(4, 5), torch.zeros(4, 4).half(), 1.0),
            TypeError,
            "dtype",
        ),
    ],
)
def test_input_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- on a GPU -----------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_triton
def test_bf16_on_cuda_matches_torch(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # compiled, not interpreted
    dtype = torch.bfloat16
    G = torch.randn(512, 1024, device="cuda")
    X = normalized(G).to(dtype)
    Xd = X.double()
    A = kernels.syrk(X)
    assert_close(A, Xd @ Xd.mT, dtype)
    assert torch.equal(A, A.mT)
    a, b, c = MUON
    B = kernels.sym_poly(A, b, c)
    assert_close(B, b * A.double() + c * A.double() @ A.double(), dtype)
    assert_close(kernels.ns_update(X, B, a), a * Xd + B.double() @ Xd, dtype)

    # five steps: the kernels' bf16 result is about as far from the float64 one as torch's
    exact = ns.orthogonalize(G.double(), steps=5, dtype=torch.float64, backend="torch")
    torch_bf16 = ns.orthogonalize(G, steps=5, dtype=dtype, backend="torch")
    Y = X
    for step in ns.coefficients("muon", 5):
        Y = kernels.ns_step(Y, *step)
    err_kernels = torch.linalg.norm(Y.double() - exact) / torch.linalg.norm(exact)
    err_torch = torch.linalg.norm(torch_bf16.double() - exact) / torch.linalg.norm(exact)
    assert err_kernels <= 2 * err_torch + 1e-2, (err_kernels.item(), err_torch.item())


# -- tile configurations (issue 11): every candidate is correct, the table picks one ---------


@needs_triton
@pytest.mark.parametrize("index", range(5))
def test_every_candidate_configuration_is_correct(index):
    """Each tile configuration a GPU may pick computes the same products (interpreter on CPU).

    On a GPU in bf16, the dtype the candidates are for: the deepest pipelines hold fp32 tiles
    in more shared memory than an H100 has.
    """
    dtype = torch.bfloat16 if CUDA else torch.float32
    X = randn(2, 40, 150, dtype=dtype)
    syrk_ref = X.double() @ X.double().mT
    sym_cfg = kernels.CONFIGS["sym_kernel"][index]
    upd_cfg = kernels.CONFIGS["ns_update_kernel"][index]
    got = kernels.syrk(X, sym_cfg)
    assert_close(got, syrk_ref, dtype)
    assert torch.equal(got, got.mT)
    A = sym(150, (2,), dtype=dtype)
    assert_close(kernels.sym_poly(A, -4.775, 2.0315, sym_cfg),
                 -4.775 * A.double() + 2.0315 * A.double() @ A.double(), dtype)
    B = sym(40, (2,), dtype=dtype)
    assert_close(kernels.ns_update(X, B, 3.4445, upd_cfg),
                 3.4445 * X.double() + B.double() @ X.double(), dtype)


@needs_triton
def test_grouped_tile_order_covers_every_tile():
    """GROUP_M larger than, equal to and dividing the tile rows: every output tile written."""
    X = randn(70, 90)
    B = sym(70)
    ref = 0.5 * X.double() + B.double() @ X.double()
    for group in (1, 2, 3, 5, 8):
        cfg = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": group}
        assert_close(kernels.ns_update(X, B, 0.5, cfg), ref, torch.float32)


@needs_triton
def test_bad_configurations_are_named():
    X = randn(8, 8)
    with pytest.raises(ValueError, match="needs the keys"):
        kernels.syrk(X, {"BLOCK": 16})
    with pytest.raises(ValueError, match="power of two"):
        kernels.syrk(X, {"BLOCK": 24, "BLOCK_K": 16})
    with pytest.raises(ValueError, match="power of two ≥ 16, got 8"):
        kernels.syrk(X, {"BLOCK": 8, "BLOCK_K": 16})  # tl.dot needs tiles of 16 or more
    with pytest.raises(ValueError, match="GROUP_M must be"):
        kernels.ns_update(X, sym(8), 1.0, {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16,
                                           "GROUP_M": 0})  # fmt: skip
    with pytest.raises(ValueError, match="unknown kernel"):
        kernels.config_for("gemm", 8, 8, torch.float32)


@needs_triton
def test_tune_writes_a_table_that_config_for_reads(tmp_path, monkeypatch: pytest.MonkeyPatch):
    if CUDA:
        pytest.skip("the CPU timer below stands in for do_bench off the GPU")
    small = {"sym_kernel": [{"BLOCK": 16, "BLOCK_K": 16}, {"BLOCK": 32, "BLOCK_K": 16}],
             "ns_update_kernel": [kernels.INTERPRETED["ns_update_kernel"],
                                  {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16, "GROUP_M": 1}]}
    fake_ms = iter(range(100, 0, -1))  # later configurations "measure" faster

    rows = kernels.tune([(20, 40), (2, 24, 24)], dtype=torch.float32, device="cpu",
                        timer=lambda fn: (fn(), float(next(fake_ms)))[1], configs=small)
    # (20, 40): syrk (20, 40), sym_poly (20, 20), update; (24, 24): sym once, update
    assert len(rows) == 2 * (3 + 2) and all(r["error"] == "" for r in rows)
    entries = kernels.best_entries(rows)
    assert {(e["kernel"], e["M"], e["K"]) for e in entries} == {
        ("sym_kernel", 20, 40), ("sym_kernel", 20, 20), ("ns_update_kernel", 20, 40),
        ("sym_kernel", 24, 24), ("ns_update_kernel", 24, 24)}
    assert all(e["config"] == small[e["kernel"]][1] and e["ms"] < e["default_ms"] for e in entries)
    for e in entries:
        e["device"] = "Fake GPU"  # what a CUDA run records
        e["dtype"] = "bfloat16"
    path = kernels.write_tuned(tmp_path / "tuned.json", entries, device="Fake GPU")
    monkeypatch.setenv("OPTIMAL_SCALING_KERNEL_CONFIGS", str(path))
    assert len(kernels.tuned_table()["entries"]) == 5
    # the compiled branch: nearest measured shape for this GPU and dtype, else the default
    monkeypatch.setattr(kernels, "interpreting", lambda: False)
    assert kernels.config_for("sym_kernel", 22, 38, torch.bfloat16, "Fake GPU") == \
        small["sym_kernel"][1]  # fmt: skip
    assert kernels.config_for("sym_kernel", 22, 38, torch.float16, "Fake GPU") == \
        kernels.CONFIGS["sym_kernel"][0]  # fmt: skip
    assert kernels.config_for("ns_update_kernel", 4096, 4096, torch.bfloat16, "Other GPU") == \
        kernels.CONFIGS["ns_update_kernel"][0]  # fmt: skip
    # one (M, K) at two batch sizes with different winners: both kept, each used for its batch
    a, b = small["sym_kernel"]
    rows = [{"kernel": "sym_kernel", "M": 32, "K": 32, "batch": batch, "dtype": "bfloat16",
             "device": "Fake GPU", "index": i, "config": c, "ms": ms, "error": ""}
            for batch, times in ((1, (1.0, 2.0)), (16, (20.0, 10.0)))
            for i, (c, ms) in enumerate(zip((a, b), times, strict=True))]  # fmt: skip
    entries = kernels.best_entries(rows)
    assert {(e["batch"], e["ms"], e["default_ms"]) for e in entries} == {(1, 1.0, 1.0),
                                                                        (16, 10.0, 20.0)}
    path = kernels.write_tuned(tmp_path / "batched.json", entries, device="Fake GPU")
    monkeypatch.setenv("OPTIMAL_SCALING_KERNEL_CONFIGS", str(path))
    assert kernels.config_for("sym_kernel", 32, 32, torch.bfloat16, "Fake GPU") == a
    assert kernels.config_for("sym_kernel", 32, 32, torch.bfloat16, "Fake GPU", batch=12) == b


@needs_triton
def test_tuning_survives_a_default_configuration_that_fails(tmp_path):
    """The candidates' first (default) configuration failing to compile loses only its own
    rows; the table is strict JSON (a failed try's time is null, not Infinity)."""
    if CUDA:
        pytest.skip("the CPU timer below stands in for do_bench off the GPU")
    good = {"BLOCK": 16, "BLOCK_K": 16}
    configs = {"sym_kernel": [{"BLOCK": 16}, good],  # no BLOCK_K: fails as a bad config would
               "ns_update_kernel": [kernels.INTERPRETED["ns_update_kernel"]]}
    rows = kernels.tune([(8, 16)], dtype=torch.float32, device="cpu",
                        timer=lambda fn: (fn(), 1.0)[1], configs=configs)  # fmt: skip
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 2 and all(r["index"] == 0 and r["ms"] == math.inf for r in failed)
    entries = kernels.best_entries(rows)
    assert {e["kernel"] for e in entries} == {"sym_kernel", "ns_update_kernel"}
    assert all(e["config"] == good for e in entries if e["kernel"] == "sym_kernel")
    path = kernels.write_tuned(tmp_path / "t.json", entries, tries=rows)

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    tries = json.loads(path.read_text(), parse_constant=refuse)["tries"]
    assert [t["ms"] for t in tries if t["error"]] == [None, None]


def test_a_bad_configuration_table_is_named(tmp_path, monkeypatch: pytest.MonkeyPatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"entries": [{"kernel": "gemm"}]}')
    with pytest.raises(ValueError, match="bad entry"):
        kernels.tuned_table(bad)
    monkeypatch.setenv("OPTIMAL_SCALING_KERNEL_CONFIGS", str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        kernels.tuned_table()
