import numpy as np
import pytest
import torch

from optimal_scaling import newton_schulz as ns
from optimal_scaling.newton_schulz import (
    coefficients,
    orthogonalize,
    polar_express_coefficients,
    response,
)


def polar(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G.double(), full_matrices=False)
    return U @ Vh


def test_polar_express_design_matches_every_published_triple():
    """The published 8-step schedule (Polar Express, before the ÷1.01 safety factor; the
    last step has none): the interval follows the undivided polynomials, and the safety factor
    is applied to the finished list."""
    from optimal_scaling.newton_schulz import PUBLISHED_POLAR_EXPRESS as published

    designed = polar_express_coefficients(8)
    for k, (got, want) in enumerate(zip(designed, published, strict=True)):
        s = 1.01 if k < 7 else 1.0
        undone = (got[0] * s, got[1] * s**3, got[2] * s**5)
        assert undone == pytest.approx(want, rel=3e-5), k


def test_polar_express_first_triple_matches_the_published_one():
    # COURSE.md: ℓ = 1e-3, u = 1, cushion 0.02407 → (8.2872, −23.5959, 17.3004) before safety
    a, b, c = (
        x * 1.01**k for x, k in zip(polar_express_coefficients(5)[0], (1, 3, 5), strict=True)
    )
    assert (a, b, c) == pytest.approx((8.2872, -23.5959, 17.3004), abs=3e-4)
    a, b, c = (
        x * 1.01**k
        for x, k in zip(polar_express_coefficients(5, cushion=0.024)[0], (1, 3, 5), strict=True)
    )
    assert (a, b, c) == pytest.approx((8.2878, -23.6006, 17.3045), abs=6e-5)
    a, b, c = (
        x * 1.01**k
        for x, k in zip(polar_express_coefficients(5, cushion=0.02)[0], (1, 3, 5), strict=True)
    )
    assert (a, b, c) == pytest.approx((8.320, -23.859, 17.531), rel=5e-4)


def test_polar_express_coefficients_refuses_bad_settings_by_name():
    for steps in (2.7, 0, "5", True):  # 2.7 is not quietly 2 steps
        with pytest.raises(ValueError, match="polar_express_coefficients: steps must be an int"):
            polar_express_coefficients(steps)
    for bad, needle in (({"lower": 1.0}, r"lower must be in \(0, 1\)"),
                        ({"cushion": -0.1}, r"cushion must be in \[0, inf\)"),
                        ({"safety": 0.9}, r"safety must be in \[1, inf\)")):  # fmt: skip
        with pytest.raises(ValueError, match=f"polar_express_coefficients: {needle}"):
            polar_express_coefficients(5, **bad)
    with pytest.raises(TypeError, match="polar_express_coefficients: lower must be a number"):
        polar_express_coefficients(5, lower="0.001")
    assert polar_express_coefficients(np.int64(5)) == polar_express_coefficients(5)


def test_muon_quintic_does_not_converge_to_one():
    sigma = np.geomspace(1e-2, 1, 4000)
    out = response(sigma, "muon", 5)
    assert out.min() == pytest.approx(0.68, abs=0.01)
    assert out.max() == pytest.approx(1.134, abs=0.005)
    assert response(np.linspace(0, 1, 10001), "muon", 1).max() == pytest.approx(1.20, abs=0.01)
    small = np.geomspace(1.5e-3, 1e-2, 4000)  # these can overshoot to the one-step peak
    assert response(small, "muon", 5).max() == pytest.approx(1.20, abs=0.01)
    assert response(np.geomspace(1e-5, 1.4e-3, 400), "muon", 5).max() < 0.68  # only these lag


def test_polar_express_converges_on_its_design_interval():
    sigma = np.geomspace(1e-3, 1, 400)
    out = response(sigma, "polar_express", 8)
    assert np.abs(out - 1).max() < 0.02


@pytest.mark.parametrize("shape", [(16, 64), (64, 16), (3, 32, 32), (1, 9), (9, 1)])
def test_orthogonalize_approaches_uv(shape):
    g = torch.Generator().manual_seed(0)
    G = torch.randn(shape, generator=g)
    X = orthogonalize(G, steps=10, schedule="polar_express")
    assert X.shape == G.shape and X.dtype == G.dtype
    assert (X.double() - polar(G)).abs().max() < 0.05
    # the iteration acts on singular values only: σ_out = p∘…∘p(σ_in / (1.01·‖G‖_F))
    sv_in = torch.linalg.svdvals(G.double())
    fro = torch.linalg.vector_norm(G.double(), dim=(-2, -1), keepdim=True).squeeze(-1)
    expected = np.sort(response((sv_in / (1.01 * fro)).numpy(), "muon", 5), axis=-1)
    sv_out = torch.linalg.svdvals(orthogonalize(G, steps=5, schedule="muon").double()).numpy()
    np.testing.assert_allclose(np.sort(sv_out, axis=-1), expected, atol=2e-3)


def test_edge_cases():
    assert torch.equal(orthogonalize(torch.zeros(4, 6)), torch.zeros(4, 6))
    assert orthogonalize(torch.zeros(0, 5)).shape == (0, 5)
    with pytest.raises(ValueError, match="unknown schedule"):  # empty input is checked too
        orthogonalize(torch.zeros(0, 5), schedule="bogus")
    with pytest.raises(TypeError, match="floating dtype"):
        orthogonalize(torch.zeros(0, 5), dtype=torch.int32)
    G = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    for schedule in ("muon", "polar_express"):  # zero steps: only the normalization
        torch.testing.assert_close(orthogonalize(G, steps=0, schedule=schedule),
                                   G / (1.01 * torch.linalg.matrix_norm(G)))  # fmt: skip
    G = torch.randn(8, 8)
    for scale in (1e20, 1e37, 1e-30):  # squares overflow / underflow in fp32
        torch.testing.assert_close(orthogonalize(G * scale), orthogonalize(G), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        orthogonalize(torch.tensor([[1.0, float("inf")]]))
    view = torch.randn(10, 6).T  # a non-contiguous transposed view
    torch.testing.assert_close(orthogonalize(view), orthogonalize(view.contiguous()))
    with pytest.raises(ValueError, match="NaN or inf"):
        orthogonalize(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="expects a matrix"):
        orthogonalize(torch.ones(3))
    with pytest.raises(TypeError, match="floating-point"):
        orthogonalize(torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown schedule"):
        coefficients("quartic", 3)
    assert coefficients([(1.5, -0.5, 0.0)], 3) == [(1.5, -0.5, 0.0)] * 3


def test_fused_torch_path_equals_the_textbook_step():
    from optimal_scaling.newton_schulz import MUON, reference_step, torch_step, torch_steps

    g = torch.Generator().manual_seed(1)
    for shape in [(6, 10), (3, 5, 9)]:
        X = torch.randn(shape, generator=g, dtype=torch.float64) / 4
        torch.testing.assert_close(torch_step(X, *MUON), reference_step(X, *MUON))
        Y = X.clone()
        for _ in range(3):
            Y = reference_step(Y, *MUON)
        torch.testing.assert_close(torch_steps(X.clone(), [MUON] * 3), Y)


def test_backend_dispatch(monkeypatch):
    pytest.importorskip("triton")
    G = torch.randn(2, 30, 18, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match="unknown backend"):
        orthogonalize(G, backend="cuda")
    if not torch.cuda.is_available():  # conftest set TRITON_INTERPRET=1 before Triton loaded
        monkeypatch.delenv("TRITON_INTERPRET")
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            orthogonalize(G, backend="triton")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    # compiled Triton (a CUDA machine) takes CUDA tensors; the interpreter CPU ones
    Gk = G.cuda() if torch.cuda.is_available() else G
    # (in float32 both: CUDA's default is bf16, where the two paths round differently)
    f32 = torch.float32
    torch.testing.assert_close(orthogonalize(Gk, backend="triton", dtype=f32),
                               orthogonalize(Gk, backend="torch", dtype=f32), atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="Triton kernels compute in"):
        orthogonalize(G, backend="triton", dtype=torch.float64)
    # "auto" sends CPU tensors to torch, even in interpreter mode (the outputs of the two paths
    # agree to ~1e-6, so ask the dispatcher, and make the kernels unusable to be sure)
    from optimal_scaling import kernels

    assert ns._backend("auto", G, torch.float32) == "torch"
    monkeypatch.setattr(kernels, "ns_step", lambda *a, **k: pytest.fail("Triton path taken"))
    torch.testing.assert_close(orthogonalize(G), orthogonalize(G, backend="torch"))
    # a measured win is used only for the GPU it was measured on
    monkeypatch.setattr(ns, "TRITON_FASTER", [("H100", torch.bfloat16, 1024)])
    assert not ns._triton_measured_faster(G, torch.bfloat16)  # a CPU tensor: never

    class OnCuda:  # what the rule reads of a CUDA tensor
        is_cuda, device = True, "cuda:0"

        def __init__(self, *shape: int) -> None:
            self.shape = shape

    gpu = "NVIDIA H100 80GB HBM3"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu)
    faster = ns._triton_measured_faster
    assert faster(OnCuda(2048, 4096), torch.bfloat16)
    assert faster(OnCuda(3, 4096, 1024), torch.bfloat16)  # the short side counts
    assert not faster(OnCuda(512, 4096), torch.bfloat16)  # below the measured size
    assert not faster(OnCuda(2048, 4096), torch.float16)  # another dtype
    gpu = "NVIDIA H200"
    assert not faster(OnCuda(2048, 4096), torch.bfloat16)  # another GPU


def test_polar_express_survives_a_collapsed_interval():
    """Without a safety factor the interval shrinks onto 1 (about 2e-9 wide by step 8)."""
    triples = polar_express_coefficients(steps=10, safety=1.0)
    assert len(triples) == 10 and np.isfinite(triples).all()
    a, b, c = triples[-1]  # the limit quintic: p(1) = 1, p'(1) = 0, p''(1) = 0
    assert a + b + c == pytest.approx(1.0, abs=1e-6)
    assert a + 3 * b + 5 * c == pytest.approx(0.0, abs=1e-4)
    assert (a, b, c) == pytest.approx((15 / 8, -10 / 8, 3 / 8), rel=1e-3)
    sigma = np.geomspace(1e-3, 1, 200)
    assert np.abs(response(sigma, triples, 10) - 1).max() < 1e-6


def test_response_wants_an_int_number_of_steps_and_numbers():
    for steps in (2.5, -1):  # -1 used to hand the input back unchanged
        with pytest.raises(ValueError, match=f"response: steps must be an int ≥ 0, got {steps}"):
            response([0.1], steps=steps)
    with pytest.raises(TypeError, match="response: sigma must be numbers"):
        response(["a"], steps=2)
    np.testing.assert_array_equal(response([0.1], steps=0), [0.1])  # zero steps: the identity
    a, b, c = coefficients("muon", 1)[0]
    assert response([0.1], steps=1)[0] == pytest.approx(a * 0.1 + b * 0.1**3 + c * 0.1**5)


def test_float64_matrices_normalize_at_any_scale_and_bad_settings_are_named():
    G = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = orthogonalize(G, steps=8, schedule="polar_express", dtype=torch.float64)
    for scale in (1e200, 1e-200, 1e-160):  # squares overflow / underflow float64
        for check in (True, False):
            out = orthogonalize(G * scale, steps=8, schedule="polar_express",
                                dtype=torch.float64, check=check)  # fmt: skip
            torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="steps must be an int"):
        orthogonalize(G, steps=2.5)
    for margin in (0.0, 0.7):  # a rank-1 G at margin 0.7 has σ = 1/0.7: the steps blow up
        with pytest.raises(ValueError, match="margin must be a finite number ≥ 1, got"):
            orthogonalize(G, margin=margin)
    x = 1 / 0.7  # why: the one singular value after normalizing, under Muon's quintic
    for a, b, c in coefficients("muon", 3):
        x = a * x + b * x**3 + c * x**5
    assert x > 1e10
    rank_one = torch.outer(torch.arange(1.0, 5.0), torch.ones(6))  # at margin 1: σ = 1, fine
    assert torch.isfinite(orthogonalize(rank_one, steps=5, margin=1.0)).all()


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1.0), (torch.float64, 1e3)])
def test_eps_enters_the_normalization(dtype, scale):
    G = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=dtype) * scale
    for eps in (0.5, 2.0):
        want = G / (1.0 * torch.linalg.matrix_norm(G) + eps)
        got = orthogonalize(G, steps=0, margin=1.0, eps=eps, dtype=dtype)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


def test_the_steps_run_on_the_short_side(monkeypatch):
    seen = []
    real = ns.torch_steps
    monkeypatch.setattr(ns, "torch_steps",
                        lambda X, t, r: seen.append(tuple(X.shape)) or real(X, t, r))
    orthogonalize(torch.randn(64, 16))
    orthogonalize(torch.randn(16, 64))
    assert seen == [(16, 64), (16, 64)]


@pytest.mark.parametrize("shape, rows", [((12, 12), 4), ((10, 17), 4), ((3, 9, 14), 2),
                                         ((9, 20), 8), ((6, 6), 5)])
def test_row_panels_give_the_dense_steps(shape, rows):
    """Panels only on and below the diagonal, mirrored above: the dense result, in fewer
    FLOPs (uneven last panels and batches included)."""
    from optimal_scaling.newton_schulz import MUON, polar_express_coefficients, torch_steps

    X = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    X = X / torch.linalg.matrix_norm(X, keepdim=True)
    for triples in ([MUON] * 5, polar_express_coefficients(4)):
        dense = torch_steps(X.clone(), triples)
        torch.testing.assert_close(torch_steps(X.clone(), triples, rows), dense,
                                   atol=1e-12, rtol=0)  # fmt: skip
    # a panel as tall as the matrix is the dense path
    torch.testing.assert_close(torch_steps(X.clone(), [MUON], shape[-2]),
                               torch_steps(X.clone(), [MUON]), atol=0, rtol=0)  # fmt: skip


def test_row_panels_compute_only_the_lower_blocks(monkeypatch):
    """The panel products cover (k+1)/2k of A's entries: count the rows × columns written."""
    from optimal_scaling.newton_schulz import MUON, torch_steps

    written = []
    real_mm = torch.mm

    def mm(a, b, out=None):
        written.append(a.shape[0] * b.shape[1])
        return real_mm(a, b, out=out)

    monkeypatch.setattr(torch, "mm", mm)
    torch_steps(torch.randn(16, 20) / 20, [MUON], panel_rows=4)  # k = 4 panels of 4 rows
    assert sum(written) == 16 * 16 * (4 + 1) // (2 * 4)  # 160 of 256 entries
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="panel_rows must be a positive int"):
            torch_steps(torch.randn(4, 4), [MUON], panel_rows=bad)


def test_panels_and_graphs_are_for_cuda_tensors_only(monkeypatch):
    class OnCuda:  # what the rules read of a CUDA tensor
        is_cuda = True

        def __init__(self, *shape: int) -> None:
            self.shape = shape

    monkeypatch.setattr(ns, "CUDA_GRAPHS", True)
    assert ns.panel_rows(torch.empty(4096, 4096, device="meta")) is None  # not CUDA
    assert ns.panel_rows(OnCuda(ns.PANEL_FROM, 8192)) == ns.PANEL_ROWS
    assert ns.panel_rows(OnCuda(8, ns.PANEL_FROM - 1, 8192)) is None
    assert not ns._graphed(torch.empty(16, 16, device="meta"))
    assert ns._graphed(OnCuda(2048, 2048))  # 6·2048³ = 5.2e10 ≤ 2³⁶
    assert ns._graphed(OnCuda(64, 512, 512))  # 64·6·512³, the same
    assert not ns._graphed(OnCuda(4096, 4096))  # 4.1e11: the arithmetic sets the time
    assert not ns._graphed(OnCuda(128, 512, 512))  # a batch counts
    monkeypatch.setattr(ns, "CUDA_GRAPHS", False)
    assert not ns._graphed(OnCuda(16, 16))


def test_cpu_tensors_never_reach_the_graph_cache():
    before = (ns.GRAPHS.eager, ns.GRAPHS.captures, ns.GRAPHS.replays)
    for _ in range(3):
        orthogonalize(torch.randn(8, 8), check=False)
    assert (ns.GRAPHS.eager, ns.GRAPHS.captures, ns.GRAPHS.replays) == before


@pytest.mark.parametrize("value, on", [(None, True), ("0", False), ("1", True)])
def test_cuda_graphs_are_on_unless_switched_off(value, on):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPTIMAL_SCALING_CUDA_GRAPHS"}
    if value is not None:
        env["OPTIMAL_SCALING_CUDA_GRAPHS"] = value
    out = subprocess.run([sys.executable, "-c", "import optimal_scaling.newton_schulz as ns; "
                          "print(ns.CUDA_GRAPHS)"], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == str(on)


def test_the_graph_key_names_what_changes_the_kernels(monkeypatch):
    G = torch.randn(4, 6)
    key = ns._graph_key(G, torch.bfloat16, [ns.MUON] * 5, 1.01, 0.0)
    assert key == ns._graph_key(G.clone(), torch.bfloat16, [ns.MUON] * 5, 1.01, 0.0)
    others = [ns._graph_key(torch.randn(6, 4), torch.bfloat16, [ns.MUON] * 5, 1.01, 0.0),
              ns._graph_key(G.double(), torch.bfloat16, [ns.MUON] * 5, 1.01, 0.0),
              ns._graph_key(G, torch.float32, [ns.MUON] * 5, 1.01, 0.0),
              ns._graph_key(G, torch.bfloat16, [ns.MUON] * 4, 1.01, 0.0),
              ns._graph_key(G, torch.bfloat16, [ns.MUON] * 5, 1.0, 0.0),
              ns._graph_key(G, torch.bfloat16, [ns.MUON] * 5, 1.01, 1e-7)]  # fmt: skip
    with torch.inference_mode():
        others.append(ns._graph_key(G, torch.bfloat16, [ns.MUON] * 5, 1.01, 0.0))
    matmul = torch.backends.cuda.matmul
    for flag in ("allow_tf32", "allow_bf16_reduced_precision_reduction",
                 "allow_fp16_reduced_precision_reduction"):
        before = getattr(matmul, flag)
        setattr(matmul, flag, not before)  # (a module with its own __setattr__: no monkeypatch)
        try:
            others.append(ns._graph_key(G, torch.bfloat16, [ns.MUON] * 5, 1.01, 0.0))
        finally:
            setattr(matmul, flag, before)
    monkeypatch.setattr(ns, "PANEL_ROWS", 1024)
    others.append(ns._graph_key(G, torch.bfloat16, [ns.MUON] * 5, 1.01, 0.0))
    assert len({key, *others}) == len(others) + 1


@pytest.mark.parametrize("merge", [True, False])
def test_orthogonalize_each_stacks_by_shape_and_returns_each_in_its_orientation(merge):
    g = torch.Generator().manual_seed(6)
    mats = [torch.randn(*s, generator=g, dtype=torch.float64)
            for s in ((6, 4), (4, 6), (6, 4), (5, 5), (4, 6))]  # fmt: skip
    mats.append(mats[0].float())  # another dtype: another stack
    stacks = []

    def orth(W):
        stacks.append(tuple(W.shape))
        assert W.shape[-2] <= W.shape[-1]  # wide, as orthogonalize wants them
        U, _, Vh = torch.linalg.svd(W, full_matrices=False)
        return U @ Vh

    got = ns.orthogonalize_each(mats, orth, merge_transposes=merge)
    for M, o in zip(mats, got, strict=True):
        U, _, Vh = torch.linalg.svd(M, full_matrices=False)
        torch.testing.assert_close(o, U @ Vh, atol=1e-5, rtol=0)
    want = ([(4, 4, 6), (1, 5, 5), (1, 4, 6)] if merge
            else [(2, 4, 6), (2, 4, 6), (1, 5, 5), (1, 4, 6)])  # fmt: skip
    assert sorted(stacks) == sorted(want)
