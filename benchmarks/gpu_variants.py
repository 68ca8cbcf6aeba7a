"""What the torch path's two CUDA measures buy, one at a time (issue 11; CUDA only).

* Row panels (``newton_schulz.torch_steps(panel_rows=r)``): 5 Muon steps at the large shapes,
  for several panel heights r, as time over the dense torch path's in the same run.
* CUDA graphs (``newton_schulz.CUDA_GRAPHS``): the optimizer step of the benchmark GPT at
  width 512, Muon and Scion, with the graphs on and off.

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
    if args.out:
        table = pd.concat([p.assign(part="panels"), o.assign(part="optimizers")])
        bench.write_json(args.out, table, benchmark="gpu_variants", device=name,
                         versions=bench.versions())


if __name__ == "__main__":
    main()
