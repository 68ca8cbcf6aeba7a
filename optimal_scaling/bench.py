r"""Benchmarks that report ratios against a reference measured in the same run.

Newton–Schulz (:func:`newton_schulz_benchmark`). For X of shape m×n (m ≤ n) one step costs

    dense FLOPs = 2m²n (X Xᵀ) + 2m³ (A A) + 2m²n (B X) = 4m²n + 2m³,

and every method below is credited with those dense FLOPs, so GFLOP/s are comparable:

* ``package``: :func:`optimal_scaling.newton_schulz.orthogonalize` with ``backend="auto"``;
* ``torch_path`` and ``triton_path``: the same with the back end forced (Triton only where its
  kernels run compiled, i.e. on CUDA);
* on CUDA also ``package_graphs`` and ``package_no_graphs``, the package with its CUDA
  graphs (:data:`optimal_scaling.newton_schulz.CUDA_GRAPHS`) switched on and off, and
  ``torch_dense``, the torch path without graphs or row panels (what the torch path was
  before them): what each of the two measures buys;
* ``reference``: the textbook step written from the formula, three matmuls and separate
  elementwise sums (:func:`optimal_scaling.newton_schulz.reference_step`), in eager torch;
* ``reference_compiled``: the same function under ``torch.compile`` (compiled during the
  warm-up call);
* ``three_matmuls``: only the three dense matrix products of each step, into preallocated
  buffers. Not a bound: kernels that exploit symmetry can beat it, and for small,
  launch-bound shapes the other methods' extra work can hide behind it;
* ``pytorch_optimizer``: ``zero_power_via_newton_schulz_5`` from the optional
  ``pytorch-optimizer`` package, when it is installed.

Methods are timed round-robin (each repeat runs every method once), after two warm-up calls
each (the second captures the package's CUDA graphs), and the median is reported; CUDA
timings synchronize before reading the clock.
Results go to JSON with the device, dtype and versions (written atomically).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch

from optimal_scaling import newton_schulz as ns
from optimal_scaling.config import cpu_name

#: Shapes of the full benchmark: squares, 1:4 rectangles, batches.
FULL_SHAPES: tuple[tuple[int, ...], ...] = (
    (256, 256), (512, 512), (1024, 1024), (2048, 2048), (4096, 4096),
    (256, 1024), (512, 2048), (1024, 4096),
    (16, 256, 256), (8, 512, 512), (4, 256, 1024),
)  # fmt: skip
#: Added on CUDA: the large shapes where the symmetric products can beat cuBLAS (issue 11's
#: targets name 4096² and 8192²) and a batch of many small matrices (launch-bound).
CUDA_SHAPES: tuple[tuple[int, ...], ...] = ((8192, 8192), (4096, 16384), (64, 512, 512))
#: The six shapes of issue 11's table, measured first on CUDA (a run cut short keeps them).
ISSUE_SHAPES: tuple[tuple[int, ...], ...] = (
    (4096, 4096), (8192, 8192), (1024, 1024), (1024, 4096), (4096, 16384), (64, 512, 512),
)  # fmt: skip


def cuda_shapes() -> list[tuple[int, ...]]:
    """Every shape of the CUDA benchmark, issue 11's first: :data:`ISSUE_SHAPES`, then the
    rest of :data:`FULL_SHAPES` and :data:`CUDA_SHAPES`."""
    rest = [s for s in FULL_SHAPES + CUDA_SHAPES if s not in ISSUE_SHAPES]
    return [*ISSUE_SHAPES, *rest]
#: Shapes of the fast (CI / lecture) run.
FAST_SHAPES: tuple[tuple[int, ...], ...] = ((128, 128), (256, 256), (128, 512), (8, 64, 64))

METHODS = (
    "package",
    "torch_path",
    "package_graphs",
    "package_no_graphs",
    "torch_dense",
    "triton_path",
    "reference",
    "reference_compiled",
    "three_matmuls",
    "pytorch_optimizer",
)
#: Methods that compute U Vᵀ (the others only time part of the work).
ORTHOGONALIZING = ("package", "torch_path", "package_graphs", "package_no_graphs", "torch_dense",
                   "triton_path", "reference", "reference_compiled",
                   "pytorch_optimizer")  # fmt: skip
#: Old method names in committed results.
RENAMED = {"matmul_bound": "three_matmuls"}


def ns_flops(shape: Sequence[int], steps: int) -> int:
    """Dense FLOPs of ``steps`` steps on a (..., m, n) batch: batch·steps·(4m²n + 2m³)."""
    *batch, m, n = shape
    count = 1
    for b in batch:
        count *= b
    return count * steps * ns.step_flops(m, n)


def _reference(G: torch.Tensor, steps: int, dtype: torch.dtype) -> torch.Tensor:
    X = G.mT if G.shape[-2] > G.shape[-1] else G
    X = (X / (X.norm(dim=(-2, -1), keepdim=True) * 1.01 + 1e-7)).to(dtype)
    for a, b, c in [ns.MUON] * steps:
        X = ns.reference_step(X, a, b, c)
    return X


def _torch_dense(G: torch.Tensor, steps: int, dtype: torch.dtype) -> torch.Tensor:
    """The torch path without CUDA graphs or row panels (unchecked, like CUDA's default)."""
    tall = G.shape[-2] > G.shape[-1]
    X = ns.normalize(G.mT if tall else G, check=False).to(dtype).contiguous()
    X = ns.torch_steps(X, [ns.MUON] * steps)
    return (X.mT if tall else X).to(G.dtype)


def _with_graphs(fn: Callable[[], object], on: bool) -> Callable[[], object]:
    """``fn`` with the package's CUDA graphs switched ``on`` (or off), restored after."""

    def run() -> object:
        before, ns.CUDA_GRAPHS = ns.CUDA_GRAPHS, on
        try:
            return fn()
        finally:
            ns.CUDA_GRAPHS = before

    return run


def _three_matmuls(G: torch.Tensor, steps: int, dtype: torch.dtype) -> Callable[[], None]:
    X = (G.mT if G.shape[-2] > G.shape[-1] else G).to(dtype).contiguous()
    X = X / X.norm(dim=(-2, -1), keepdim=True).to(dtype)
    A = X.new_empty(*X.shape[:-1], X.shape[-2])
    B = torch.empty_like(A)
    Y = torch.empty_like(X)

    def run() -> None:
        for _ in range(steps):
            torch.matmul(X, X.mT, out=A)
            torch.matmul(A, A, out=B)
            torch.matmul(B, X, out=Y)

    return run


def _other_library() -> tuple[Callable | None, str]:
    try:
        from pytorch_optimizer.optimizer.utils.matrix import zero_power_via_newton_schulz_5
    except ImportError:
        return None, "not installed"
    from importlib.metadata import version

    return zero_power_via_newton_schulz_5, version("pytorch-optimizer")


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    def clock(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return clock


def ns_methods(
    G: torch.Tensor, steps: int, dtype: torch.dtype, methods: Sequence[str] = METHODS
) -> dict[str, Callable[[], object]]:
    """The benchmark's callables on ``G`` (those of ``methods`` that can run on its device)."""
    from optimal_scaling import kernels

    other, _ = _other_library()
    runs: dict[str, Callable[[], object]] = {
        "package": lambda: ns.orthogonalize(G, steps=steps, dtype=dtype),
        "torch_path": lambda: ns.orthogonalize(G, steps=steps, dtype=dtype, backend="torch"),
        "reference": lambda: _reference(G, steps, dtype),
        "three_matmuls": _three_matmuls(G, steps, dtype),
    }
    if G.is_cuda:  # (on the CPU they are the package's and the torch path's own calls)
        runs["package_graphs"] = _with_graphs(runs["package"], True)
        runs["package_no_graphs"] = _with_graphs(runs["package"], False)
        runs["torch_dense"] = lambda: _torch_dense(G, steps, dtype)
    if G.is_cuda and kernels.available(G) and not kernels.interpreting():
        runs["triton_path"] = lambda: ns.orthogonalize(G, steps=steps, dtype=dtype,
                                                       backend="triton")  # fmt: skip
    if "reference_compiled" in methods:
        compiled = torch.compile(_reference)
        runs["reference_compiled"] = lambda: compiled(G, steps, dtype)
    if other is not None:
        runs["pytorch_optimizer"] = lambda: other(G, num_steps=steps, dtype=dtype)
    return {k: runs[k] for k in METHODS if k in runs and k in methods}


def newton_schulz_benchmark(
    shapes: Sequence[Sequence[int]] = FULL_SHAPES,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    steps: int = 5,
    repeats: int = 7,
    methods: Sequence[str] = METHODS,
    progress: bool = False,
    after_shape: Callable[[pd.DataFrame], object] | None = None,
) -> pd.DataFrame:
    """Time every method at every shape; one row per (shape, method).

    ``after_shape(table)`` is called with the rows so far after each shape (the command
    writes them, so a run stopped part-way keeps the shapes it finished).

    Columns: shape, method, median_s, gflops (dense FLOPs / median time: a throughput the
    methods share, whatever FLOPs each really does), and ``time_vs_reference`` = median_s /
    the eager reference's median_s at that shape (below 1 is faster). ``dtype`` defaults to
    float32 on the CPU and bfloat16 on CUDA.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown benchmark methods {unknown}; choose from {METHODS}")
    if steps < 1 or repeats < 1:
        raise ValueError(f"steps and repeats must be ≥ 1, got {steps}, {repeats}")
    for shape in shapes:
        if len(shape) < 2 or any(int(s) < 1 for s in shape):
            raise ValueError(f"a benchmark shape is (..., m, n) with positive sizes, got {shape}")
    device = torch.device(device) if device is not None else _default_device()
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    clock = _timer(device)
    rows = []
    for shape in shapes:
        shape = tuple(int(s) for s in shape)
        G = torch.randn(shape, device=device, generator=None)
        runs = ns_methods(G, steps, dtype, methods)
        times: dict[str, list[float]] = {k: [] for k in runs}
        errors: dict[str, str] = {}
        for round_ in range(repeats + 1):  # round 0 warms up: allocator, compilation, graphs
            for name, fn in runs.items():
                if name in errors:
                    continue
                try:  # a method that fails (a kernel that does not compile, out of memory)
                    t = clock(fn)  # loses its own row, never the other methods' timings
                    if round_ == 0:
                        t = clock(fn)
                except Exception as e:  # noqa: BLE001
                    errors[name] = f"{type(e).__name__}: {e}"[:300]
                    continue
                if round_ > 0:
                    times[name].append(t)
        flops = ns_flops(shape, steps)
        medians = {k: statistics.median(v) for k, v in times.items() if k not in errors}
        ref = medians.get("reference")
        for name in runs:
            t = medians.get(name, float("nan"))
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "method": name,
                    "median_s": t,
                    "gflops": flops / t / 1e9,
                    "time_vs_reference": t / ref if ref else float("nan"),
                    "error": errors.get(name, ""),
                }
            )
        if progress:
            summary = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in medians.items())
            failed = "".join(f"; {k} failed: {v}" for k, v in errors.items())
            print(f"{'x'.join(map(str, shape)):>14}: {summary}{failed}", flush=True)
        if after_shape is not None:
            after_shape(pd.DataFrame(rows))
    return pd.DataFrame(rows)


def triton_faster_rule(table: pd.DataFrame, margin: float = 0.95) -> int | None:
    """The smallest short side m from which the Triton path beat the torch path everywhere.

    From :func:`newton_schulz_benchmark`'s table: at every shape whose short side is ≥ m,
    ``triton_path`` took at most ``margin`` × ``torch_path``'s median time (5% faster by
    default, so noise does not flip the choice). None when no such m exists (or no Triton
    timings). This is the rule ``backend="auto"`` needs for :data:`TRITON_FASTER
    <optimal_scaling.newton_schulz.TRITON_FASTER>`: an entry (GPU name, dtype, m).
    """
    wide = table.pivot(index="shape", columns="method", values="median_s")
    if "triton_path" not in wide or "torch_path" not in wide:
        return None
    ratio = (wide["triton_path"] / wide["torch_path"]).dropna()
    short = {shape: min(int(v) for v in shape.split("x")[-2:]) for shape in ratio.index}
    for m in sorted(set(short.values())):
        if all(ratio[s] <= margin for s in ratio.index if short[s] >= m):
            return m
    return None


def torch_path_settings(device: torch.device) -> dict[str, object]:
    """What shapes the torch path's speed on ``device`` (recorded with every result)."""
    if device.type != "cuda":
        return {"row_panels": False, "cuda_graphs": False}
    return {"row_panels": {"from": ns.PANEL_FROM, "rows": ns.PANEL_ROWS},
            "cuda_graphs": ns.CUDA_GRAPHS, "graph_max_flops": ns.GRAPH_MAX_FLOPS}


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def versions() -> dict[str, str]:
    """Versions of the software a benchmark result depends on."""
    from optimal_scaling import __version__

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optimal_scaling": __version__,
    }
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = "not installed"
    out["pytorch_optimizer"] = _other_library()[1]
    return out


def device_name(device: str | torch.device | None = None) -> str:
    """The accelerator's name, or the CPU's model and core count."""
    device = torch.device(device) if device is not None else _default_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def write_json(path: str | Path, table: pd.DataFrame, **meta: object) -> Path:
    """Write ``{meta..., "rows": [...]}`` to ``path`` atomically (never half-written)."""
    from optimal_scaling.results import atomic_write

    payload = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **meta,
        "rows": table.to_dict(orient="records"),
    }
    text = json.dumps(payload, indent=1, default=str) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read a result written by :func:`write_json`: ``(rows as a DataFrame, metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark result at {path}")
    payload = json.loads(path.read_text())
    table = pd.DataFrame(payload.pop("rows"))
    if "method" in table:
        table["method"] = table["method"].replace(RENAMED)
    return table, payload


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per shape: the methods' GFLOP/s and time ratios side by side."""
    wide = table.pivot(index="shape", columns="method", values="time_vs_reference")
    gflops = table.pivot(index="shape", columns="method", values="gflops")
    out = gflops.add_suffix(" GFLOP/s").join(wide.add_suffix(" / reference"))
    order = list(dict.fromkeys(table["shape"]))
    return out.loc[order]


def run_newton_schulz(
    out: str | Path | None,
    fast: bool = False,
    dtype: str | None = None,
    device: str | None = None,
    repeats: int | None = None,
    steps: int = 5,
    command: str = "",
) -> pd.DataFrame:
    """The ``optimal-scaling bench ns`` command: run, print the summary, write JSON."""
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype is not None and dtype not in dtypes:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {sorted(dtypes)}")
    dev = torch.device(device) if device else _default_device()
    torch_dtype = dtypes[dtype] if dtype else None
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    slow_compile = fast and dev.type == "cpu"  # torch.compile per shape: minutes on a CPU
    used = torch_dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    meta = dict(benchmark="newton_schulz", command=command, device=device_name(dev),
                device_type=dev.type, dtype=str(used).removeprefix("torch."), steps=steps,
                schedule="muon", versions=versions(), torch_path=torch_path_settings(dev),
                # other work on the machine distorts CPU timings badly (BLAS threads wait on
                # each other): the 1-minute load average before the run, for the reader
                load_average_before=round(load_before, 2))  # fmt: skip
    table = newton_schulz_benchmark(
        FAST_SHAPES if fast else (cuda_shapes() if dev.type == "cuda" else FULL_SHAPES),
        dtype=torch_dtype,
        device=dev,
        steps=steps,
        repeats=repeats or (3 if fast else 7),
        methods=[m for m in METHODS if not (slow_compile and m == "reference_compiled")],
        progress=True,
        after_shape=None if out is None else (
            lambda part: write_json(out, part, **meta, partial=True,
                                    triton_faster_from=triton_faster_rule(part))),
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary(table).round(3).to_string())
    rule = triton_faster_rule(table)
    if dev.type == "cuda":
        print("Triton path ≥ 5% faster than the torch path at every shape with short side ≥ "
              f"{rule}" if rule else "the Triton path is not faster everywhere above any size: "
              "backend='auto' should keep the torch path on this GPU")  # fmt: skip
    if out is not None:
        path = write_json(out, table, **meta, triton_faster_from=rule)
        print(f"wrote {path}")
    return table


# -- optimizer overhead (lecture 05) --------------------------------------------------------

OPTIMIZERS = ("adamw", "muon_reference", "muon", "scion")


class ReferenceMuon(torch.optim.Optimizer):
    """Muon written from the algorithm, one parameter at a time (the benchmark's reference).

    buf ← μ·buf + g; u = g + μ·buf; X = u/(‖u‖_F + 10⁻⁷) (transposed if tall), five eager
    textbook Newton–Schulz steps in ``dtype``; W ← W − η·√max(1, d_out/d_in)·X.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95,
                 dtype: torch.dtype = torch.float32) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "momentum": momentum})
        self.dtype = dtype

    @torch.no_grad()
    def step(self, closure=None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                buf = state.setdefault("buf", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(p.grad)
                u = p.grad.add(buf, alpha=group["momentum"])
                tall = u.shape[0] > u.shape[1]
                X = (u.mT if tall else u).to(self.dtype)
                X = X / (X.norm() + 1e-7)
                for a, b, c in [ns.MUON] * 5:
                    X = ns.reference_step(X, a, b, c)
                X = (X.mT if tall else X).to(p.dtype)
                p.add_(X, alpha=-group["lr"] * max(1.0, u.shape[0] / u.shape[1]) ** 0.5)


def _make_optimizer(name: str, model: torch.nn.Module):
    from optimal_scaling import optim

    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    if name == "muon_reference":
        hidden, rest = optim.muon_param_groups(model, lr=0.02, adamw_lr=1e-3)
        device = next(model.parameters()).device
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        return optim.CombinedOptimizer([ReferenceMuon(hidden, lr=0.02, dtype=dtype),
                                        torch.optim.AdamW(rest, lr=1e-3)])  # fmt: skip
    if name == "muon":
        return optim.muon_with_adamw(model, lr=0.02, adamw_lr=1e-3)
    if name == "scion":
        return optim.Scion(optim.scion_groups(model, "colnorm-spectral-sign", lr=1e-3))
    raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")


def _forward_backward(model, optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    loss.backward()


def optimizer_benchmark(
    widths: Sequence[int] = (128, 256),
    depth: int = 2,
    batch_size: int = 8,
    context: int = 64,
    vocab_size: int = 256,
    steps: int = 10,
    repeats: int = 3,
    optimizers: Sequence[str] = OPTIMIZERS,
    device: str | torch.device | None = None,
    after_width: Callable[[pd.DataFrame], object] | None = None,
) -> pd.DataFrame:
    """The optimizer's share of a training step of a small GPT, per optimizer and width.

    Widths are measured in the order given; ``after_width(table)`` gets the rows so far
    after each (the command writes them: a run stopped part-way keeps what it finished).

    For every (width, optimizer) the same model (same init) runs ``steps`` training steps,
    timing forward + backward and ``optimizer.step()`` separately; the median over
    ``repeats`` rounds (optimizers round-robin within a round) is reported. Columns:
    width, optimizer, fwd_bwd_ms, opt_ms, step_ms, opt_share = opt / (fwd+bwd+opt),
    ``step_vs_adamw`` = the whole step's time over AdamW's at that width, and
    ``opt_vs_muon_reference`` = the optimizer step's time over :class:`ReferenceMuon`'s (a
    per-parameter Muon written from the algorithm, + AdamW on the rest).
    """
    from optimal_scaling.models import GPT

    unknown = sorted(set(optimizers) - set(OPTIMIZERS))
    if unknown:
        raise ValueError(f"unknown optimizers {unknown}; choose from {OPTIMIZERS}")
    if steps < 1 or repeats < 1:
        raise ValueError(f"steps and repeats must be ≥ 1, got {steps}, {repeats}")
    device = torch.device(device) if device is not None else _default_device()
    clock = _timer(device)
    rows = []
    for width in widths:
        torch.manual_seed(0)
        base = GPT(vocab_size=vocab_size, context=context, width=width, depth=depth,
                   n_heads=max(1, width // 64), norm_before_linear=True).to(device)
        g = torch.Generator().manual_seed(0)
        x = torch.randint(vocab_size, (batch_size, context), generator=g).to(device)
        y = torch.randint(vocab_size, (batch_size, context), generator=g).to(device)
        runs = {}
        for name in optimizers:
            model = GPT(**base.config).to(device)
            model.load_state_dict(base.state_dict())
            runs[name] = (model, _make_optimizer(name, model))
        fwd: dict[str, list[float]] = {k: [] for k in runs}
        opt: dict[str, list[float]] = {k: [] for k in runs}
        for round_ in range(repeats + 1):  # round 0 warms up
            for name, (model, optimizer) in runs.items():
                f = o = 0.0
                for _ in range(steps):
                    f += clock(functools.partial(_forward_backward, model, optimizer, x, y))
                    o += clock(optimizer.step)
                if round_:
                    fwd[name].append(f / steps)
                    opt[name].append(o / steps)
        medians = {k: (statistics.median(fwd[k]), statistics.median(opt[k])) for k in runs}
        adamw = sum(medians["adamw"]) if "adamw" in medians else float("nan")
        ref = medians["muon_reference"][1] if "muon_reference" in medians else float("nan")
        for name, (f, o) in medians.items():
            rows.append({"width": width, "optimizer": name, "params": sum(
                p.numel() for p in runs[name][0].parameters()),
                "fwd_bwd_ms": 1e3 * f, "opt_ms": 1e3 * o, "step_ms": 1e3 * (f + o),
                "opt_share": o / (f + o), "step_vs_adamw": (f + o) / adamw,
                "opt_vs_muon_reference": o / ref})
        if after_width is not None:
            after_width(pd.DataFrame(rows))
    return pd.DataFrame(rows)


def run_optimizers(
    out: str | Path | None, fast: bool = False, device: str | None = None, command: str = "",
    repeats: int | None = None,
) -> pd.DataFrame:
    """The ``optimal-scaling bench optim`` command: run, print, write JSON."""
    dev = torch.device(device) if device else _default_device()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # width 512 first: issue 11's targets are set there
    settings = dict(widths=(64, 128), steps=3, repeats=2) if fast else dict(
        widths=(512, 128, 256), steps=10, repeats=3)
    if repeats is not None:
        settings["repeats"] = repeats
    meta = dict(benchmark="optimizer_overhead", command=command, device=device_name(dev),
                device_type=dev.type, dtype="float32",
                # Newton–Schulz computes in bf16 on CUDA (Muon, Scion, the reference)
                orthogonalization_dtype="bfloat16" if dev.type == "cuda" else "float32",
                settings=settings, versions=versions(), torch_path=torch_path_settings(dev),
                load_average_before=round(load_before, 2))  # fmt: skip
    table = optimizer_benchmark(device=dev, **settings, after_width=None if out is None else (
        lambda part: write_json(out, part.sort_values("width", kind="stable"), **meta,
                                partial=True)))  # fmt: skip
    table = table.sort_values("width", kind="stable", ignore_index=True)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))
    if out is not None:
        print(f"wrote {write_json(out, table, **meta)}")
    return table
