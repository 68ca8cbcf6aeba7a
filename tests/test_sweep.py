"""The sweep engine: grids, ids, config errors, the ci sweep, kill-and-resume, SLURM, DDP."""

from __future__ import annotations

import inspect
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from optimal_scaling import sweep
from optimal_scaling.cli import main as cli
from optimal_scaling.sweep import ConfigError
from optimal_scaling.sweep.spec import number
from optimal_scaling.sweep.store import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "configs" / "ci.toml"

TINY = {
    "name": "tiny",
    "horizons": [1024, 2048],
    "run": {
        "batch_size": 4,
        "context": 16,
        "eval_batches": 2,
        "eval_batch_size": 8,
        "check_every": 2,
        "model": {"width": 16, "depth": 1, "n_heads": 2},
        "data": {"source": "markov", "vocab_size": 32, "n_train_tokens": 8192,
                 "n_val_tokens": 2048},
        "optimizer": {"name": "adamw", "lr": 0.01},
        # the CPU also on a GPU machine: the resume tests compare runs to 1e-6, which CUDA's
        # nondeterministic kernels (attention's backward) do not promise
        "device": "cpu",
    },
}  # fmt: skip


def tiny(**changes) -> dict:
    raw = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        raw[key] = value
    return raw


def write_toml(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------- grids and ids
def test_geometric_range_is_exact_in_powers_of_two():
    values = sweep.geometric(2**-8, 1.0, 2**0.5)
    assert len(values) == 17
    assert values[0] == 2**-8 and values[-1] == 1 and values[2] == 2**-7
    assert all(math.isclose(b / a, 2**0.5) for a, b in zip(values, values[1:], strict=False))
    assert sweep.geometric(4, 64, 2) == [4, 8, 16, 32, 64]
    assert all(isinstance(v, int) for v in sweep.geometric(4, 64, 2))
    assert number("2^-8", "f", "k") == 2**-8 and number("2**3", "f", "k") == 8
    assert number("1e-3", "f", "k") == 1e-3


def test_sweep_json_reads_back_as_the_same_runs_when_the_grid_varies_optimizer_or_data():
    """to_dict is what sweep.json holds and from_dict reads it back (sweep_run_ids, collect
    --current): the resolved base run carried AdamW's betas into an SGD grid point."""
    raw = tiny(grid={"optimizer.name": ["adamw", "sgd"], "optimizer.lr": [0.01, 0.02]})
    raw["run"]["data"] = {"source": "bytes"}
    raw["grid"]["data.source"] = ["bytes", "markov"]
    spec = sweep.from_dict(raw)
    again = sweep.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert [r.id for r in again.runs()] == [r.id for r in spec.runs()]
    assert len(spec.runs()) == 8


def test_grid_is_the_product_of_lists_and_ranges():
    raw = tiny(grid={"optimizer.lr": {"start": "2^-8", "stop": "2^-6", "factor": "2^0.5"},
                     "batch_size": [4, 8], "model.width": [16, 32]})  # fmt: skip
    runs = sweep.from_dict(raw).runs()
    assert len(runs) == 5 * 2 * 2
    lrs = sorted({r.config["optimizer"]["lr"] for r in runs})
    assert lrs == pytest.approx([2 ** (-8 + k / 2) for k in range(5)])
    assert {(r.config["batch_size"], r.config["model"]["width"]) for r in runs} == {
        (4, 16), (4, 32), (8, 16), (8, 32)}  # fmt: skip
    assert all(r.horizons == [1024, 2048] for r in runs)
    assert runs[0].point == {"optimizer.lr": 2**-8, "batch_size": 4, "model.width": 16}
    assert len({r.id for r in runs}) == len(runs)
    # a key only some choices have (data.order: markov's) is an axis when the choice is one
    raw = tiny(grid={"data.source": ["markov"], "data.order": [1, 2]})
    raw["run"]["data"] = {"source": "bytes"}
    runs = sweep.from_dict(raw).runs()
    assert [r.point for r in runs] == [{"data.source": "markov", "data.order": 1},
                                       {"data.source": "markov", "data.order": 2}]  # fmt: skip
    assert [(r.config["data"]["source"], r.config["data"]["order"]) for r in runs] == [
        ("markov", 1), ("markov", 2)]  # fmt: skip


def test_ids_are_stable_and_change_with_any_key():
    a = sweep.from_dict(tiny()).runs()[0]
    b = sweep.from_dict(tiny()).runs()[0]
    assert a.id == b.id and len(a.id) == 12
    for change in (("seed", 1), ("batch_size", 8), ("optimizer", {"name": "adamw", "lr": 0.02}),
                   ("model", {"width": 32, "depth": 1, "n_heads": 2}), ("dtype", "bfloat16")):
        raw = tiny()
        raw["run"][change[0]] = change[1]
        assert sweep.from_dict(raw).runs()[0].id != a.id, change
    for key, value in (("device", "auto"), ("compile", True), ("checkpoint_minutes", 0.0),
                       ("log_every", 5)):  # how, not what: same run
        raw = tiny()
        raw["run"][key] = value
        assert sweep.from_dict(raw).runs()[0].id == a.id, key
    # a constant-lr run does not depend on the horizons (it can be extended) ...
    assert sweep.from_dict(tiny(horizons=[1024])).runs()[0].id == a.id


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_a_decaying_schedule_is_one_run_per_horizon(name):
    raw = tiny()
    raw["run"]["schedule"] = {"name": name, "final_fraction": 0.1}
    runs = sweep.from_dict(raw).runs()
    assert [r.horizons for r in runs] == [[1024], [2048]]
    assert [r.config["horizon"] for r in runs] == [1024, 2048]
    assert [r.point for r in runs] == [{"horizon": 1024}, {"horizon": 2048}]  # shown per run
    assert runs[0].id != runs[1].id
    # the limits are inclusive: warmup up to one step short of the first horizon (1024 tokens
    # of 4 × 16 per step: 16 steps), and a final fraction of 1 (no decay)
    raw["run"]["schedule"] = {"name": name, "warmup_steps": 1024 // 64 - 1, "final_fraction": 1}
    assert len(sweep.from_dict(raw).runs()) == 2


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("horizons = [1024]\n[run]\nbatchsize = 4\n", ["run.batchsize", "unknown key"]),
        ("horizons = [1024]\n[run.model]\nwidht = 4\n", ["run.model.widht", "unknown key"]),
        ("horizons = [1024]\n[run]\nbatch_size = 'four'\n", ["run.batch_size", "number"]),
        ("horizons = [1024]\n[run]\nbatch_size = 4.5\n", ["run.batch_size", "integer"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'adamw'\nlr = true\n",
         ["run.optimizer.lr", "number"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'adam'\n",
         ["run.optimizer.name", "unknown option 'adam'"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'adamw'\nmomentum = 0.9\n",
         ["run.optimizer.momentum", "unknown key"]),
        ("horizons = [1024]\n[run.data]\nsource = 'web'\n", ["run.data.source", "'web'"]),
        ("horizons = [1024]\n[grid]\nbatch_size = []\n", ["grid.batch_size", "empty"]),
        ("horizons = [1024]\n[grid]\n'optimizer.lrr' = [1]\n", ["grid.optimizer.lrr"]),
        ("horizons = [1000]\n", ["horizons", "whole number of steps"]),
        ("horizons = [2048, 1024]\n", ["horizons", "increasing"]),
        ("horizons = [inf]\n", ["horizons", "positive integers"]),
        ("horizons = [nan]\n", ["horizons", "positive integers"]),
        ("horizons = [0, 1024]\n", ["horizons", "positive integers"]),
        ("horizons = [1024, 1024]\n", ["horizons", "without repeats"]),
        ("[run]\nseed = 1\n", ["horizons", "missing"]),
        ("horizons = [1024]\n[run.model]\nwidth = 30\nn_heads = 4\n",
         ["run.model", "not divisible"]),
        ("horizons = [1024]\n[run]\nbatch_size = 6\n[resources]\nprocesses = 4\n",
         ["run.batch_size", "do not split over 4 processes"]),
        ("horizons = [1024]\n[resources]\nprocesses = 0\n", ["resources.processes", "≥ 1"]),
        ("horizons = [1024]\n[resources]\nnodes = 0\n", ["resources.nodes", "≥ 1"]),
        ("horizons = [1024]\n[grid]\nbatch_size = [4, 4]\n",
         ["grid: two grid points give the same run", "batch_size=4"]),
        ("horizons = [1024, 2048]\n[run]\nbatch_size = 4\ncontext = 16\n[run.schedule]\n"
         "warmup_steps = 16\n",
         ["run.schedule.warmup_steps", "16 warmup steps do not fit the 16 steps"]),
        ("horizons = [1024]\n[run.schedule]\nname = 'linear'\nfinal_fraction = 1.5\n",
         ["run.schedule.final_fraction", "[0, 1]"]),
        ("horizons = [1024]\n[run]\nmicro_batch_size = 3\n",
         ["run.micro_batch_size", "does not divide"]),
        ("horizons = [1024]\n[run]\nbatch_size = 4\nnoise_scale = true\n",
         ["run.noise_scale", "two micro-batches"]),
        ("horizons = [1024]\n[run]\nlog_every = -1\n", ["run.log_every", "≥ 0"]),
        ("horizons = [1024]\n[run]\ncheckpoint_minutes = -5\n",
         ["run.checkpoint_minutes", "≥ 0"]),
        ("horizons = [1024]\n[run]\ncheckpoint_minutes = nan\n",
         ["run.checkpoint_minutes", "finite number"]),
        ("horizons = [1024]\n[grid]\n'optimizer.lr' = {start = 1, stop = 0.1, factor = 2}\n",
         ["grid.optimizer.lr", "below start"]),
        ("horizons = [1024]\n[slurm]\npartiton = 'gpu'\n", ["slurm.partiton", "unknown key"]),
        ("horizon = [1024]\n", ["horizon", "unknown key"]),
        ("horizons = [1024]\n[run]\nmodel = 3\n", ["run.model", "must be a table"]),
        ("horizons = [1024]\n[run.data]\nvocab_size = 70000\n", ["run.data", "uint16"]),
        ("horizons = [1024]\n[run.data]\nsource = 'bytes'\nval_fraction = 0.0\n",
         ["run.data.val_fraction", "validation split"]),
        ("horizons = [1024]\n[run]\ndata = 'markov'\n", ["run.data", "must be a table"]),
        ("horizons = [1024]\nrun = 5\n", ["run", "expected a table"]),
        ("horizons = [1024]\n[run.optimizer]\nlr = '-2^0.5'\n", ["run.optimizer.lr", "b ≥ 0"]),
        ("horizons = [1024]\n[run.optimizer]\nlr = '0^-1'\n", ["run.optimizer.lr", "b > 0"]),
        ("horizons = [1024]\n[run.optimizer]\nlr = '-2^-8'\n", ["run.optimizer.lr", "b ≥ 0"]),
        ("horizons = [1024]\n[run.optimizer]\nlr = '10^400'\n", ["run.optimizer.lr", "b^k"]),
        ("horizons = [1024]\n[local]\nthreads = -3\n", ["local.threads", "≥ 0"]),
        ("horizons = [1024]\n[slurm]\ntime_min = 2\n", ["slurm.time_min", "≥ 3", "90 s"]),
        ("horizons = [1024]\n[slurm]\narray_parallelism = 0\n",
         ["slurm.array_parallelism", "≥ 1"]),
        ("horizons = [1024]\n[slurm]\nmem_gb = -3\n", ["slurm.mem_gb", "≥ 0"]),
        ("horizons = [1024]\n[slurm.additional]\nconstraint = [1, 2]\n",
         ["slurm.additional.constraint", "an #SBATCH value is a string"]),
        ("horizons = [1024]\ndescription = [5]\n", ["description", "expected a string"]),
        ("horizons = [1024]\n[run]\nseed = -1\n", ["run.seed", "[0, 2^63)"]),
        ("horizons = [1024]\n[run]\nseed = 1e30\n", ["run.seed", "[0, 2^63)"]),
        ("horizons = [1024]\n[run]\nblowup = -1.0\n", ["run.blowup", "> 1"]),
        ("horizons = [1024]\n[run.data]\nn_val_tokens = 10\n",
         ["run.data.n_val_tokens", "one window"]),
        ("horizons = [1024]\n[run.data]\nsource = 'bytes'\nmax_bytes = -5\n",
         ["run.data.max_bytes", "≥ 0"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'adamw'\nparametrization = 'mupp'\n",
         ["run.optimizer", "unknown parametrization 'mupp'"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'adamw'\nbetas = [1.5, -0.2]\n",
         ["run.optimizer", "beta"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'adamw'\nbetas = [0.9]\n",
         ["run.optimizer.betas", "expected 2 values"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'adamw'\nbase_width = -16\n",
         ["run.optimizer", "base_width"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'adamw'\neps = -1e-8\n",
         ["run.optimizer.eps", "≥ 0"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'muon'\nscale = 'bogus'\n",
         ["run.optimizer", "unknown scale 'bogus'"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'scion'\npreset = 'bogus'\n",
         ["run.optimizer", "unknown preset 'bogus'"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'scion'\nmomentum = 5.0\n",
         ["run.optimizer", "momentum"]),
        ("horizons = [1024]\n[run.optimizer]\nname = 'scion'\nradii = {output = -16.0}\n",
         ["run.optimizer", "radius"]),
    ],
)
def test_every_config_error_names_the_key_and_the_file(tmp_path, text, names):
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        sweep.load(path)
    message = str(info.value)
    assert str(path) in message
    for name in names:
        assert name in message, message


def test_overrides_set_run_keys_axes_and_sections():
    s = sweep.load(CI, ["optimizer.lr=0.02", "grid.batch_size=[8]", "local.workers=3",
                        "horizons=[4096]", "model.width=64"])  # fmt: skip
    runs = s.runs()
    assert len(runs) == 1 and runs[0].config["optimizer"]["lr"] == 0.02  # lr axis dropped
    assert runs[0].config["model"]["width"] == 64 and s.local["workers"] == 3
    assert s.horizons == [4096]
    with pytest.raises(ConfigError, match="model.widht"):
        sweep.load(CI, ["model.widht=3"])
    with pytest.raises(ConfigError, match="expected key=value"):
        sweep.load(CI, ["model.width"])
    assert sweep.load(CI, ["description=2024"]).description == "2024"  # --set parses it
    s = sweep.load(CI, ["slurm.additional={exclusive = true, constraint = 'h100'}"])
    assert s.slurm["additional"] == {"exclusive": True, "constraint": "h100"}  # a flag too
    with pytest.raises(ConfigError, match="slurm.additional.exclusive"):
        sweep.load(CI, ["slurm.additional={exclusive = false}"])
    for both in (["grid.optimizer.lr=[0.01, 0.02]", "optimizer.lr=0.05"],
                 ["optimizer.lr=0.05", "grid.optimizer.lr=[0.01, 0.02]"]):  # fmt: skip
        with pytest.raises(ConfigError, match="optimizer.lr is set both as a grid axis"):
            sweep.load(CI, both)


def test_a_tiny_range_keeps_its_values_and_a_binary_file_is_named(tmp_path):
    assert sweep.geometric(2**-31, 2**-29, 2) == [2**-31, 2**-30, 2**-29]  # not rounded to 0
    assert sweep.geometric(0.5, 2, 2) == [0.5, 1, 2]
    path = tmp_path / "latin.toml"
    path.write_bytes(b"name = '\xff'\n")
    with pytest.raises(ConfigError, match="latin.toml: not valid TOML"):
        sweep.load(path)


def test_loading_a_sweep_leaves_the_global_random_state_alone(monkeypatch):
    from optimal_scaling.sweep import spec

    monkeypatch.setattr(spec, "_BUILT", set())  # build the stand-ins again
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    reseeded = []
    monkeypatch.setattr(torch, "manual_seed", lambda seed: reseeded.append(seed))
    sweep.load(CI)  # builds each optimizer on a stand-in model
    assert torch.equal(torch.rand(3), expected)
    assert reseeded == []  # torch.manual_seed would reseed CUDA too


def test_the_optimizer_check_builds_one_small_stand_in(monkeypatch):
    from optimal_scaling.sweep import runner, spec

    monkeypatch.setattr(spec, "_BUILT", set())
    widths = []
    real = runner.build_optimizer

    def spy(run, model, distributed=False):
        widths.append(model.width)
        return real(run, model, distributed)

    monkeypatch.setattr(runner, "build_optimizer", spy)
    raw = tiny(grid={"model.width": [256, 512, 1024]})
    raw["run"]["model"] = {"width": 256, "n_heads": 64}
    raw["run"]["optimizer"] = {"name": "scion", "lr": 0.01}
    s = sweep.from_dict(raw)
    assert len(s.runs()) == 3
    assert widths == [128]  # head size 2 whatever the real width, built once per process


# --------------------------------------------------------------------------- running
def _rows(out: Path):
    return sweep.collect(out)


def test_ci_sweep_with_two_workers(tmp_path):
    s = sweep.load(CI)
    runs = s.runs()
    assert len(runs) >= 8 and len(s.horizons) >= 3
    counts = sweep.run(s, tmp_path / "ci", workers=2, progress=False)
    assert counts == {"done": len(runs)}
    table = _rows(tmp_path / "ci")
    assert len(table) == len(runs) * len(s.horizons)
    assert not table.duplicated(["run_id", "horizon"]).any()
    assert set(table["run_id"]) == {r.id for r in runs}
    for col in ("norm[input]", "norm[hidden]", "norm[output]", "norm[gain]"):
        assert table[col].notna().all() and (table[col] > 0).all()
    assert (table["tokens"] == table["horizon"]).all()
    assert table["val_loss"].between(0, 10).all()
    assert {"optimizer.lr", "batch_size", "model.width", "data.source"} <= set(table.columns)
    # N for scaling laws: the model's parameters, all and without the embedding tables
    from optimal_scaling.sweep.runner import build_model

    m = build_model(runs[0].config, vocab_size=64)
    assert (table["params"] == m.num_params()).all()
    assert (table["params_non_embedding"] == m.num_params(non_embedding=True)).all()
    # the output layer starts at radius 16 in the RMS→∞ norm (Scion's norm-matched init)
    smallest = table.sort_values(["optimizer.lr", "horizon"]).iloc[0]
    assert smallest["norm[output]"] == pytest.approx(16, rel=0.05)
    # a second invocation trains nothing
    assert sweep.run(s, tmp_path / "ci", workers=2, progress=False) == {}
    assert all(read_json(tmp_path / "ci" / "runs" / r.id / "record.json")["trainings"] == 1
               for r in runs)  # fmt: skip


def test_collect_cli_writes_a_provenance_header(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # where configs/ci.toml is
    out = tmp_path / "ci"
    assert cli(["sweep", "run", str(CI), "--out", str(out), "--quiet",
                "--set", "grid.batch_size=[8]", "--set", "horizons=[4096, 8192]"]) == 0  # fmt: skip
    assert cli(["sweep", "collect", str(out), "--out", str(tmp_path / "t.csv")]) == 0
    from optimal_scaling.results import read_table

    table, meta = read_table(tmp_path / "t.csv")
    assert meta["command"].startswith("optimal-scaling sweep collect")
    assert {"optimal_scaling", "torch", "machine", "date", "sweep"} <= set(meta)
    assert len(table) == 4 * 2 and "outside_sweep" not in meta
    assert meta["runs_from"] == f"optimal-scaling sweep run configs/ci.toml --out {out.as_posix()}"
    # where the runs trained (the CPU with its vector instructions, the workers' threads)
    import torch

    from optimal_scaling.config import cpu_name

    simd = torch.backends.cpu.get_cpu_capability()
    assert meta["trained_on"] == (f"torch {torch.__version__} on CPU {cpu_name()} ({simd}), "
                                  f"{os.cpu_count()} cores, torch threads 1 (4 runs)")  # fmt: skip
    monkeypatch.chdir(tmp_path)  # no preset of that name here: no line
    first = sorted((out / "runs").iterdir())[0] / "record.json"
    record = read_json(first)
    del record["starts"][0]["machine"]  # a record written before runs named their machine
    write_json(first, record)
    assert cli(["sweep", "collect", str(out), "--out", str(tmp_path / "u.csv")]) == 0
    meta = read_table(tmp_path / "u.csv")[1]
    assert "runs_from" not in meta
    assert meta["trained_on"].endswith("threads 1 (3 runs); a machine not recorded (1 run)")


def test_collect_warns_about_runs_outside_the_folders_sweep(tmp_path, capsys):
    """A second grid run into the same folder: both are collected (with a warning and a
    header line) unless --current keeps only the runs of the sweep last run there."""
    from optimal_scaling.results import read_table

    out = tmp_path / "mixed"
    sweep.run(sweep.from_dict(tiny()), out, progress=False)
    sweep.run(sweep.from_dict(tiny(grid={"optimizer.lr": [0.02, 0.03]})), out, progress=False)
    capsys.readouterr()
    assert cli(["sweep", "collect", str(out), "--out", str(tmp_path / "all.csv")]) == 0
    assert "1 of 3 runs" in capsys.readouterr().err
    table, meta = read_table(tmp_path / "all.csv")
    assert table["run_id"].nunique() == 3 and meta["outside_sweep"] == "1 runs"
    assert cli(["sweep", "collect", str(out), "--current", "--out",
                str(tmp_path / "now.csv")]) == 0  # fmt: skip
    table, meta = read_table(tmp_path / "now.csv")
    assert sorted(table["optimizer.lr"].unique()) == [0.02, 0.03]
    assert meta["runs"] == "done 2" and "outside_sweep" not in meta
    # an old run without rows (failed before its first horizon) is outside too
    (out / "runs" / "0ld0ld0ld0ld").mkdir()
    (out / "runs" / "0ld0ld0ld0ld" / "record.json").write_text('{"status": "failed"}')
    capsys.readouterr()
    assert cli(["sweep", "collect", str(out), "--current", "--out", str(tmp_path / "n.csv")]) == 0
    assert read_table(tmp_path / "n.csv")[1]["runs"] == "done 2"
    assert cli(["sweep", "collect", str(out), "--out", str(tmp_path / "all.csv")]) == 0
    assert "2 of 4 runs" in capsys.readouterr().err
    # a sweep.json this version cannot read (another version's keys): every folder, warned
    spec = json.loads((out / "sweep.json").read_text())
    spec["run"]["new_key"] = 1
    (out / "sweep.json").write_text(json.dumps(spec))
    assert cli(["sweep", "collect", str(out), "--out", str(tmp_path / "any.csv")]) == 0
    assert "cannot tell which runs" in capsys.readouterr().err
    assert cli(["sweep", "collect", str(out), "--current", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--current needs the folder's sweep.json" in capsys.readouterr().err
    (out / "sweep.json").unlink()  # no sweep.json at all: --current cannot choose
    assert cli(["sweep", "collect", str(out), "--current", "--out", str(tmp_path / "y.csv")]) == 2
    assert "there is none" in capsys.readouterr().err


def test_resume_from_a_horizon_checkpoint_equals_an_uninterrupted_run(tmp_path):
    raw = tiny(horizons=[1024, 2048, 4096])
    whole = sweep.from_dict(raw)
    sweep.run(whole, tmp_path / "a", progress=False)
    # the same run, stopped at its first horizon, then extended: it resumes from there
    sweep.run(sweep.from_dict(tiny(horizons=[1024])), tmp_path / "b", progress=False)
    sweep.run(whole, tmp_path / "b", progress=False)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert len(a) == len(b) == 3
    for col in ("val_loss", "train_loss", "norm[hidden]", "norm[output]"):
        assert (a[col] - b[col]).abs().max() < 1e-6, col
    record = read_json(tmp_path / "b" / "runs" / a["run_id"][0] / "record.json")
    assert record["trainings"] == 2
    assert [s["from_step"] for s in record["starts"]] == [0, 1024 // 64]
    # the blow-up reference is the run's first loss, not the loss where it resumed
    first = [torch.load(tmp_path / x / "runs" / a["run_id"][0] / "checkpoint.pt",
                        weights_only=False)["first"] for x in "ab"]  # fmt: skip
    assert first[0] == first[1]
    # each row's rate: the tokens since the previous horizon over the seconds since it
    for table in (a, b):
        tokens, seconds = np.diff(table["tokens"], prepend=0), np.diff(table["seconds"], prepend=0)
        assert table["tokens_per_s"].to_numpy() == pytest.approx(tokens / seconds, rel=1e-9)


def test_a_diverging_run_is_recorded_and_the_others_finish(tmp_path):
    raw = tiny(grid={"optimizer.lr": [0.01, 1000.0]})
    counts = sweep.run(sweep.from_dict(raw), tmp_path / "d", progress=False)
    assert counts == {"done": 1, "diverged": 1}
    table = _rows(tmp_path / "d")
    bad = table[table["optimizer.lr"] == 1000.0]
    assert bad["diverged"].all() and bad["reason"].str.contains("loss").all()
    assert math.isinf(bad["val_loss"].iloc[-1])
    assert table[table["optimizer.lr"] == 0.01]["val_loss"].notna().all()
    assert sweep.status(tmp_path / "d")["diverged"] == 1
    # one that diverged after its first horizon keeps what it measured there; only the
    # horizon it did not reach reads inf
    rid = bad["run_id"].iloc[0]
    write_json(tmp_path / "d" / "runs" / rid / "record.json",
               {"status": "diverged", "reason": "loss 1e9",
                "rows": [{"horizon": 1024, "val_loss": 2.5, "train_loss": 2.75}]})  # fmt: skip
    late = _rows(tmp_path / "d").query("run_id == @rid")
    assert late["horizon"].tolist() == [1024, 2048]
    assert late["val_loss"].tolist() == [2.5, math.inf]
    assert late["train_loss"].tolist() == [2.75, math.inf]


def test_a_nan_gradient_that_muon_refuses_is_a_divergence_not_a_failure(tmp_path):
    # lr 1e30 breaks the weights at step 1; the NaN gradient of step 2 reaches Muon's CPU
    # check before the loss check (every check_every steps) sees the loss
    raw = tiny(grid={"optimizer.lr": [0.01, 1e30]}, horizons=[1024])
    raw["run"]["optimizer"] = {"name": "muon", "lr": 0.01}
    raw["run"]["check_every"] = 8
    raw["run"]["log_every"] = 1
    counts = sweep.run(sweep.from_dict(raw), tmp_path / "m", progress=False)
    assert counts == {"done": 1, "diverged": 1}
    table = _rows(tmp_path / "m")
    bad = table[table["optimizer.lr"] == 1e30]
    assert bad["reason"].str.contains("non-finite gradient").all()
    # the steps before the refused one are in the run's log (not lost with the unchecked ones)
    record = read_json(tmp_path / "m" / "runs" / bad["run_id"].iloc[0] / "record.json")
    step = int(bad["reason"].iloc[0].split("at step ")[1].split(":")[0])
    assert record["log"]["step"] == list(range(1, step))


def test_a_failing_run_is_recorded_with_its_error(tmp_path):
    raw = tiny(grid={"data.source": ["markov", "shards"]})
    raw["run"]["data"] = {"source": "markov", "vocab_size": 32}
    with pytest.raises(ConfigError, match="run.data.folder"):  # checked before running
        sweep.from_dict(raw)
    raw["run"]["data"] = {"source": "shards", "folder": str(tmp_path / "nowhere")}
    raw.pop("grid")
    with pytest.raises(ConfigError, match="nowhere does not exist on this machine"):
        sweep.run(sweep.from_dict(raw), tmp_path / "f", progress=False)  # before writing
    assert not (tmp_path / "f").exists()
    (tmp_path / "empty").mkdir()  # a folder without shards fails only when the run opens it
    raw["run"]["data"]["folder"] = str(tmp_path / "empty")
    counts = sweep.run(sweep.from_dict(raw), tmp_path / "f", progress=False)
    assert counts == {"failed": 1}
    table = sweep.status_table(tmp_path / "f")
    assert table["status"].tolist() == ["failed"]
    assert "train.bin" in table["reason"][0] and "does not exist" in table["reason"][0]


def _statuses(out: Path) -> dict[str, dict]:
    found = {}
    for rec in (out / "runs").glob("*/record.json"):
        found[rec.parent.name] = json.loads(rec.read_text())
    return found


def test_kill_and_resume(tmp_path):
    out = tmp_path / "k"
    args = ["--set", "horizons=[4096, 32768, 65536]", "--workers", "2", "--quiet"]
    cmd = [sys.executable, "-m", "optimal_scaling.cli", "sweep", "run", str(CI),
           "--out", str(out), *args]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            done = [r for r in _statuses(out).values() if r.get("status") == "done"]
            if len(done) >= 2:
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    from optimal_scaling.sweep.store import lock_holder

    deadline = time.time() + 20  # SIGKILL is delivered asynchronously: let the workers die
    while time.time() < deadline and any(lock_holder(p) for p in (out / "runs").iterdir()):
        time.sleep(0.05)
    before = _statuses(out)
    finished = {k for k, r in before.items() if r.get("status") == "done"}
    partial = {k: len(r["rows"]) for k, r in before.items() if r.get("status") != "done"}
    assert 2 <= len(finished) < 8
    s = sweep.load(CI, ["horizons=[4096, 32768, 65536]"])
    counts = sweep.run(s, out, workers=2, progress=False)
    assert sum(counts.values()) == 8 - len(finished)
    after = _statuses(out)
    table = _rows(out)
    assert len(table) == 8 * 3 and not table.duplicated(["run_id", "horizon"]).any()
    assert all(r["status"] == "done" for r in after.values())
    for rid in finished:  # never trained again
        assert after[rid]["trainings"] == 1
        assert after[rid]["rows"] == before[rid]["rows"]
    for rid, reached in partial.items():  # resumed from the last horizon they reached
        assert after[rid]["trainings"] == 2
        assert after[rid]["rows"][:reached] == before[rid]["rows"]
        if reached:
            assert after[rid]["starts"][1]["from_step"] == before[rid]["rows"][-1]["step"]
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == "lock"]
    assert leftovers == []


def test_a_stale_lock_of_a_finished_run_is_dropped(tmp_path):
    """A worker killed between recording its last horizon and releasing its lock leaves a
    done run with a lock no one will take over; the next invocation removes it, and leaves
    a live holder's lock alone."""
    import socket

    s = sweep.load(CI)
    out = tmp_path / "ci"
    sweep.run(s, out, workers=2, progress=False)
    folders = sorted((out / "runs").iterdir())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folders[0] / "lock").write_text(json.dumps({"host": socket.gethostname(),
                                                 "pid": dead.pid, "job": ""}))  # fmt: skip
    (folders[1] / "lock").write_text(json.dumps({"host": socket.gethostname(),
                                                 "pid": os.getpid(), "job": ""}))  # fmt: skip
    assert sweep.run(s, out, workers=2, progress=False) == {}
    assert not (folders[0] / "lock").exists()
    assert (folders[1] / "lock").exists()  # held by a live process (this one)


def only_record(folder: Path) -> dict:
    (rec,) = [json.loads(p.read_text()) for p in folder.glob("runs/*/record.json")]
    return rec


def test_the_runner_applies_the_schedule_at_every_step(tmp_path):
    from optimal_scaling.sweep.runner import lr_factor

    sched = {"name": "linear", "warmup_steps": 4, "final_fraction": 0.1}
    const, lin = tiny(), tiny()
    const["horizons"] = lin["horizons"] = [1024]  # 16 steps
    lin["run"]["schedule"] = sched
    sweep.run(sweep.from_dict(const), tmp_path / "c", progress=False)
    sweep.run(sweep.from_dict(lin), tmp_path / "l", progress=False)
    base = only_record(tmp_path / "c")["rows"][0]["lr"]
    got = only_record(tmp_path / "l")["rows"][0]["lr"]
    assert got == pytest.approx(base * lr_factor(sched, 15, 16), rel=1e-12)  # the last step's


def test_log_entries_are_means_of_their_own_steps(tmp_path):
    one, three = tiny(), tiny()
    one["run"]["log_every"], three["run"]["log_every"] = 1, 3  # 16 steps per horizon: 3 ∤ 16
    sweep.run(sweep.from_dict(one), tmp_path / "1", progress=False)
    sweep.run(sweep.from_dict(three), tmp_path / "3", progress=False)
    per_step = only_record(tmp_path / "1")["log"]["train_loss"]
    log = only_record(tmp_path / "3")["log"]
    for at, value in zip(log["step"], log["train_loss"], strict=True):
        assert value == pytest.approx(np.mean(per_step[at - 3 : at]), rel=1e-9), at


def test_val_loss_is_the_mean_over_the_same_validation_batches_for_every_run(tmp_path):
    from optimal_scaling.sweep import runner
    from optimal_scaling.sweep.store import read_config

    out, rid = tmp_path / "v", sweep.from_dict(tiny(horizons=[1024])).runs()[0].id
    sweep.run(sweep.from_dict(tiny(horizons=[1024])), out, progress=False)
    run = read_config(out / "runs" / rid)["run"]
    data = runner.build_data(run["data"])
    val = runner.val_batches(run, data)
    assert len(val) == 2
    for seed in (1, 2):  # seeded by VAL_SEED, not by the run
        for (x, y), (x2, y2) in zip(val, runner.val_batches(dict(run, seed=seed), data),
                                    strict=True):  # fmt: skip
            assert torch.equal(x, x2) and torch.equal(y, y2)
    # the recorded val_loss is the mean of the final model's loss over those batches
    model = runner.build_model(run, data.vocab_size)
    model.load_state_dict(torch.load(out / "runs" / rid / "checkpoint.pt",
                                     weights_only=False)["model"])  # fmt: skip
    model.eval()
    with torch.no_grad():
        want = np.mean([runner._loss(model(x), y).item() for x, y in val])
    assert only_record(out)["rows"][-1]["val_loss"] == pytest.approx(want, rel=1e-6)


# --------------------------------------------------------------------------- executors
def test_dry_run_prints_runs_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "dry"
    assert cli(["sweep", "run", str(CI), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    runs = sweep.load(CI).runs()
    assert f"{len(runs)} runs" in text and all(r.id in text for r in runs)
    assert not out.exists()
    assert cli(["sweep", "run", str(CI), "--out", str(out), "--dry-run", "--executor", "slurm",
                "--set", "resources.processes=2", "--set", "slurm.partition=gpu"]) == 0
    text = capsys.readouterr().out
    assert f"#SBATCH --array=0-{len(runs) - 1}%" in text
    assert "#SBATCH --gpus-per-node=2" in text and "#SBATCH --ntasks-per-node=2" in text
    assert "#SBATCH --partition=gpu" in text and "srun" in text
    assert cli(["sweep", "run", str(CI), "--out", str(out), "--dry-run",
                "--set", "resources.processes=2"]) == 0  # fmt: skip
    assert "torch.distributed.run --standalone --nproc_per_node=2" in capsys.readouterr().out
    assert not out.exists()
    # a failed run is trained again, a done one is not
    from optimal_scaling.sweep.executors import describe
    from optimal_scaling.sweep.store import run_dir

    raw = tiny(grid={"optimizer.lr": [0.01, 0.02]})
    s = sweep.from_dict(raw)
    failed, done = s.runs()
    _prepared(tmp_path / "old", raw)
    write_json(run_dir(tmp_path / "old", failed.id) / "record.json",
               {"status": "failed", "rows": [], "error": "boom"})  # fmt: skip
    write_json(run_dir(tmp_path / "old", done.id) / "record.json",
               {"status": "done", "rows": [{"horizon": 1024}, {"horizon": 2048}]})  # fmt: skip
    text = describe(s, tmp_path / "old", s.runs(), "local")
    assert "2 runs, 1 to train" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli(["sweep", "run", str(tmp_path / "missing.toml")]) == 2
    assert "no such sweep file" in capsys.readouterr().err
    assert cli(["sweep", "run", str(CI), "--set", "optimizer.lrr=1"]) == 2
    assert "optimizer.lrr" in capsys.readouterr().err
    assert cli(["sweep", "status", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_submitit_local_executor_runs_the_ci_sweep(tmp_path):
    out = tmp_path / "sub"
    s = sweep.load(CI, ["slurm.cluster=local", "grid.batch_size=[8]"])
    counts = sweep.run(s, out, executor="slurm", progress=False)
    assert counts == {"done": 4}
    table = _rows(out)
    assert len(table) == 4 * 3 and table["norm[output]"].notna().all()


def test_fake_sbatch_receives_the_job_array(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    fake = bin_dir / "sbatch"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\ncat \"$1\" >> {log}\n"
                    "echo 'Submitted batch job 4242'\n")  # fmt: skip
    fake.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for srun
    (bin_dir / "srun").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, "-m", "optimal_scaling.cli", "sweep", "run", str(CI), "--out",
           str(tmp_path / "s"), "--executor", "slurm", "--set", "resources.processes=2",
           "--set", "slurm.partition=gpu", "--set", "slurm.time_min=30",
           "--set", "slurm.array_parallelism=3", "--set", "slurm.account=proj",
           "--set", "slurm.setup=['source .venv/bin/activate']"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "job array 4242" in done.stdout
    script = log.read_text()
    assert "#SBATCH --array=0-7%3" in script
    for line in ("--gpus-per-node=2", "--ntasks-per-node=2", "--partition=gpu",
                 "--time=30", "--account=proj", "--nodes=1"):  # fmt: skip
        assert f"#SBATCH {line}" in script, line
    assert "source .venv/bin/activate" in script
    assert "srun" in script and "submitit.core._submit" in script
    # every run is registered in the sweep directory, pending until the cluster runs it
    assert sweep.status(tmp_path / "s")["pending"] == 8


@pytest.mark.distributed
def test_two_process_run_equals_one_process(tmp_path):
    raw = tiny(horizons=[512, 1024])
    raw["run"]["optimizer"] = {"name": "scion", "lr": 0.02, "radii": {"output": 8.0}}
    raw["run"]["device"] = "cpu"  # two processes on gloo (a one-GPU machine has no second GPU)
    one = sweep.from_dict(raw)
    sweep.run(one, tmp_path / "one", progress=False)
    two = sweep.from_dict(dict(raw, resources={"processes": 2}))
    assert two.runs()[0].id == one.runs()[0].id  # the same run, on two processes
    assert sweep.run(two, tmp_path / "two", progress=False) == {"done": 1}
    a, b = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert len(a) == len(b) == 2
    for col in ("val_loss", "train_loss", "norm[hidden]", "norm[output]"):
        assert (a[col] - b[col]).abs().max() < 1e-5, (col, a[col].tolist(), b[col].tolist())
    record = read_json(tmp_path / "two" / "runs" / a["run_id"][0] / "record.json")
    assert record["starts"][0]["world"] == 2


def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(tmp_path):
    out = tmp_path / "c"
    cmd = [sys.executable, "-m", "optimal_scaling.cli", "sweep", "run", str(CI), "--out",
           str(out), "--workers", "2", "--quiet", "--set", "horizons=[4096, 32768, 65536]"]
    # A test worker (pytest-xdist) may ignore SIGINT, and children inherit that: restore the
    # default, as in a terminal, so that Python turns Ctrl-C into KeyboardInterrupt.
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not any(
        r.get("rows") for r in _statuses(out).values()
    ):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not [p for p in out.rglob("*") if p.name == "lock" or p.name.endswith(".tmp")]
    counts = sweep.run(sweep.load(CI, ["horizons=[4096, 32768, 65536]"]), out, workers=2,
                       progress=False)  # fmt: skip
    assert set(counts) == {"done"}
    assert sweep.status(out)["done"] == 8


def test_schedules_follow_their_formulas():
    from optimal_scaling.sweep.runner import lr_factor

    const = {"name": "constant", "warmup_steps": 4, "final_fraction": 0.0}
    assert [lr_factor(const, t, 100) for t in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    cos = {"name": "cosine", "warmup_steps": 0, "final_fraction": 0.1}
    for t in (0, 10, 50, 99, 100):
        want = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / 100))
        assert lr_factor(cos, t, 100) == pytest.approx(want)
    lin = {"name": "linear", "warmup_steps": 10, "final_fraction": 0.0}
    assert lr_factor(lin, 10, 110) == pytest.approx(1.0)
    assert lr_factor(lin, 60, 110) == pytest.approx(0.5)
    assert lr_factor(lin, 110, 110) == pytest.approx(0.0)


def test_a_preempted_slurm_task_requeues_itself_with_the_same_run():
    import submitit

    from optimal_scaling.sweep.executors import SweepJob

    job = SweepJob("/shared/runs/ci")
    again = job.checkpoint("abc123def456")
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.args == ("abc123def456",)
    assert again.function.out == "/shared/runs/ci"


def test_submitit_executors_get_gpus_requeues_and_extra_sbatch_options(tmp_path, monkeypatch):
    """The local executor is given the GPUs (submitit's default hides them all) and the
    requeue limit; SLURM gets the limit too; one #SBATCH option can be set with --set."""
    from optimal_scaling.sweep import executors

    s = sweep.load(CI, ["slurm.cluster=local", "resources.processes=2", "slurm.max_requeues=5"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5,6,7")  # a machine with GPUs to share
    assert executors.local_gpu_blocks(2) == [(2, 3), (5, 6)]  # the odd one left over
    ex = executors.slurm_executor(s, tmp_path)
    assert ex.parameters["gpus_per_node"] == 2 and ex.parameters["tasks_per_node"] == 2
    assert ex.max_num_timeout == 5
    s = sweep.load(CI, ["slurm.cluster=local", "slurm.gpus=false"])
    assert "gpus_per_node" not in executors.slurm_executor(s, tmp_path).parameters
    # submitit's local executor starts every run at once: they take the GPU blocks in turn
    seen = []

    class Job:
        job_id = "7"

        def results(self):
            return ["done"]

    class Local:
        parameters: dict = {}

        def update_parameters(self, **kwargs):
            self.parameters = {**self.parameters, **kwargs}

        def submit(self, fn, rid):
            seen.append((self.parameters["visible_gpus"], rid))
            return Job()

    real = executors.slurm_executor
    monkeypatch.setattr(executors, "slurm_executor", lambda sweep, out: Local())
    s = sweep.load(CI, ["slurm.cluster=local", "resources.processes=2"])
    runs = s.runs()[:3]
    assert executors.run_slurm(s, tmp_path, runs) == {"done": 3}
    assert seen == [((2, 3), runs[0].id), ((5, 6), runs[1].id), ((2, 3), runs[2].id)]
    monkeypatch.setattr(executors, "slurm_executor", real)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU: the jobs see none
    assert executors.local_gpu_blocks(1) == []
    s = sweep.load(CI, ["slurm.cluster=local"])
    assert "gpus_per_node" not in executors.slurm_executor(s, tmp_path).parameters
    monkeypatch.setattr(executors.shutil, "which", lambda name: f"/usr/bin/{name}")
    s = sweep.load(CI, ["slurm.max_requeues=7", "slurm.additional.gres='gpu:a100:4'",
                        "slurm.additional.exclusive=true"])  # fmt: skip
    assert executors.slurm_executor(s, tmp_path).max_num_timeout == 7
    script = executors.sbatch_script(s, tmp_path, 3)
    assert "#SBATCH --gres=gpu:a100:4" in script and "#SBATCH --exclusive" in script


def test_slurm_without_srun_or_with_a_refusing_sbatch_is_one_line(tmp_path, capsys):
    """No srun here: a named error before anything is written; sbatch refusing the array
    (a bad partition): its own message, no traceback."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable))  # no srun, no sbatch
    cmd = [sys.executable, "-m", "optimal_scaling.cli", "sweep", "run", str(CI), "--out",
           str(tmp_path / "s"), "--executor", "slurm"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "sbatch and srun" in done.stderr and "slurm.cluster=local" in done.stderr
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition "
                                    "specified: gpux' >&2\nexit 1\n")  # fmt: skip
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    done = subprocess.run([*cmd, "--set", "slurm.partition=gpux"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "sbatch refused the job array" in done.stderr and "invalid partition" in done.stderr


def test_a_two_process_run_through_submitits_local_executor_counts_as_done(tmp_path):
    """submitit's result() refuses a job with several tasks: rank 0's status is read."""
    s = sweep.load(CI, ["slurm.cluster=local", "resources.processes=2", "device=cpu",
                        "grid.batch_size=[8]", "grid.optimizer.lr=[0.01]"])  # fmt: skip
    counts = sweep.run(s, tmp_path / "sub", executor="slurm", progress=False)
    assert counts == {"done": 1}
    assert sweep.status(tmp_path / "sub")["done"] == 1


def _prepared(out: Path, raw: dict) -> tuple[Path, str]:
    """The sweep's run folders in ``out``, as `sweep run` writes them; the first run's id."""
    from optimal_scaling.sweep.executors import prepare

    s = sweep.from_dict(raw)
    prepare(s, out, s.runs())
    return out, s.runs()[0].id


def test_a_lock_taken_over_elsewhere_is_neither_touched_nor_released(tmp_path, monkeypatch):
    """A holder whose lock was judged stale and replaced learns it at its next touch
    (LockLost: the run returns "running", nothing recorded) and never deletes the new lock."""
    from optimal_scaling.sweep import runner
    from optimal_scaling.sweep.store import Lock, LockLost

    mine = Lock(tmp_path)
    assert mine.acquire()
    mine.touch()  # still ours
    (tmp_path / "lock").unlink()
    other = {"host": "nodeB", "pid": 4242, "job": "7", "restart": "0", "since": time.time()}
    (tmp_path / "lock").write_text(json.dumps(other))
    with pytest.raises(LockLost, match="taken over"):
        mine.touch()
    mine.release()
    assert json.loads((tmp_path / "lock").read_text()) == other
    # taken over after the holder's last touch: release, which finds it, leaves it too
    (tmp_path / "lock").unlink()
    assert mine.acquire()
    (tmp_path / "lock").unlink()  # judged stale elsewhere and replaced
    (tmp_path / "lock").write_text(json.dumps(other))
    mine.release()
    assert json.loads((tmp_path / "lock").read_text()) == other
    again = Lock(tmp_path / "x")
    (tmp_path / "x").mkdir()
    assert again.acquire()
    (tmp_path / "x" / "lock").write_text("")  # our own write cut short: still ours
    again.touch()
    again.release()
    assert not (tmp_path / "x" / "lock").exists()

    out, rid = _prepared(tmp_path / "s", tiny())

    def lost(*args, **kwargs):
        raise LockLost("taken over")

    monkeypatch.setattr(runner, "_train", lost)
    assert runner.train_run(out, rid) == "running"
    assert read_json(out / "runs" / rid / "record.json") in (None, {})


def test_a_run_whose_lock_is_taken_over_mid_training_stops_without_writing(tmp_path,
                                                                           monkeypatch):
    """The heartbeat (once a minute, by the clock: here a fast fake one) finds another
    process's lock: the run stops at its next check as "running", before any row or
    checkpoint is written, and leaves the new holder's lock alone."""
    import time as real_time

    from optimal_scaling.sweep import runner, store

    class Clock:  # 20 s per reading
        now = 0.0

        def perf_counter(self):
            self.now += 20.0
            return self.now

        def __getattr__(self, name):
            return getattr(real_time, name)

    monkeypatch.setattr(runner, "time", Clock())
    other = {"host": "nodeB", "pid": 4242, "job": "9", "restart": "0", "since": 1.0}
    real_touch, touches = store.Lock.touch, []

    def taken_over_first(self):
        if not touches:  # another host judged the lock stale and took the run
            self.path.unlink()
            self.path.write_text(json.dumps(other))
        touches.append(1)
        return real_touch(self)

    monkeypatch.setattr(store.Lock, "touch", taken_over_first)
    out, rid = _prepared(tmp_path / "s", tiny(horizons=[2048]))
    assert runner.train_run(out, rid) == "running"
    folder = out / "runs" / rid
    assert touches and json.loads((folder / "lock").read_text()) == other
    assert not (read_json(folder / "record.json") or {}).get("rows")
    assert not list(folder.glob("*.pt"))


def test_the_last_slurm_timeout_is_recorded_in_words(tmp_path, monkeypatch):
    from submitit.core.utils import UncompletedJobError

    from optimal_scaling.sweep import runner

    out, rid = _prepared(tmp_path / "s", tiny())

    def timed_out(*args, **kwargs):
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")

    monkeypatch.setattr(runner, "_train", timed_out)
    assert runner.train_run(out, rid) == "failed"
    error = read_json(out / "runs" / rid / "record.json")["error"]
    assert "slurm.max_requeues" in error and "sweep run" in error


def test_noise_scale_and_log_do_not_change_the_run(tmp_path):
    """The probe measures, it does not change training: same id, same losses; the log's
    entries average to each horizon's training loss; B_simple is a positive finite number."""
    raw = tiny(horizons=[1024, 2048])
    raw["run"]["micro_batch_size"] = 1
    plain = sweep.from_dict(raw)
    raw["run"].update(noise_scale=True, log_every=2)
    probed = sweep.from_dict(raw)
    assert plain.runs()[0].id == probed.runs()[0].id
    sweep.run(plain, tmp_path / "a", progress=False)
    sweep.run(probed, tmp_path / "b", progress=False)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert (a["val_loss"] - b["val_loss"]).abs().max() < 1e-6
    assert "b_simple" not in a and (b["b_simple"] > 0).all() and np.isfinite(b["b_simple"]).all()
    assert b["b_simple"].tolist() == pytest.approx((b["gns_trace"] / b["gns_g2"]).tolist())
    log = sweep.collect_log(tmp_path / "b")
    steps = 2048 // 64
    assert log["step"].tolist() == list(range(2, steps + 1, 2))
    assert (log["tokens"] == log["step"] * 64).all() and log["gns_g2"].notna().all()
    first = log[log["step"] <= 1024 // 64]
    assert first["train_loss"].mean() == pytest.approx(b["train_loss"].iloc[0], rel=1e-9)
    assert first["gns_trace"].mean() == pytest.approx(b["gns_trace"].iloc[0], rel=1e-9)
    assert sweep.collect_log(tmp_path / "a").empty


def test_the_log_survives_a_resume_and_two_processes_measure_the_same_noise(tmp_path):
    raw = tiny(horizons=[1024, 2048])
    raw["run"].update(micro_batch_size=1, noise_scale=True, log_every=3,
                      device="cpu")  # two processes on gloo, also on a one-GPU machine
    whole = sweep.from_dict(raw)
    sweep.run(whole, tmp_path / "a", progress=False)
    sweep.run(sweep.from_dict(dict(raw, horizons=[1024])), tmp_path / "b", progress=False)
    sweep.run(whole, tmp_path / "b", progress=False)
    la, lb = sweep.collect_log(tmp_path / "a"), sweep.collect_log(tmp_path / "b")
    assert la["step"].tolist() == lb["step"].tolist() == list(range(3, 2048 // 64 + 1, 3))
    for col in ("train_loss", "gns_g2", "gns_trace"):
        assert np.allclose(la[col], lb[col], rtol=1e-6), col
    # two processes, one micro-batch of 1 each twice: the same small and big batches
    sweep.run(sweep.from_dict(dict(raw, resources={"processes": 2})), tmp_path / "c",
              progress=False)  # fmt: skip
    lc = sweep.collect_log(tmp_path / "c")
    for col in ("train_loss", "gns_g2", "gns_trace"):
        assert np.allclose(la[col], lc[col], rtol=1e-4), (col, la[col][:3], lc[col][:3])


def test_collect_log_carries_each_runs_parameter_counts_for_the_envelope_fit(tmp_path):
    """Approach 1 reads curves with a ``params`` column: the collected log has it, equal to
    the counts of the same run's horizon rows, also for a record written before the log kept
    them (taken from its rows), and a CLI log over two widths keeps it as a column."""
    from optimal_scaling import compute_optimal as co

    raw = tiny(horizons=[1024, 2048], grid={"model.width": [8, 16]})
    raw["run"]["log_every"] = 2
    sweep.run(sweep.from_dict(raw), tmp_path / "s", progress=False)
    rows, log = sweep.collect(tmp_path / "s"), sweep.collect_log(tmp_path / "s")
    sizes = rows.groupby("run_id")[["params", "params_non_embedding"]].first()
    joined = log.merge(sizes, on="run_id", suffixes=("", "_row"))
    assert len(sizes) == 2 and sizes["params"].nunique() == 2
    assert (joined["params"] == joined["params_row"]).all()
    assert (joined["params_non_embedding"] == joined["params_non_embedding_row"]).all()
    defaults = inspect.signature(co.envelope_fit).parameters  # the columns it reads
    assert {defaults[k].default for k in ("N", "D", "loss", "run")} <= set(log.columns)
    # an older record: no "sizes", the counts come from its first horizon row
    for folder in (tmp_path / "s" / "runs").iterdir():
        record = read_json(folder / "record.json")
        assert record.pop("sizes")["params"] == record["rows"][0]["params"]
        write_json(folder / "record.json", record)
    assert sweep.collect_log(tmp_path / "s")[["params", "params_non_embedding"]].equals(
        log[["params", "params_non_embedding"]])
    assert cli(["sweep", "collect", str(tmp_path / "s"), "--log",
                "--out", str(tmp_path / "log.csv")]) == 0  # fmt: skip
    from optimal_scaling.results import read_table

    table, _ = read_table(tmp_path / "log.csv")
    assert sorted(table["params"].unique()) == sorted(sizes["params"])


def test_collect_log_cli_keeps_the_varying_columns_and_the_rest_in_the_header(tmp_path):
    raw = tiny(horizons=[1024], grid={"optimizer.lr": [0.01, 0.02]})
    raw["run"]["log_every"] = 4
    sweep.run(sweep.from_dict(raw), tmp_path / "s", progress=False)
    assert cli(["sweep", "collect", str(tmp_path / "s"), "--log",
                "--out", str(tmp_path / "log.csv")]) == 0  # fmt: skip
    from optimal_scaling.results import read_table

    table, meta = read_table(tmp_path / "log.csv")
    assert list(table.columns) == ["run_id", "status", "step", "tokens", "train_loss",
                                   "optimizer.lr"]  # fmt: skip
    assert len(table) == 2 * (1024 // 64) // 4
    constant = json.loads(meta["constant"])
    assert constant["batch_size"] == 4 and constant["model.width"] == 16
    assert sorted(table["optimizer.lr"].unique()) == [0.01, 0.02]  # config values exact
    full = sweep.collect_log(tmp_path / "s")["train_loss"]  # measurements to 6 digits
    assert table["train_loss"].tolist() == [float(f"{v:.6g}") for v in full]
    # a key only some runs have (sgd's momentum, adamw's eps) varies too: kept as a column
    raw = tiny(horizons=[1024], grid={"optimizer.name": ["adamw", "sgd"]})
    mixed, _ = _prepared(tmp_path / "mixed", raw)
    for run in sweep.from_dict(raw).runs():
        write_json(mixed / "runs" / run.id / "record.json",
                   {"status": "done", "rows": [{"horizon": 1024}],
                    "log": {"step": [8, 16], "tokens": [512, 1024],
                            "train_loss": [3.0, 2.5]}})  # fmt: skip
    sweep.write_collected(mixed, tmp_path / "mixed.csv", "test", log=True)
    table, meta = read_table(tmp_path / "mixed.csv")
    momentum = dict(zip(table["optimizer.name"], table["optimizer.momentum"], strict=True))
    assert momentum["sgd"] == 0.0 and math.isnan(momentum["adamw"])
    eps = dict(zip(table["optimizer.name"], table["optimizer.eps"], strict=True))
    assert eps["adamw"] == 1e-8 and math.isnan(eps["sgd"])
    assert not {"optimizer.momentum", "optimizer.eps"} & set(json.loads(meta["constant"]))
    # a sweep without logs says so, naming the key
    sweep.run(sweep.from_dict(tiny(horizons=[1024])), tmp_path / "n", progress=False)
    assert cli(["sweep", "collect", str(tmp_path / "n"), "--log",
                "--out", str(tmp_path / "x.csv")]) == 2  # fmt: skip
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_preset_loads_and_names_its_regeneration_command(path):
    s = sweep.load(path)
    assert s.runs() and s.name == path.stem
    assert f"optimal-scaling sweep run configs/{path.name}" in path.read_text()


def test_the_paper_preset_dry_runs_on_slurm_and_trains_tiny_on_cpu(tmp_path, capsys):
    paper = ROOT / "configs" / "norm_transfer_paper.toml"
    s = sweep.load(paper)
    assert s.horizons[0] == 2**29 and s.horizons[-1] == 2**37
    assert {r.config["batch_size"] for r in s.runs()} == {32, 64, 128, 256, 512, 1024, 2048}
    assert s.runs()[0].config["context"] == 4096 and s.resources["processes"] == 4
    assert cli(["sweep", "run", str(paper), "--executor", "slurm", "--dry-run",
                "--out", str(tmp_path / "p")]) == 0  # fmt: skip
    shown = capsys.readouterr().out
    assert "#SBATCH --gpus-per-node=4" in shown and "#SBATCH --ntasks-per-node=4" in shown
    assert not (tmp_path / "p").exists()
    # the same preset, shrunk by overrides, trains a few steps on this CPU from byte shards
    text = tmp_path / "text"
    text.mkdir()
    for i in range(10):
        (text / f"f{i}.txt").write_text(f"sample {i} " * 300)
    assert cli(["shards", str(text), str(tmp_path / "shards")]) == 0
    tiny_paper = sweep.load(paper, [
        f"data.folder={tmp_path / 'shards'}", "model.width=16", "model.n_heads=2",
        "model.depth=1", "context=16", "micro_batch_size=0", "device=cpu", "dtype=float32",
        "compile=false", "eval_batches=1", "eval_batch_size=4", "check_every=2",
        "horizons=[256, 512]", "grid.batch_size=[4, 8]", "grid.optimizer.lr=[0.01]",
        "resources.processes=1"])  # fmt: skip
    assert sweep.run(tiny_paper, tmp_path / "tiny", progress=False) == {"done": 2}
    table = sweep.collect(tmp_path / "tiny")
    assert len(table) == 4 and np.isfinite(table["val_loss"]).all()
    assert (table["model.positions"] == "rope").all() and (table["model.mlp"] == "swiglu").all()


def test_thin_log_keeps_a_geometric_grid_per_run():
    import pandas as pd

    log = pd.DataFrame({"run_id": ["a"] * 100 + ["b"] * 10,
                        "step": list(range(1, 101)) + list(range(1, 11))})  # fmt: skip
    kept = sweep.thin_log(log, 0.1)
    a = kept[kept["run_id"] == "a"]["step"].tolist()
    assert a[0] == 1 and a[-1] == 100
    assert all(later >= 1.1 * earlier for earlier, later in zip(a[:-2], a[1:-1], strict=True))
    assert len(a) < 40 and kept[kept["run_id"] == "b"]["step"].iloc[-1] == 10
    exact = pd.DataFrame({"run_id": ["c"] * 5, "step": [1, 2, 3, 4, 8]})
    assert sweep.thin_log(exact, 1.0)["step"].tolist() == [1, 2, 4, 8]  # a factor 2 apart: kept
    for bad in (0, math.nan, math.inf):
        with pytest.raises(ValueError, match="spacing"):
            sweep.thin_log(log, bad)


def test_scion_runs_with_muon_coefficients(tmp_path):
    raw = tiny(horizons=[512])
    raw["run"]["optimizer"] = {"name": "scion", "lr": 0.02, "spectral_method": "muon"}
    s = sweep.from_dict(raw)
    assert s.runs()[0].config["optimizer"]["spectral_method"] == "muon"
    assert sweep.run(s, tmp_path / "m", progress=False) == {"done": 1}


def test_lock_holder_rules(tmp_path, monkeypatch):
    """A live holder on this host holds its lock however old; another host's lock goes stale
    with age or on a requeue of the same SLURM job; a lock still being written is held."""
    import os
    import socket

    from optimal_scaling.sweep.store import Lock, lock_holder

    lock = tmp_path / "lock"

    def plant(info: dict, age: float) -> None:
        lock.write_text(json.dumps(info))
        then = time.time() - age
        os.utime(lock, (then, then))

    here = {"host": socket.gethostname(), "pid": os.getpid(), "job": "", "since": 0}
    plant(here, age=10_000)
    assert lock_holder(tmp_path) is not None  # alive on this host: held, however old
    assert not Lock(tmp_path).acquire()
    there = {"host": "elsewhere", "pid": 1, "job": "77", "restart": "0", "since": 0}
    plant(there, age=10)
    assert lock_holder(tmp_path) is not None
    plant(there, age=10_000)
    assert lock_holder(tmp_path) is None  # another host, untouched for long: gone
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    plant(there, age=10)
    assert lock_holder(tmp_path) is not None  # same allocation, another process: held
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert lock_holder(tmp_path) is None  # this job requeued: its old claim is ours
    lock.write_text("")  # created, not yet written
    assert lock_holder(tmp_path) is not None and not Lock(tmp_path).acquire()
    then = time.time() - 120
    os.utime(lock, (then, then))
    assert lock_holder(tmp_path) is None


def test_a_horizon_below_what_a_run_already_trained_is_refused(tmp_path):
    """A constant-LR run is read on its way: after training to 4096 tokens it cannot record
    2048 any more, so asking for it must be an error, not a run forever 'pending'."""
    from optimal_scaling.sweep import executors
    from optimal_scaling.sweep.store import run_dir

    first = sweep.from_dict(tiny(horizons=[1024, 4096]))
    run = first.runs()[0]
    executors.prepare(first, tmp_path, first.runs())
    write_json(run_dir(tmp_path, run.id) / "record.json",
               {"status": "done", "rows": [{"horizon": 1024}, {"horizon": 4096}]})  # fmt: skip
    more = sweep.from_dict(tiny(horizons=[1024, 2048, 4096]))
    assert more.runs()[0].id == run.id
    with pytest.raises(ConfigError, match=r"already trained to 4096 tokens.*\[2048\]"):
        executors.prepare(more, tmp_path, more.runs())
    longer = sweep.from_dict(tiny(horizons=[1024, 4096, 8192]))  # extending stays allowed
    assert executors.prepare(longer, tmp_path, longer.runs()) == longer.runs()
    shorter = sweep.from_dict(tiny(horizons=[1024]))  # ... and a shorter sweep never shortens
    executors.prepare(shorter, tmp_path, shorter.runs())
    config = read_json(run_dir(tmp_path, run.id) / "config.json")
    assert config["horizons"] == [1024, 4096, 8192]


def test_switching_the_noise_probe_on_at_a_resume_pads_the_log(tmp_path):
    """noise_scale does not change the run, so a resumed run can switch it on: the earlier
    log entries get NaN and `collect --log` still reads one row per entry."""
    raw = tiny(horizons=[1024, 2048])
    raw["run"].update(micro_batch_size=1, log_every=4)
    sweep.run(sweep.from_dict(dict(raw, horizons=[1024])), tmp_path, progress=False)
    raw["run"]["noise_scale"] = True
    sweep.run(sweep.from_dict(raw), tmp_path, progress=False)
    log = sweep.collect_log(tmp_path)
    assert log["step"].tolist() == list(range(4, 2048 // 64 + 1, 4))
    early = log["step"] <= 1024 // 64
    assert log.loc[early, "gns_g2"].isna().all() and log.loc[~early, "gns_g2"].notna().all()


def test_a_damaged_json_file_is_named(tmp_path):

    bad = tmp_path / "record.json"
    bad.write_text('{"status": "done", "rows": [')
    with pytest.raises(ValueError, match=r"record.json is not valid JSON"):
        read_json(bad)
    assert read_json(tmp_path / "missing.json") is None
    bad.write_bytes(b"\xd6\xff")
    with pytest.raises(ValueError, match=r"record.json is not valid JSON"):
        read_json(bad)


def test_hand_damaged_run_folders_get_named_errors(tmp_path, capsys):
    out = tmp_path / "s"
    sweep.run(sweep.from_dict(tiny(horizons=[1024])), out, progress=False)
    (folder,) = (out / "runs").iterdir()
    record, config = folder / "record.json", folder / "config.json"
    good_record, good_config = record.read_text(), config.read_text()
    for damage, needle in ((lambda: record.write_text("[1, 2, 3]"), "JSON list, not an object"),
                           (lambda: record.write_text('{"rows": [{"step": 1}]}'),
                            "each with an integer 'horizon'"),
                           (lambda: config.write_text('{"horizons": [1024]}'),
                            "lacks its 'run' table")):  # fmt: skip
        damage()  # status lists the run as failed, collect leaves it out: both name the file
        assert sweep.status(out)["failed"] == 1
        assert needle in sweep.status_table(out)["reason"][0]
        assert sweep.collect(out).empty and needle in capsys.readouterr().err
        with pytest.raises(ValueError, match=needle):  # training it again needs a repair
            sweep.run(sweep.from_dict(tiny(horizons=[1024])), out, progress=False)
        record.write_text(good_record)
        config.write_text(good_config)
    pending = json.loads(good_record)
    pending["rows"] = []  # a run still to train, whose lock decides running or pending
    record.write_text(json.dumps(pending))
    here = socket.gethostname()
    for lock in ([1], {"pid": "abc", "host": here}, {"pid": 0, "host": here}, {"host": here},
                 {"pid": 2**40, "host": here}, {"pid": True, "host": here}):  # fmt: skip
        (folder / "lock").write_text(json.dumps(lock))  # damaged: held a minute, then free
        assert sweep.status(out)["running"] == 1, lock
        old = time.time() - 120
        os.utime(folder / "lock", (old, old))
        assert sweep.status(out)["pending"] == 1, lock
    # a failed run being retried: its new holder's lock says running until it records anew
    record.write_text(json.dumps(dict(pending, status="failed", error="boom")))
    (folder / "lock").write_text(json.dumps({"host": here, "pid": os.getpid(), "job": ""}))
    assert sweep.status(out)["running"] == 1
    (folder / "lock").unlink()
    assert sweep.status(out)["failed"] == 1
    # a log whose columns differ in length (written before resumes padded them) is named
    record.write_text(json.dumps(dict(pending, log={"step": [1, 2], "train_loss": [1.0]})))
    with pytest.raises(ValueError, match=f"log of run {folder.name} has columns of different "
                                         "lengths.*rerun it"):  # fmt: skip
        sweep.collect_log(out)


def test_run_options_that_cannot_apply_are_refused_before_anything_is_written(tmp_path,
                                                                             monkeypatch):
    s = sweep.from_dict(tiny(horizons=[1024]))
    with pytest.raises(ConfigError, match="wait applies to the slurm executor"):
        sweep.run(s, tmp_path / "a", wait=True, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        sweep.run(s, tmp_path / "file", progress=False)
    raw = tiny(horizons=[1024])
    raw["resources"] = {"nodes": 2}
    with pytest.raises(ConfigError, match="nodes = 2 needs the slurm executor"):
        sweep.run(sweep.from_dict(raw), tmp_path / "b", progress=False)
    raw = tiny(horizons=[1024])
    raw["run"]["data"] = {"source": "bytes", "paths": str(tmp_path / "no-such-text")}
    with pytest.raises(ConfigError, match="no-such-text does not exist on this machine"):
        sweep.run(sweep.from_dict(raw), tmp_path / "c", progress=False)
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    for dry in (True, False):
        with pytest.raises(ConfigError, match="needs submitit: pip install submitit"):
            sweep.run(s, tmp_path / "d", executor="slurm", dry_run=dry, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_cli_names_bad_paths_and_options(tmp_path, capsys):
    out = tmp_path / "s"
    sweep.run(sweep.from_dict(tiny(horizons=[1024])), out, progress=False)
    (tmp_path / "folder").mkdir()
    assert cli(["sweep", "collect", str(out), "--out", str(tmp_path / "folder")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert cli(["sweep", "collect", str(out), "--out", str(tmp_path / "t.csv"),
                "--spacing", "0.1"]) == 2  # fmt: skip
    assert "applies only with --log" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()
    assert cli(["lr-transfer", "--out", str(tmp_path / "folder")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert cli(["lr-transfer", "--out", str(tmp_path / "x.csv"), "--log2-lrs", "3000"]) == 2
    assert "within ±64" in capsys.readouterr().err
    for device in ("meta", ""):
        assert cli(["bench", "ns", "--device", device, "--fast"]) == 2
        assert "unknown device" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert cli(["shards", str(tmp_path), str(tmp_path / "file")]) == 2
    assert "is a file; the shards go into a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # a run that fails: its reason is printed, not only recorded
    config = tmp_path / "fails.toml"
    config.write_text(textwrap.dedent(f"""\
        name = "fails"
        horizons = [1024]
        [run]
        batch_size = 4
        context = 16
        [run.model]
        width = 16
        depth = 1
        n_heads = 2
        [run.data]
        source = "shards"
        folder = "{tmp_path / 'empty'}"
    """))
    assert cli(["sweep", "run", str(config), "--out", str(tmp_path / "f"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "failed " in err and "train.bin does not exist" in err and "--runs" in err


def test_a_run_killed_between_horizons_resumes_from_its_last_check(tmp_path, monkeypatch):
    """``checkpoint_minutes`` checkpoints between horizons (here at every check): a run stopped
    mid-horizon resumes from its last check, and its rows equal the uninterrupted run's."""
    from optimal_scaling.sweep import runner

    raw = tiny(horizons=[2048, 4096])
    raw["run"].update(checkpoint_minutes=1e-9, log_every=3, noise_scale=True,
                      micro_batch_size=2)  # fmt: skip
    s = sweep.from_dict(raw)
    sweep.run(s, tmp_path / "a", progress=False)

    real = runner.lr_factor
    stop_at = 2048 // 64 + 11  # step 43: the last check before it (every 2 steps) is step 42

    def dies(schedule, step, total):
        if step == stop_at:
            raise RuntimeError("killed")
        return real(schedule, step, total)

    monkeypatch.setattr(runner, "lr_factor", dies)
    assert sweep.run(s, tmp_path / "b", progress=False) == {"failed": 1}
    monkeypatch.setattr(runner, "lr_factor", real)
    assert sweep.run(s, tmp_path / "b", progress=False) == {"done": 1}
    (rid,) = [r.id for r in sweep.expand(s)]
    record = read_json(tmp_path / "b" / "runs" / rid / "record.json")
    assert [st["from_step"] for st in record["starts"]] == [0, stop_at - 1]
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    for col in ("val_loss", "train_loss", "gns_g2", "gns_trace", "norm[hidden]"):
        assert np.allclose(a[col], b[col], rtol=1e-6, atol=0), col
    assert (b["tokens_per_s"] > 0).all() and (np.diff(b["seconds"]) > 0).all()
    ref = read_json(tmp_path / "a" / "runs" / rid / "record.json")["log"]
    for key, values in ref.items():
        assert np.allclose(values, record["log"][key], rtol=1e-6), key
    assert not (tmp_path / "b" / "runs" / rid / "checkpoint_mid.pt").exists()  # superseded

    # killed again between horizons, then asked for a horizon it has passed (2688 tokens =
    # step 42, the checkpoint's own step, whose row it did not read): the between-horizons
    # checkpoint is dropped and the horizon one (step 32) resumes, so the new horizon is read
    # and the rows equal an uninterrupted run's
    more = dict(raw, horizons=[2048, 2688, 4096])
    sweep.run(sweep.from_dict(more), tmp_path / "ref", progress=False)
    monkeypatch.setattr(runner, "lr_factor", dies)
    assert sweep.run(s, tmp_path / "c", progress=False) == {"failed": 1}
    monkeypatch.setattr(runner, "lr_factor", real)
    assert (tmp_path / "c" / "runs" / rid / "checkpoint_mid.pt").exists()
    assert sweep.run(sweep.from_dict(more), tmp_path / "c", progress=False) == {"done": 1}
    record = read_json(tmp_path / "c" / "runs" / rid / "record.json")
    assert [st["from_step"] for st in record["starts"]] == [0, 2048 // 64]
    want, got = _rows(tmp_path / "ref"), _rows(tmp_path / "c")
    assert list(got["horizon"]) == [2048, 2688, 4096]
    for col in ("val_loss", "train_loss", "gns_g2", "norm[hidden]"):
        assert np.allclose(want[col], got[col], rtol=1e-6, atol=0), col


def test_two_processes_taking_over_one_stale_lock_cannot_both_win(tmp_path, monkeypatch):
    """A judges the lock stale; before A removes it, B judges it stale too and takes it over.
    Without the takeover mutex A would then delete B's fresh lock and write its own."""
    from optimal_scaling.sweep import store

    stale = {"host": "elsewhere", "pid": 1, "job": "", "since": 0}
    (tmp_path / "lock").write_text(json.dumps(stale))
    then = time.time() - 10_000
    os.utime(tmp_path / "lock", (then, then))
    a, b = store.Lock(tmp_path), store.Lock(tmp_path)
    real, calls = store.lock_holder, []

    def judged(folder, *args, **kwargs):
        found = real(folder, *args, **kwargs)
        calls.append(found)
        if len(calls) == 1:  # A found it stale: B runs its whole acquire now
            assert found is None and b.acquire()
        return found

    monkeypatch.setattr(store, "lock_holder", judged)
    assert not a.acquire()
    assert b.held and not a.held
    assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / "lock.takeover").exists()
    monkeypatch.setattr(store, "lock_holder", real)
    b.release()

    # a takeover in progress elsewhere: the stale lock is left to it; a dead taker's is cleared
    (tmp_path / "lock").write_text(json.dumps(stale))
    os.utime(tmp_path / "lock", (then, then))
    (tmp_path / "lock.takeover").touch()
    assert not store.Lock(tmp_path).acquire() and (tmp_path / "lock").exists()
    os.utime(tmp_path / "lock.takeover", (then, then))
    assert not store.Lock(tmp_path).acquire()  # clears the dead taker's file ...
    assert not (tmp_path / "lock.takeover").exists()
    assert store.Lock(tmp_path).acquire()  # ... and the next attempt takes over


def test_a_between_horizons_checkpoint_resumes_only_a_run_that_measures_the_same(tmp_path):
    import torch

    from optimal_scaling.sweep.runner import _resume_state

    run = {"noise_scale": True, "log_every": 3}
    mid, horizon = tmp_path / "checkpoint_mid.pt", tmp_path / "checkpoint.pt"
    torch.save({"step": 40, "rows": [{"horizon": 2048}], "measures": [True, 3]}, mid)
    torch.save({"step": 32, "rows": [{"horizon": 2048}]}, horizon)
    assert _resume_state(mid, horizon, "cpu", run, [2048, 4096], 64)["step"] == 40
    # another log_every: the partial log window would mix two settings
    assert _resume_state(mid, horizon, "cpu", dict(run, log_every=4), [2048, 4096],
                         64)["step"] == 32  # fmt: skip
    assert not mid.exists()
    torch.save({"step": 40, "rows": [{"horizon": 2048}], "measures": [True, 3]}, mid)
    # the noise probe switched off: the partial windows would mix two settings
    assert _resume_state(mid, horizon, "cpu", dict(run, noise_scale=False), [2048, 4096],
                         64)["step"] == 32  # fmt: skip
    assert not mid.exists()
    torch.save({"step": 40, "rows": [], "measures": [True, 3]}, mid)
    horizon.unlink()  # killed before its first horizon, now asked for 1024 (step 16 < 40)
    assert _resume_state(mid, horizon, "cpu", run, [1024, 4096], 64) is None


def test_a_process_without_a_gpu_of_its_own_is_named(monkeypatch):
    import torch

    from optimal_scaling.sweep import runner

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert runner._local_gpu(0) == torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match="needs GPU 1, but it has 1"):
        runner._local_gpu(1)


def test_remove_partial_keeps_live_writes_and_drops_dead_ones(tmp_path):
    from optimal_scaling.results import atomic_write
    from optimal_scaling.sweep.store import remove_partial

    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    live = tmp_path / f".sweep.json~{host}~{os.getpid()}~abc.tmp"  # this process is writing
    killed = tmp_path / f".sweep.json~{host}~{dead}~def.tmp"  # its writer has exited
    fresh, stale = tmp_path / ".config.json.x1y2.tmp", tmp_path / ".record.json.z3.tmp"
    for f in (live, killed, fresh, stale):
        f.write_text("partial")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))  # unknown writer, an hour old
    remove_partial(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, fresh.name])
    # atomic_write's temporary names carry host and pid, and nothing stays behind
    seen = []
    atomic_write(tmp_path / "t.json", lambda f: seen.extend(tmp_path.glob(".t.json~*.tmp")))
    assert [p.name.split("~")[1:3] for p in seen] == [[host, str(os.getpid())]]
    assert not list(tmp_path.glob(".t.json~*"))


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (Linux), [] where /proc cannot tell."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(c) for c in path.read_text().split()]
    except OSError:
        return []


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_a_sweep_as_ctrl_c_does(tmp_path, workers):
    # `kill PID` (or a scheduler's stop) reaches only the parent: with a pool it stops the
    # workers, which release their runs' locks, and the command exits within seconds
    out = tmp_path / "t"
    cmd = [sys.executable, "-m", "optimal_scaling.cli", "sweep", "run", str(CI), "--out",
           str(out), "--set", "horizons=[4096, 65536]", "--workers", str(workers), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(
            r.get("rows") for r in _statuses(out).values()):  # fmt: skip
        assert proc.poll() is None, "the sweep ended before it could be stopped"
        time.sleep(0.05)
    children = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in output, output
    assert not [p for p in out.rglob("lock")]  # released on the way out
    if workers > 1 and Path("/proc/self/stat").exists():
        assert len(children) >= workers  # the pool was running when the signal came
        deadline = time.time() + 10
        while time.time() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
            time.sleep(0.1)
        assert not [c for c in children if Path(f"/proc/{c}").exists()]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_lock_whose_pid_now_belongs_to_another_process_is_free(tmp_path):
    # a container restarted after a kill gives its new main process the old holder's pid:
    # same host, pid alive, but a different process (another start time)
    from optimal_scaling.sweep.store import _started, lock_holder

    mine = {"host": socket.gethostname(), "pid": os.getpid(), "job": "", "since": time.time()}
    for started, held in ((_started(os.getpid()), True), (None, True),
                          ("another-boot:123", False)):  # fmt: skip
        (tmp_path / "lock").write_text(json.dumps({**mine, "started": started}))
        assert (lock_holder(tmp_path) is not None) == held, started
    assert _started(os.getpid()) != _started(1)  # two processes, two start times
    # the start time stays put while the holder runs (here: grows its memory by 64 MiB)
    (tmp_path / "lock").write_text(json.dumps({**mine, "started": _started(os.getpid())}))
    grown = bytearray(64 * 2**20)
    assert _started(os.getpid()) == json.loads((tmp_path / "lock").read_text())["started"]
    assert lock_holder(tmp_path) is not None
    del grown


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigterm_stops_every_rank_of_a_torchrun_run(tmp_path):
    # a 2-process run trains under torchrun in its own process group: a stopped sweep stops
    # the ranks too before it releases the run's lock (they used to train on as orphans)
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "optimal_scaling.cli", "sweep", "run", str(CI), "--out",
           str(out), "--set", "horizons=[4096, 262144]", "--set", "resources.processes=2",
           "--set", "run.device=cpu", "--set", "grid.optimizer.lr=[0.01]", "--workers", "1",
           "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(
            r.get("rows") for r in _statuses(out).values()):  # fmt: skip
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, output

    def ranks() -> list[str]:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "optimal_scaling.sweep.runner" in text and str(out) in text:
                found.append(text)
        return found

    deadline = time.time() + 10  # they exit within the grace period of the SIGTERM
    while time.time() < deadline and ranks():
        time.sleep(0.1)
    assert ranks() == [] and not list(out.rglob("lock"))


def test_time_left_extrapolates_the_done_runs_training_time(tmp_path, capsys):
    """Two done runs (100 s and 300 s of training) and a diverged one (50 s): 450 s so far,
    200 s per done run, and 200 s for each run still pending; the CLI prints it in minutes."""
    from optimal_scaling.sweep.store import run_dir

    raw = tiny(grid={"optimizer.lr": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]})
    out, _ = _prepared(tmp_path / "t", raw)
    assert math.isnan(sweep.time_left(out)["left"])  # nothing done: no estimate
    runs = sweep.from_dict(raw).runs()
    finished = [("done", 100.0), ("done", 300.0), ("diverged", 50.0)]
    for r, (state, seconds) in zip(runs[:3], finished, strict=True):
        write_json(run_dir(out, r.id) / "record.json",
                   {"status": state, "rows": [{"horizon": 1024, "seconds": seconds / 2},
                                              {"horizon": 2048, "seconds": seconds}]})  # fmt: skip
    eta = sweep.time_left(out)
    pending = len(runs) - 3
    assert eta == {"done": 450.0, "per_run": 200.0, "left": 200.0 * pending,
                   "runs_left": pending}  # fmt: skip
    assert cli(["sweep", "status", str(out)]) == 0
    assert f"left: about {200 * pending / 60:.0f} min for {pending} runs" in capsys.readouterr().out
