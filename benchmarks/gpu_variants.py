"""What the torch path's two CUDA measures buy, one at a time (issue 11; CUDA only).

* Row panels (``newton_schulz.torch_steps(panel_rows=r)``): 5 Muon steps at the large shapes,
  for several panel heights r, as time over the dense torch path's in the same run.
* CUDA graphs (``newton_schulz.CUDA_GRAPHS``): the optimizer step of the benchmark GPT at
  width 512, Muon and Scion, with the graphs on and off.
* The form of a step (issue 11's open lead): the torch path's β-fused ``addmm`` steps against
  plain products followed by in-place sums (``mm`` + ``axpy``), against the symmetric
  products computed by block diagonals (one strided batched product per diagonal of k×k
  blocks, ``block_diagonal_steps``, k = 2, 4, 8; k = 4 also with plain products and in-place
  sums), and against the three bare products alone, as time over the ``addmm`` form.

    python benchmarks/gpu_variants.py --out variants.json

Medians of 7 (panels) or 3 × 10 (optimizers) timings after warm-up; the device is named.
"""

from __future__ import annotations

import argparse
import statistics

import pandas as pd
import torch

from optimal_scaling import bench
from optimal_scaling import newton_schulz as ns


def panels(shapes=((4096, 4096), (8192, 8192), (4096, 16384), (2048, 2048)),
           heights=(None, 1024, 2048, 4096), repeats: int = 7) -> pd.DataFrame:  # fmt: skip
    clock = bench._timer(torch.device("cuda"))
    rows = []
    for shape in shapes:
        G = torch.randn(shape, device="cuda")
        X0 = ns.normalize(G, check=False).to(torch.bfloat16).contiguous()
        times: dict = {}
        for _ in range(repeats + 1):
            for r in heights:
                if r is not None and r >= shape[0]:
                    continue
                t = clock(lambda r=r, X0=X0: ns.torch_steps(X0.clone(), [ns.MUON] * 5, r))
                times.setdefault(r, []).append(t)
        dense = statistics.median(times[None][1:])
        for r, ts in times.items():
            t = statistics.median(ts[1:])
            rows.append({"shape": "x".join(map(str, shape)), "panel_rows": r or 0,
                         "median_ms": 1e3 * t, "time_vs_dense": t / dense})  # fmt: skip
    return pd.DataFrame(rows)


def mm_axpy_steps(X: torch.Tensor, triples) -> torch.Tensor:
    """The steps as plain products and in-place sums: B = A·A, B ← cB + bA, Y = B·X + aX."""
    mm = torch.mm if X.ndim == 2 else torch.bmm
    A = X.new_empty(*X.shape[:-1], X.shape[-2])
    B, Y = torch.empty_like(A), torch.empty_like(X)
    for a, b, c in triples:
        mm(X, X.mT, out=A)
        mm(A, A, out=B)
        B.mul_(c).add_(A, alpha=b)
        mm(B, X, out=Y).add_(X, alpha=a)
        X, Y = Y, X
    return X


def _block_diagonal(S: torch.Tensor, k: int, d: int, upper: bool = False) -> torch.Tensor:
    """The d-th block diagonal of a contiguous m×m matrix S cut into k×k blocks of r = m/k
    rows, as a (k−d, r, r) strided view: S[i, i−d] for i = d…k−1 (or S[i−d, i] if upper)."""
    m = S.shape[-1]
    r = m // k
    offset = S.storage_offset() + (d * r if upper else d * r * m)
    return S.as_strided((k - d, r, r), (r * m + r, m, 1), offset)


def block_diagonal_steps(X: torch.Tensor, triples, blocks: int = 2,
                         fused: bool = True) -> torch.Tensor:  # fmt: skip
    """The steps with A = X Xᵀ and B = bA + cA·Aᵀ computed on and below the block diagonal.

    Cut the m rows into k = ``blocks`` blocks of r = m/k. Block diagonal d of A holds
    A[i, i−d] = X[i] X[i−d]ᵀ for i = d…k−1: the rows of X as a (k, r, n) view, sliced
    [d:] and [:k−d], multiplied in *one* strided batched product written through a strided
    view of A, so k launches compute the (k+1)/2k of A's blocks on and below the diagonal
    (the same FLOP fraction as row panels of r rows, in equal-sized products). B likewise
    from A's row blocks; the blocks above are mirrored (one copy per diagonal), and
    X ← aX + BX is one dense product. ``fused``: the sums inside the products (β-fused
    ``baddbmm``/``addmm``, as the torch path does), or plain products followed by in-place
    sums (as ``mm_axpy_steps``). X: (m, n), m divisible by k; overwritten.
    """
    m, n = X.shape
    k = blocks
    if m % k:
        raise ValueError(f"block_diagonal_steps: {m} rows do not split into {k} blocks")
    r = m // k
    A = X.new_empty(m, m)
    B, Y = torch.empty_like(A), torch.empty_like(X)
    for a, b, c in triples:
        Xr, Ar = X.view(k, r, n), A.view(k, r, m)
        for d in range(k):
            torch.bmm(Xr[d:], Xr[: k - d].mT, out=_block_diagonal(A, k, d))
        for d in range(1, k):
            _block_diagonal(A, k, d, upper=True).copy_(_block_diagonal(A, k, d).mT)
        for d in range(k):
            if fused:
                torch.baddbmm(_block_diagonal(A, k, d), Ar[d:], Ar[: k - d].mT, beta=b,
                              alpha=c, out=_block_diagonal(B, k, d))  # fmt: skip
            else:
                torch.bmm(Ar[d:], Ar[: k - d].mT, out=_block_diagonal(B, k, d))
        for d in range(1, k):
            _block_diagonal(B, k, d, upper=True).copy_(_block_diagonal(B, k, d).mT)
        if fused:
            torch.addmm(X, B, X, beta=a, out=Y)
        else:
            B.mul_(c).add_(A, alpha=b)
            torch.mm(B, X, out=Y).add_(X, alpha=a)
        X, Y = Y, X
    return X


def bare_products(X: torch.Tensor, triples) -> torch.Tensor:
    """Only the three products of each step (not an orthogonalization: a yardstick)."""
    mm = torch.mm if X.ndim == 2 else torch.bmm
    A = X.new_empty(*X.shape[:-1], X.shape[-2])
    B, Y = torch.empty_like(A), torch.empty_like(X)
    for _ in triples:
        mm(X, X.mT, out=A)
        mm(A, A, out=B)
        mm(B, X, out=Y)
    return Y


def step_forms(shapes=((4096, 4096), (8192, 8192), (64, 512, 512), (2048, 2048)),
               repeats: int = 7, device: str = "cuda") -> pd.DataFrame:  # fmt: skip
    clock = bench._timer(torch.device(device))
    forms = {"addmm": lambda X: ns.torch_steps(X, [ns.MUON] * 5),
             "mm_axpy": lambda X: mm_axpy_steps(X, [ns.MUON] * 5),
             "block_diagonal_2": lambda X: block_diagonal_steps(X, [ns.MUON] * 5, 2),
             "block_diagonal_4": lambda X: block_diagonal_steps(X, [ns.MUON] * 5, 4),
             "block_diagonal_4_mm": lambda X: block_diagonal_steps(X, [ns.MUON] * 5, 4, False),
             "block_diagonal_8": lambda X: block_diagonal_steps(X, [ns.MUON] * 5, 8),
             "bare_products": lambda X: bare_products(X, [ns.MUON] * 5)}  # fmt: skip
    rows = []
    for shape in shapes:
        X0 = ns.normalize(torch.randn(shape, device=device), check=False)
        X0 = X0.to(torch.bfloat16 if device == "cuda" else torch.float32)
        label = "x".join(map(str, shape))
        want = forms["addmm"](X0.clone()).float()
        diffs = {}  # each form once, checked against the addmm form; one that fails is a row
        for name, form in forms.items():
            if name.startswith("block") and X0.ndim != 2:
                continue
            try:
                got = form(X0.clone()).float()
            except Exception as err:  # noqa: BLE001 (recorded, and the other forms go on)
                rows.append({"shape": label, "form": name, "error": f"{type(err).__name__}: {err}"})
                continue
            diffs[name] = None if name == "bare_products" else (got - want).abs().max().item()
        times: dict = {name: [] for name in diffs}
        for _ in range(repeats + 1):
            for name in diffs:
                times[name].append(clock(lambda form=forms[name], X0=X0: form(X0.clone())))
        base = statistics.median(times["addmm"][1:])
        for name, ts in times.items():
            t = statistics.median(ts[1:])
            rows.append({"shape": label, "form": name, "median_ms": 1e3 * t,
                         "time_vs_addmm": t / base, "max_abs_diff_vs_addmm": diffs[name]})
    return pd.DataFrame(rows)


def optimizers() -> pd.DataFrame:
    out = []
    before = ns.CUDA_GRAPHS
    for graphs in (True, False):
        ns.CUDA_GRAPHS = graphs
        table = bench.optimizer_benchmark(widths=(512,), steps=10, repeats=3, device="cuda",
                                          optimizers=("adamw", "muon", "scion"))  # fmt: skip
        out.append(table.assign(cuda_graphs=graphs))
    ns.CUDA_GRAPHS = before
    return pd.concat(out, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    name = bench.device_name("cuda")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        p = panels()
        print(f"row panels, 5 Muon steps, bf16, {name}\n{p.round(3).to_string()}", flush=True)
        o = optimizers()
        print(f"optimizer step, width 512, {name}\n{o.round(3).to_string()}", flush=True)
        f = step_forms()
        print(f"forms of a step, 5 Muon steps, bf16, {name}\n{f.round(3).to_string()}",
              flush=True)  # fmt: skip
    if args.out:
        table = pd.concat([p.assign(part="panels"), o.assign(part="optimizers"),
                           f.assign(part="step_forms")])  # fmt: skip
        bench.write_json(args.out, table, benchmark="gpu_variants", device=name,
                         versions=bench.versions())


if __name__ == "__main__":
    main()
