"""How much the sweep engine costs, and how fast the laptop GPT trains here.

**Overhead.** One run of about ``seconds`` seconds of training of the laptop GPT, three ways,
interleaved over ``repeats`` rounds; each way's wall time W is split into its training time T
(measured inside, around the training steps only) and the rest, N = W − T:

* bare script: a plain loop with the same model, optimizer, batches and horizon evaluations,
  as a fresh ``python`` process timed from outside; its N0 is Python start, ``import torch``,
  data, model and optimizer, and the evaluations (E0, also measured inside);
* engine from the shell: ``optimal-scaling sweep run`` in a fresh process, timed from outside;
  N1 adds config checks, the sweep directory, norm readings, checkpoints and records;
* engine in a running worker: :func:`optimal_scaling.sweep.run` in this process, whose imports
  are warm (every run of a sweep after a worker's first); N2.

Reported, as fractions of the training time: the engine's own overhead (N1 − N0)/T1 (what it
adds to a bare training script), the whole non-training time of a one-run sweep from the shell
N1/T1, and the per-run overhead in a running worker (N2 − E0)/T2. Subtracting two
non-training times of a few seconds is far less noisy on a shared CPU than subtracting two
30-second wall times. Each quantity is the smallest over the rounds; all rounds are in the JSON.

**Tokens/s.** The same GPT trained eagerly and under ``torch.compile`` (after its compile and
warm-up steps, which are reported separately): tokens/s of each and their ratio.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from optimal_scaling.sweep.runner import (
    _loss,
    build_data,
    build_model,
    build_optimizer,
    val_batches,
)
from optimal_scaling.sweep.spec import from_dict

#: The laptop-scale GPT (byte-sized vocabulary, Scion in the norm-transfer setting).
LAPTOP_RUN = {
    "batch_size": 16,
    "device": "cpu",  # the bare-script reference runs on the CPU too
    "context": 64,
    "eval_batches": 4,
    "eval_batch_size": 16,
    "model": {"width": 128, "depth": 2, "n_heads": 4, "norm_before_linear": True},
    "data": {"source": "markov", "vocab_size": 256},
    "optimizer": {"name": "scion", "lr": 2**-6, "radii": {"output": 16.0}},
}

_TOML = """name = "bench"
horizons = {horizons}
[run]
device = "cpu"
batch_size = {batch_size}
context = {context}
eval_batches = {eval_batches}
eval_batch_size = {eval_batch_size}
[run.model]
width = {width}
depth = {depth}
n_heads = {n_heads}
norm_before_linear = true
[run.data]
source = "markov"
vocab_size = {vocab_size}
[run.optimizer]
name = "scion"
lr = {lr}
radii = {{ output = 16.0 }}
"""


def _horizons(steps: int, tokens_per_step: int) -> list[int]:
    """steps/8, steps/4, steps/2 and steps (a multiple of 8), in tokens."""
    return [steps // k * tokens_per_step for k in (8, 4, 2, 1)]


def reference_run(run: dict, horizons: list[int], threads: int) -> dict[str, float]:
    """The bare loop: train to the last horizon, evaluate at each; training and eval seconds."""
    torch.set_num_threads(threads)
    data = build_data(run["data"])
    model = build_model(run, data.vocab_size)
    opt = build_optimizer(run, model)
    B, T = run["batch_size"], run["context"]
    gen = torch.Generator().manual_seed(1)
    val = val_batches(run, data)
    marks = {h // (B * T) for h in horizons}
    train_s = eval_s = 0.0
    tick = time.perf_counter()
    for step in range(1, max(marks) + 1):
        x, y = data.batch("train", B, T, gen)
        loss = _loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step in marks:
            loss.item()
            now = time.perf_counter()
            train_s += now - tick
            with torch.no_grad():
                model.eval()
                sum(_loss(model(a), b).item() for a, b in val)
                model.train()
            tick = time.perf_counter()
            eval_s += tick - now
    return {"train_s": train_s, "eval_s": eval_s}


def engine_run(toml: str, threads: int, cold: bool) -> dict[str, float]:
    """Wall and training seconds of the engine on the one-run sweep ``toml`` (fresh directory).

    ``cold``: ``optimal-scaling sweep run`` in a new process, timed from outside (process
    start and imports count). Otherwise :func:`optimal_scaling.sweep.run` in this process.
    """
    from optimal_scaling import sweep

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench.toml"
        cfg.write_text(toml)
        out = Path(tmp) / "out"
        start = time.perf_counter()
        if cold:
            cmd = [sys.executable, "-m", "optimal_scaling.cli", "sweep", "run", str(cfg),
                   "--out", str(out), "--quiet", "--set", f"local.threads={threads}"]  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True)
        else:
            sweep.run(sweep.load(cfg, [f"local.threads={threads}"]), out, progress=False)
        wall = time.perf_counter() - start
        train_s = float(sweep.collect(out)["seconds"].max())
    return {"wall_s": wall, "train_s": train_s}


def overhead(seconds: float = 30.0, repeats: int = 3, threads: int | None = None) -> dict:
    """The engine's overhead on a one-run sweep of about ``seconds`` seconds (module doc)."""
    import os

    threads = threads or os.cpu_count() or 1
    run = from_dict({"horizons": [1024], "run": LAPTOP_RUN, "name": "b"}).base
    torch.set_num_threads(threads)
    tps = run["batch_size"] * run["context"]
    probe = reference_run(run, [32 * tps], threads)["train_s"] / 32  # seconds per step
    steps = max(8, 8 * round(seconds / probe / 8))
    horizons = _horizons(steps, tps)
    toml = _TOML.format(horizons=horizons, lr=run["optimizer"]["lr"], vocab_size=256,
                        **{k: run[k] for k in ("batch_size", "context", "eval_batches",
                                               "eval_batch_size")},
                        **{k: run["model"][k] for k in ("width", "depth", "n_heads")})  # fmt: skip
    script = [sys.executable, "-m", "optimal_scaling.sweep.benchmark",
              json.dumps({"run": run, "horizons": horizons, "threads": threads})]  # fmt: skip
    rounds = []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit all three
        start = time.perf_counter()
        inside = json.loads(subprocess.run(script, check=True, capture_output=True,
                                           text=True).stdout)  # fmt: skip
        bare = {"wall_s": time.perf_counter() - start, **inside}
        shell = engine_run(toml, threads, cold=True)
        worker = engine_run(toml, threads, cold=False)
        rounds.append({
            "bare_script": bare, "engine_shell": shell, "engine_worker": worker,
            "engine_own": (shell["wall_s"] - shell["train_s"] - bare["wall_s"]
                           + bare["train_s"]) / shell["train_s"],
            "shell_non_training": (shell["wall_s"] - shell["train_s"]) / shell["train_s"],
            "per_run_in_worker": (worker["wall_s"] - worker["train_s"] - bare["eval_s"])
                                 / worker["train_s"],
        })  # fmt: skip
    best = {k: min(r[k] for r in rounds) for k in
            ("engine_own", "shell_non_training", "per_run_in_worker")}  # fmt: skip
    return {"steps": steps, "horizons": horizons, "threads": threads,
            "train_s": min(r["engine_shell"]["train_s"] for r in rounds),
            "startup_s": min(r["bare_script"]["wall_s"] - r["bare_script"]["train_s"]
                             - r["bare_script"]["eval_s"] for r in rounds),
            **best, "rounds": rounds}  # fmt: skip


def tokens_per_second(steps: int = 100, warmup: int = 5, repeats: int = 3) -> pd.DataFrame:
    """Eager vs ``torch.compile`` training speed of the laptop GPT (module doc).

    Both versions are built and warmed up (``warmup`` steps; the compile happens there), then
    timed in alternating blocks of ``steps`` steps; each keeps its fastest block.
    """
    run = from_dict({"horizons": [1024], "run": LAPTOP_RUN, "name": "b"}).base
    data = build_data(run["data"])
    B, T = run["batch_size"], run["context"]
    steppers, warm = {}, {}
    for compiled in (False, True):
        model = build_model(run, data.vocab_size)
        opt = build_optimizer(run, model)
        net = torch.compile(model) if compiled else model
        gen = torch.Generator().manual_seed(1)

        def step(net=net, opt=opt, gen=gen) -> None:
            x, y = data.batch("train", B, T, gen)
            _loss(net(x), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        start = time.perf_counter()
        for _ in range(warmup):
            step()
        warm[compiled] = time.perf_counter() - start
        steppers[compiled] = step
    best = {False: math.inf, True: math.inf}
    for _ in range(repeats):
        for compiled, step in steppers.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            best[compiled] = min(best[compiled], time.perf_counter() - start)
    table = pd.DataFrame([
        {"compile": c, "tokens_per_s": steps * B * T / best[c], "warmup_s": warm[c],
         "steps": steps}
        for c in (False, True)
    ])  # fmt: skip
    table["vs_eager"] = table["tokens_per_s"] / table["tokens_per_s"].iloc[0]
    return table


def run_sweep_benchmark(out: str | Path | None, fast: bool = False, command: str = "") -> dict:
    """``optimal-scaling bench sweep``: overhead and tokens/s, printed and written as JSON."""
    import os

    from optimal_scaling.bench import device_name, versions, write_json

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    over = overhead(seconds=3.0 if fast else 30.0, repeats=1 if fast else 3)
    speed = tokens_per_second(steps=5 if fast else 100, warmup=2 if fast else 5,
                              repeats=1 if fast else 3)
    print(f"one run of {over['steps']} steps ({over['train_s']:.1f} s of training): the "
          f"engine adds {100 * over['engine_own']:.1f}% to a bare training script; a one-run "
          f"sweep from the shell spends {100 * over['shell_non_training']:.1f}% beyond training "
          f"(Python + torch start-up {over['startup_s']:.1f} s included); per run in a running "
          f"worker {100 * over['per_run_in_worker']:.1f}%")  # fmt: skip
    print(speed.round(3).to_string(index=False))
    if out is not None:
        path = write_json(out, speed, benchmark="sweep", command=command,
                          device=device_name("cpu"), device_type="cpu", dtype="float32",
                          overhead=over, model=LAPTOP_RUN, versions=versions(),
                          load_average_before=round(load_before, 2))  # fmt: skip
        print(f"wrote {path}")
    return {"overhead": over, "tokens_per_s": speed}


if __name__ == "__main__":  # the bare script of overhead(): python -m ... '{"run": ...}'
    args = json.loads(sys.argv[1])
    print(json.dumps(reference_run(args["run"], args["horizons"], args["threads"])))
