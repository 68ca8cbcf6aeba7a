"""Bad input to the sweep engine: damaged run files, huge or non-finite ranges, impossible
models, paths of the wrong kind, damaged checkpoints, names. Each is a clear error naming the
key or the file (the CLI: exit 2, one line), never a traceback from deep inside."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from optimal_scaling import sweep
from optimal_scaling.cli import main as cli
from optimal_scaling.sweep import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "configs" / "ci.toml"

TINY = {
    "name": "tiny",
    "horizons": [1024],
    "run": {
        "batch_size": 4, "context": 16, "eval_batches": 2, "eval_batch_size": 8,
        "check_every": 2, "log_every": 4, "device": "cpu",
        "model": {"width": 16, "depth": 1, "n_heads": 2},
        "data": {"source": "markov", "vocab_size": 32, "n_train_tokens": 8192,
                 "n_val_tokens": 2048},
        "optimizer": {"name": "adamw", "lr": 0.01},
    },
}  # fmt: skip


def tiny(**changes) -> dict:
    raw = json.loads(json.dumps(TINY))
    raw.update(changes)
    return raw


def load(*overrides: str) -> sweep.Sweep:
    return sweep.load(CI, list(overrides))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A sweep directory of two finished runs (seeds 0 and 1) that keep a training log."""
    out = tmp_path_factory.mktemp("trained") / "s"
    sweep.run(sweep.from_dict(tiny(grid={"seed": [0, 1]})), out, progress=False)
    return out


# --------------------------------------------------------------------------- damaged run files
@pytest.mark.parametrize(
    ("name", "key", "value", "needle"),
    [
        ("config.json", "point", 5, "'point' must be a table"),
        ("config.json", "horizons", ["a"], "'horizons' must be a list of token counts"),
        ("record.json", "log", 5, "'log' must map each column name to a list of numbers"),
        ("record.json", "log", {"step": [1, 2], "train_loss": ["a", "b"]}, "list of numbers"),
        ("record.json", "sizes", 5, "'sizes' must map names to parameter counts"),
        ("record.json", "rows", [{"horizon": True}], "each with an integer 'horizon'"),
        ("record.json", "rows", [{"horizon": 1024, "val_loss": "low"}], "rows of numbers"),
    ],
)
def test_a_damaged_run_file_is_named_and_the_other_runs_still_read(trained, tmp_path, capsys,
                                                                   name, key, value, needle):
    out = tmp_path / "s"
    shutil.copytree(trained, out)
    bad, good = sorted((out / "runs").iterdir())
    data = json.loads((bad / name).read_text())
    (bad / name).write_text(json.dumps(dict(data, **{key: value})))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # status: the damaged run is failed, its reason names the file; the other run is done
    assert sweep.status(out) == {"done": 1, "diverged": 0, "failed": 1, "running": 0,
                                 "pending": 0}  # fmt: skip
    reason = sweep.status_table(out).set_index("id")["reason"][bad.name]
    assert f"{bad / name}: " in reason and needle in reason
    # collect and collect --log: the damaged run is left out with a warning naming the file
    for collect in (sweep.collect, sweep.collect_log):
        assert set(collect(out)["run_id"]) == {good.name}
        assert f"{bad / name}: " in capsys.readouterr().err
    assert cli(["sweep", "status", str(out), "--runs"]) == 0
    assert needle in capsys.readouterr().out
    csv = tmp_path / "log.csv"
    assert cli(["sweep", "collect", str(out), "--out", str(csv), "--log"]) == 0
    assert needle in capsys.readouterr().err
    assert good.name in csv.read_text() and bad.name not in csv.read_text()
    # training the sweep again refuses the damaged run, naming the file, and writes nothing
    with pytest.raises(ValueError, match=needle):
        sweep.run(sweep.from_dict(tiny(grid={"seed": [0, 1]})), out, progress=False)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


# --------------------------------------------------------------------------- ranges and grids
def test_a_range_of_too_many_values_is_refused_before_it_is_built():
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"grid.optimizer.lr: 0.00390625 to 0.25 by factor "
                                          r"1.00001 is 415,891 values; at most 10,000"):
        load('grid.optimizer.lr={start="2^-8",stop="2^-2",factor=1.00001}')
    with pytest.raises(ConfigError, match=r"is 13,815,511,241 values"):  # no list is made
        load("grid.optimizer.lr={start=1e-300,stop=1e300,factor=1.0000001}")
    with pytest.raises(ConfigError, match=r"horizons: 1 to 1048576 by factor 1.001 is "):
        load("horizons={start=1,stop=1048576,factor=1.001}")
    with pytest.raises(ConfigError, match=r"horizons: 10,001 horizons; at most 10,000"):
        sweep.from_dict(tiny(horizons=list(range(64, 64 * 10_002, 64))))
    assert time.perf_counter() - start < 10


def test_a_grid_of_too_many_runs_is_refused_before_it_is_expanded():
    start = time.perf_counter()
    raw = tiny(grid={"seed": list(range(101)), "optimizer.lr": [0.001 * k for k in range(1, 101)]})
    with pytest.raises(ConfigError, match=r"grid: 101 × 100 = 10,100 grid points; at most "
                                          r"10,000 runs"):  # fmt: skip
        sweep.from_dict(raw)
    raw = tiny(grid={"seed": list(range(100))}, horizons=[64 * k for k in range(1, 102)])
    raw["run"]["schedule"] = {"name": "cosine"}  # a run per horizon: 100 × 101 runs
    with pytest.raises(ConfigError, match=r"more than 10,000 runs.*100 grid points × 101 "
                                          r"horizons"):  # fmt: skip
        sweep.from_dict(raw)
    assert time.perf_counter() - start < 60


@pytest.mark.parametrize(
    ("setting", "key", "needle"),
    [
        ("grid.optimizer.lr={start=nan,stop=1,factor=2}", "grid.optimizer.lr",
         "start must be a finite number, got nan"),
        ("grid.optimizer.lr={start=0.1,stop=1,factor=nan}", "grid.optimizer.lr",
         "factor must be a finite number, got nan"),
        ("grid.optimizer.lr={start=0.1,stop=1,factor=inf}", "grid.optimizer.lr",
         "factor must be a finite number, got inf"),
        ("horizons={start=1024,stop=nan,factor=2}", "horizons",
         "stop must be a finite number, got nan"),
        ("grid.optimizer.lr={start=0,stop=1,factor=2}", "grid.optimizer.lr",
         "start must be > 0, got 0"),
        ("grid.optimizer.lr={start=0.1,stop=1,factor=1}", "grid.optimizer.lr",
         "factor must be > 1, got 1"),
    ],
)
def test_a_range_names_the_argument_that_is_not_finite_or_out_of_range(setting, key, needle):
    with pytest.raises(ConfigError) as info:
        load(setting)
    assert f"ci.toml: {key}: {needle}" in str(info.value)


def test_geometric_checks_its_own_arguments():
    for args, needle in (((float("nan"), 1, 2), "start must be a finite number"),
                         ((1, 10**400, 2), "stop must be a finite number"),
                         ((1, 2, True), "factor must be a finite number"),
                         ((1, 2, "2"), "factor must be a finite number")):  # fmt: skip
        with pytest.raises(ValueError, match=needle):
            sweep.geometric(*args)


# --------------------------------------------------------------------------- impossible sizes
@pytest.mark.parametrize("width", ["1e300", '"2^1000"', "1e20"])
def test_a_model_beyond_any_machine_is_refused_with_its_parameter_count(width):
    with pytest.raises(ConfigError, match=r"run.model: GPT: width .* make .* parameters; at most "
                                          r"1e\+13"):  # fmt: skip
        load(f"model.width={width}")
    assert len(load("model.width=64").runs()) == 8  # a real width still loads


def test_rotary_tables_beyond_any_machine_are_refused():
    raw = tiny(horizons=[2**40])
    raw["run"].update(batch_size=1, context=2**40, eval_batch_size=1, micro_batch_size=1)
    raw["run"]["model"].update(width=64, n_heads=1, positions="rope")
    raw["run"]["data"].update(n_train_tokens=2**41, n_val_tokens=2**41)
    with pytest.raises(ConfigError, match=r"rope tables of context × head size = 7.04e\+13 "
                                          r"numbers; at most 1e\+13"):  # fmt: skip
        sweep.from_dict(raw)


@pytest.mark.parametrize("key, value, needle", [
    ("n_train_tokens", 2**40, r"run.data.n_train_tokens: the Markov stream of 1.1e\+12 tokens "
                              r"would take 2.2e\+12 bytes of memory; at most 2.75e\+11"),
    ("eval_batches", 2**30, r"run.eval_batches: eval_batches × eval_batch_size × context = "
                            r"1.37e\+11 validation tokens would take 2.2e\+12 bytes"),
])  # fmt: skip
def test_data_that_would_not_fit_in_memory_is_refused_before_the_run(key, value, needle):
    raw = tiny()
    (raw["run"]["data"] if key.startswith("n_") else raw["run"])[key] = value
    with pytest.raises(ConfigError, match=needle):
        sweep.from_dict(raw)
    assert len(sweep.from_dict(tiny()).runs()) == 1


def test_a_model_of_many_heads_is_checked_on_a_small_stand_in():
    raw = tiny()
    raw["run"]["model"].update(width=2**18, n_heads=2**18)  # 8e11 parameters: allowed
    assert len(sweep.from_dict(raw).runs()) == 1  # the optimizer's stand-in has 64 heads


def test_the_parameter_count_equals_the_models_own():
    from optimal_scaling.models import GPT
    from optimal_scaling.sweep.spec import gpt_params, model_defaults

    for tied, before, bias, rope, swiglu, qk, gain in itertools.product([False, True], repeat=7):
        model = dict(model_defaults("gpt"), width=12, depth=2, n_heads=2, mlp_ratio=3,
                     tied=tied, norm_before_linear=before, bias=bias, qk_norm=qk,
                     positions="rope" if rope else "learned", mlp="swiglu" if swiglu else "gelu",
                     norm_gain=gain)  # fmt: skip
        built = GPT(vocab_size=7, context=5, **{k: v for k, v in model.items() if k != "name"})
        assert gpt_params(model, 7, 5) == built.num_params(), model


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("horizons=[1e300]", "horizons[0]: 1e+300 tokens is not below 2^53"),
        ("horizons=[9007199254740992]", "horizons[0]: 9.01e+15 tokens is not below 2^53"),
        ('horizons=["2^2000"]', "horizons[0]: '2^2000' overflows"),
        ('optimizer.lr="10^400"', "run.optimizer.lr: '10^400' overflows"),
    ],
)
def test_horizons_stay_exact_in_float64_and_an_overflow_says_so(setting, needle):
    with pytest.raises(ConfigError) as info:
        load(setting)
    assert needle in str(info.value)


# --------------------------------------------------------------------------- paths
def test_paths_of_the_wrong_kind_are_named(trained, tmp_path, capsys, monkeypatch):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    (tmp_path / "file").write_text("x")
    for args, needle in (
        (["sweep", "collect", str(trained), "--out", str(tmp_path / "file" / "x.csv")],
         f"{tmp_path / 'file'} is a file, not a folder"),
        (["sweep", "run", str(CI), "--out", str(tmp_path / "file" / "x")],
         f"{tmp_path / 'file'} is a file, not a folder"),
        (["sweep", "run", str(CI), "--out", str(tmp_path / "file" / "x"), "--dry-run"],
         f"{tmp_path / 'file'} is a file, not a folder"),
        (["sweep", "run", str(tmp_path)], f"{tmp_path}: is a folder, not a sweep file"),
        (["sweep", "run", os.devnull], "/dev/null: is not a regular file"),
    ):  # fmt: skip
        assert cli(args) == 2, args
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    # a sweep directory whose runs/ is a file: named, and nothing is written
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "runs").write_text("x")
    assert cli(["sweep", "run", str(CI), "--out", str(tmp_path / "out"), "--quiet",
                "--set", "grid.optimizer.lr=[0.01]", "--set", "grid.batch_size=[8]"]) == 2
    assert f"{tmp_path / 'out' / 'runs'} is a file, not a folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["runs"]
    # an empty path is not the current folder
    with pytest.raises(ConfigError, match="out is empty"):
        sweep.run(sweep.from_dict(tiny()), "", progress=False)
    with pytest.raises(ValueError, match="the path is empty"):
        sweep.write_collected(trained, "", "test")
    assert not list(here.iterdir())


def test_data_paths_of_the_wrong_kind_are_named(tmp_path, capsys):
    from optimal_scaling.data import byte_corpus, token_shards

    text = tmp_path / "a.txt"
    text.write_text("some text\n" * 50)
    raw = tiny()
    raw["run"]["data"] = {"source": "shards", "folder": str(text)}
    with pytest.raises(ConfigError, match=r"run.data.folder: .*a.txt is a file, not a folder"):
        sweep.run(sweep.from_dict(raw), tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()
    with pytest.raises(NotADirectoryError, match=r"token_shards: .*a.txt is not a folder"):
        token_shards(text)
    pipe = tmp_path / "fifo" / "b.txt"
    pipe.parent.mkdir()
    os.mkfifo(pipe)
    with pytest.raises(ValueError, match=r"b.txt is not a regular file or a folder"):
        byte_corpus(pipe, cache_dir=tmp_path / "cache")
    assert cli(["shards", str(pipe), str(tmp_path / "shards")]) == 2
    assert "b.txt is not a regular file or a folder" in capsys.readouterr().err
    raw["run"]["data"] = {"source": "bytes", "paths": str(pipe)}
    with pytest.raises(ConfigError, match=r"run.data.paths: .*b.txt is not a regular file or a "
                                          r"folder"):  # fmt: skip
        sweep.run(sweep.from_dict(raw), tmp_path / "s", progress=False)


def test_a_damaged_checkpoint_is_set_aside_and_the_run_trains_again(tmp_path):
    out, again = tmp_path / "s", tmp_path / "again"
    sweep.run(sweep.from_dict(tiny()), out, progress=False)
    (folder,) = (out / "runs").iterdir()
    ckpt = folder / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-10])  # truncated: torch's zip reader fails
    damaged = ckpt.read_bytes()
    longer = tiny(horizons=[1024, 2048])  # extended: it must resume from that checkpoint
    assert sweep.run(sweep.from_dict(longer), out, progress=False) == {"done": 1}
    (aside,) = folder.glob("checkpoint.pt.damaged-*")
    assert aside.read_bytes() == damaged  # kept, never deleted
    record = json.loads((folder / "record.json").read_text())
    (warning,) = record["warnings"]
    assert f"{ckpt} could not be read (RuntimeError: " in warning and aside.name in warning
    assert "trained again from step 0" in warning
    # trained afresh, it reads the same rows as an uninterrupted run (nothing finished lost)
    sweep.run(sweep.from_dict(longer), again, progress=False)
    fresh = json.loads((again / "runs" / folder.name / "record.json").read_text())
    assert [r["val_loss"] for r in record["rows"]] == [r["val_loss"] for r in fresh["rows"]]


def test_a_damaged_between_horizons_checkpoint_falls_back_to_the_horizon_one(tmp_path):
    import torch

    from optimal_scaling.sweep.runner import _resume_state

    mid, horizon = tmp_path / "checkpoint_mid.pt", tmp_path / "checkpoint.pt"
    mid.write_bytes(b"not a checkpoint")
    torch.save({"step": 32, "rows": [{"horizon": 2048}]}, horizon)
    notes: list[str] = []
    state = _resume_state(mid, horizon, "cpu", {"noise_scale": False, "log_every": 0},
                          [2048, 4096], 64, notes=notes)  # fmt: skip
    assert state["step"] == 32 and not mid.exists()
    assert len(notes) == 1 and f"{mid} could not be read (UnpicklingError" in notes[0]
    assert len(list(tmp_path.glob("checkpoint_mid.pt.damaged-*"))) == 1


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ('name=".."', "name: a sweep needs a name of letters, digits, _.- (a folder name, not "
                      ". or ..); got '..'"),
        ('name="."', "not . or ..); got '.'"),
        ("slurm.additional.=1", "slurm.additional.: an #SBATCH option name is a letter"),
        ("slurm.additional.foo bar=x", "slurm.additional.foo bar: an #SBATCH option name"),
        ("slurm.additional.-x=1", "slurm.additional.-x: an #SBATCH option name"),
        ('slurm.additional.comment="a\\nb"', "slurm.additional.comment: must fit on one line"),
    ],
)
def test_sweep_names_and_sbatch_options_are_plain(setting, needle):
    with pytest.raises(ConfigError) as info:
        load(setting)
    assert needle in str(info.value)
    assert load("slurm.additional.mail_type=END", "name=ci-2.b").slurm["additional"] == {
        "mail_type": "END"}


def test_an_auto_device_follows_the_gpu_the_environment_names(monkeypatch):
    """OPTIMAL_SCALING_DEVICE=cuda:1 trains a single-process run on GPU 1 (it went to GPU
    0, the local rank's); under torch.distributed each process takes its local rank's GPU."""
    import torch

    from optimal_scaling import config
    from optimal_scaling.sweep import runner

    monkeypatch.setattr(config, "device", lambda: torch.device("cuda", 1))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert runner._device({"device": "auto"}, 0, None) == torch.device("cuda", 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert runner._device({"device": "auto"}, 1, None) == torch.device("cuda", 1)
    assert runner._device({"device": "auto"}, 0, None) == torch.device("cuda", 0)
    monkeypatch.setattr(config, "device", lambda: torch.device("cuda"))  # no index: local rank
    monkeypatch.delenv("WORLD_SIZE")
    assert runner._device({"device": "auto"}, 0, None) == torch.device("cuda", 0)
    monkeypatch.setattr(config, "device", lambda: torch.device("cpu"))
    assert runner._device({"device": "auto"}, 0, None) == torch.device("cpu")
