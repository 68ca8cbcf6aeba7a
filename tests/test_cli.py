"""The command line: a bad --out, a bad environment or Ctrl-C end a command with one line
and a nonzero exit status, before any work (never a traceback after minutes of timing)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from optimal_scaling import config
from optimal_scaling.cli import main
from optimal_scaling.results import read_table


@pytest.mark.parametrize("which", ["ns", "optim", "sweep"])
def test_bench_refuses_an_unwritable_out_before_timing(tmp_path, capsys, which):
    folder = tmp_path / "adir"
    folder.mkdir()
    start = time.perf_counter()
    assert main(["bench", which, "--fast", "--out", str(folder)]) == 2
    assert f"--out {folder} is a folder" in capsys.readouterr().err
    assert time.perf_counter() - start < 20  # refused, not timed first (ns --fast: minutes)
    assert main(["bench", which, "--fast", "--out", str(tmp_path / "x.json"),
                 "--no-write"]) == 2  # fmt: skip
    assert "contradict" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_execute_names_a_bad_notebook_and_a_bad_out(tmp_path, capsys):
    pytest.importorskip("jupytext")
    pytest.importorskip("nbclient")
    empty = tmp_path / "e.ipynb"
    empty.write_text("{}")
    assert main(["execute", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "is not a notebook nbformat can read" in err and "cells" in err
    nb = tmp_path / "ok.py"
    nb.write_text("# %%\nprint(1)\n")
    (tmp_path / "adir").mkdir()
    assert main(["execute", str(nb), "--out", str(tmp_path / "adir")]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_env_and_sweep_name_a_bad_device_variable(tmp_path, capsys, monkeypatch):
    from optimal_scaling.course import repo_root

    monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", "tpu")
    assert main(["env"]) == 2
    assert "OPTIMAL_SCALING_DEVICE='tpu' is not a device name" in capsys.readouterr().err
    ci = repo_root() / "configs" / "ci.toml"
    assert main(["sweep", "run", str(ci), "--out", str(tmp_path / "s")]) == 2
    assert "run.device = 'auto'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before any run folder was written


def test_ctrl_c_is_one_line_and_names_what_is_kept(tmp_path, capsys, monkeypatch):
    from optimal_scaling import experiments

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments, "gpt_lr_transfer", interrupted)
    out = tmp_path / "grid.csv"
    assert main(["lr-transfer", "--fast", "--data", "markov", "--out", str(out)]) == 130
    err = capsys.readouterr().err  # (after a finished run it names the partial file:
    assert err.startswith("lr-transfer: interrupted;")  # test_experiments' killed grid)
    assert "no run had finished; nothing was kept" in err and "Traceback" not in err


def test_collect_reads_the_runs_when_sweep_json_is_damaged(tmp_path, capsys):
    """A damaged sweep.json is not a run folder: collect warns and collects every run; the
    advice says to delete sweep.json, not a run."""
    from optimal_scaling import sweep
    from optimal_scaling.sweep.store import read_json

    raw = {"name": "tiny", "horizons": [1024],
           "run": {"batch_size": 4, "context": 16, "eval_batches": 1, "eval_batch_size": 4,
                   "model": {"width": 16, "depth": 1, "n_heads": 2}, "device": "cpu",
                   "data": {"source": "markov", "vocab_size": 32, "n_train_tokens": 4096,
                            "n_val_tokens": 1024},
                   "optimizer": {"name": "adamw", "lr": 0.01}}}  # fmt: skip
    out = tmp_path / "s"
    sweep.run(sweep.from_dict(raw), out, progress=False)
    (out / "sweep.json").write_text("{not json")
    with pytest.raises(ValueError, match="delete it: the next `sweep run` writes it again"):
        read_json(out / "sweep.json")
    assert main(["sweep", "collect", str(out), "--out", str(tmp_path / "t.csv")]) == 0
    assert "cannot tell which runs" in capsys.readouterr().err
    assert (tmp_path / "t.csv").read_text().count("\n") > 1


def test_ctrl_c_during_execute_is_an_interruption_not_a_failed_cell(tmp_path):
    """Ctrl-C reaches the whole process group; nbclient shuts the kernel down and the cell in
    flight fails with whatever that caused: the command says "interrupted", exits 130 and
    keeps the notebook so far."""
    import os
    import signal
    import subprocess
    import sys

    pytest.importorskip("nbclient")
    nb = tmp_path / "slow.py"
    nb.write_text("# %%\nprint(1)\n# %%\nimport time\ntime.sleep(120)\n# %%\nprint(2)\n")
    proc = subprocess.Popen([sys.executable, "-m", "optimal_scaling.cli", "execute", str(nb)],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(10)  # the kernel starts and runs into the long cell
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "execute: interrupted; the notebook so far is in" in err and "failed" not in err
    assert (tmp_path / "slow.run.ipynb").is_file()


class _FakeClient:
    """Stands in for nbclient.NotebookClient: records what it was given, runs ``behaviour``."""

    seen: dict = {}
    behaviour = None

    def __init__(self, nb, timeout=None, kernel_name=None, resources=None):
        self.nb = nb
        _FakeClient.seen = {"timeout": timeout, "resources": resources, "kernel": kernel_name}

    def execute(self):
        import os

        _FakeClient.seen["env"] = os.environ.get("OPTIMAL_SCALING_FAST")
        _FakeClient.seen["fast_mode"] = config.fast_mode()
        if _FakeClient.behaviour is not None:
            _FakeClient.behaviour(self)
        return self.nb


@pytest.fixture
def fake_client(monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("jupytext")
    monkeypatch.setattr(nbclient, "NotebookClient", _FakeClient)
    _FakeClient.seen, _FakeClient.behaviour = {}, None
    return _FakeClient


@pytest.fixture
def tiny_nb(tmp_path) -> Path:
    nb = tmp_path / "nbdir" / "tiny.py"
    nb.parent.mkdir()
    nb.write_text("# %% [markdown]\n# hi\n\n# %%\nx = 1\n\n# %%\ny = 2\n\n# %%\nz = 3\n")
    return nb


def test_execute_full_and_fast_and_neither(fake_client, tiny_nb, monkeypatch):
    """C06, C07: --full runs the kernel in full mode even under OPTIMAL_SCALING_FAST=1;
    neither flag leaves the environment's mode as it is; --fast switches it on."""
    monkeypatch.setenv("OPTIMAL_SCALING_FAST", "1")
    assert main(["execute", str(tiny_nb), "--full"]) == 0
    assert fake_client.seen["env"] == "0" and fake_client.seen["fast_mode"] is False
    assert main(["execute", str(tiny_nb)]) == 0
    assert fake_client.seen["env"] == "1"
    monkeypatch.delenv("OPTIMAL_SCALING_FAST")
    monkeypatch.setenv("CI", "true")
    assert main(["execute", str(tiny_nb)]) == 0
    assert fake_client.seen["env"] is None and fake_client.seen["fast_mode"] is True
    monkeypatch.delenv("CI")
    assert main(["execute", str(tiny_nb), "--fast"]) == 0
    assert fake_client.seen["env"] == "1" and fake_client.seen["fast_mode"] is True


def test_execute_fast_false_is_full_mode_even_on_ci(fake_client, tiny_nb, monkeypatch):
    """E04: fast=False means OPTIMAL_SCALING_FAST=0, which beats CI (not an empty value)."""
    from optimal_scaling.course.execute import execute

    monkeypatch.setenv("CI", "true")
    execute(tiny_nb, fast=False)
    assert fake_client.seen["fast_mode"] is False


def test_execute_restores_the_callers_mode(fake_client, tiny_nb, monkeypatch):
    """E05, E06: the mode is set for the kernel only; the caller's variable is restored
    (or stays unset) afterwards, also when a cell fails."""
    import os

    from optimal_scaling.course.execute import NotebookFailed, execute

    monkeypatch.setenv("OPTIMAL_SCALING_FAST", "yes")
    execute(tiny_nb, fast=False)
    assert fake_client.seen["env"] == "0" and os.environ["OPTIMAL_SCALING_FAST"] == "yes"
    monkeypatch.delenv("OPTIMAL_SCALING_FAST")
    execute(tiny_nb, fast=True)
    assert fake_client.seen["env"] == "1" and "OPTIMAL_SCALING_FAST" not in os.environ

    def fails(client):
        raise RuntimeError("boom")

    fake_client.behaviour = fails
    with pytest.raises(NotebookFailed):
        execute(tiny_nb, fast=True)
    assert "OPTIMAL_SCALING_FAST" not in os.environ


def test_execute_timeout_default_and_option_reach_the_client(fake_client, tiny_nb):
    """C10, C11, E14: 180 s per cell by default (README, --help), --timeout otherwise."""
    assert main(["execute", str(tiny_nb)]) == 0
    assert fake_client.seen["timeout"] == 180
    assert main(["execute", str(tiny_nb), "--timeout", "7"]) == 0
    assert fake_client.seen["timeout"] == 7


def test_execute_runs_cells_in_the_notebooks_folder(fake_client, tiny_nb, tmp_path,
                                                   monkeypatch):  # fmt: skip
    """E13: cells run in the notebook's folder, wherever the command was started."""
    monkeypatch.chdir(tmp_path)
    assert main(["execute", "nbdir/tiny.py"]) == 0
    assert fake_client.seen["resources"]["metadata"]["path"] == str(tiny_nb.parent.resolve())
    assert (tiny_nb.parent / "tiny.run.ipynb").is_file()  # default out: beside it


def test_execute_applies_the_stall_fix(fake_client, tiny_nb, monkeypatch):
    """E17: every headless run carries the sliced poll (module docstring)."""
    from jupyter_client.channels import AsyncZMQSocketChannel

    def original(self, timeout=None):
        raise AssertionError("unpatched")

    monkeypatch.setattr(AsyncZMQSocketChannel, "get_msg", original)
    assert main(["execute", str(tiny_nb)]) == 0
    assert AsyncZMQSocketChannel.get_msg is not original


def test_execute_fast_and_full_exclude_each_other(tiny_nb, capsys):
    """C12: --fast and --full are a mutually exclusive pair (a usage error, exit 2)."""
    with pytest.raises(SystemExit) as info:
        main(["execute", str(tiny_nb), "--fast", "--full"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_execute_refuses_a_timeout_below_one_second(fake_client, tiny_nb, capsys):
    """E01: --timeout 0 is refused before anything runs (exit 2, one line)."""
    assert main(["execute", str(tiny_nb), "--timeout", "0"]) == 2
    assert "timeout must be ≥ 1 second, got 0" in capsys.readouterr().err
    assert fake_client.seen == {}


def test_execute_errors_name_the_file(fake_client, tmp_path, capsys):
    """E02, E18: an unreadable notebook and a missing one are named in the message."""
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert main(["execute", str(bad)]) == 2
    assert f"execute: {bad} is not a notebook nbformat can read" in capsys.readouterr().err
    assert main(["execute", str(tmp_path / "gone.ipynb")]) == 2
    assert f"no notebook at {tmp_path / 'gone.ipynb'}" in capsys.readouterr().err


def _error(ename="ValueError", evalue="bad"):
    import nbformat

    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[])


def test_execute_names_the_last_failed_cell(fake_client, tiny_nb, capsys):
    """E11: a cell tagged raises-exception may hold an error and execution goes on; the
    failure is the last cell with an error, not the first."""

    def second_error_stops(client):
        from nbclient.exceptions import CellExecutionError

        client.nb.cells[1].outputs = [_error("ZeroDivisionError", "expected")]
        client.nb.cells[3].outputs = [_error("KeyError", "'k'")]
        raise CellExecutionError("tb", "KeyError", "'k'")

    fake_client.behaviour = second_error_stops
    out = tiny_nb.parent / "o.ipynb"
    assert main(["execute", str(tiny_nb), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cell 4 failed (KeyError: 'k')" in err and str(out) in err  # index 3, counted from 1
    assert json.loads(out.read_text())["cells"][3]["outputs"][0]["ename"] == "KeyError"


def test_execute_without_an_error_cell_names_the_exception(fake_client, tiny_nb, capsys):
    """E12: a dead kernel or a timeout (no cell holds an error) is named by its type and the
    last line of its message."""

    def dies(client):
        raise RuntimeError("Kernel died before replying\nKernel died")

    fake_client.behaviour = dies
    assert main(["execute", str(tiny_nb)]) == 1
    assert "execution failed (RuntimeError: Kernel died)" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["ctrl_c", "kernel_shut_down", "cell_saw_interrupt"])
def test_interruptions_are_not_failed_cells(fake_client, tiny_nb, capsys, how):
    """E08, E09, E10, E20: Ctrl-C in any disguise (a KeyboardInterrupt, nbclient's cleanup
    future left behind, a cell's KeyboardInterrupt error) is an interruption: exit 130, one
    line naming the notebook kept so far, never "failed"."""

    def interrupted(client):
        from nbclient.exceptions import CellExecutionError, DeadKernelError

        if how == "ctrl_c":
            raise KeyboardInterrupt
        if how == "kernel_shut_down":
            client._async_cleanup_kernel_future = object()
            raise DeadKernelError("Kernel died")
        client.nb.cells[1].outputs = [_error("KeyboardInterrupt", "")]
        raise CellExecutionError("tb", "KeyboardInterrupt", "")

    fake_client.behaviour = interrupted
    assert main(["execute", str(tiny_nb)]) == 130
    err = capsys.readouterr().err
    kept = tiny_nb.with_suffix(".run.ipynb")
    assert err == f"execute: interrupted; the notebook so far is in {kept}\n"
    assert kept.is_file()


def test_lr_transfer_passes_every_option_and_records_the_config(tmp_path, monkeypatch):
    """C13, C14, C15, C20: --steps, --batch-size, --parametrizations reach the grid, and
    the finished table's header holds the config (the partial file is gone)."""
    from optimal_scaling import experiments

    seen = {}

    def grid(cfg, done=None, after_run=None):
        seen["cfg"] = cfg
        return pd.DataFrame({"parametrization": ["ntk"], "loss": [1.0]})

    monkeypatch.setattr(experiments, "gpt_lr_transfer", grid)
    out = tmp_path / "g.csv"
    assert main(["lr-transfer", "--fast", "--data", "markov", "--steps", "3", "--batch-size",
                 "2", "--parametrizations", "ntk", "spectral", "--out", str(out)]) == 0  # fmt: skip
    cfg = seen["cfg"]
    assert (cfg.steps, cfg.batch_size, cfg.parametrizations) == (3, 2, ("ntk", "spectral"))
    _, meta = read_table(out)
    assert meta["config"] == experiments.describe(cfg) and "partial" not in meta
    assert meta["command"].endswith(f"--out {out}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.csv"]


def _finished_run(**cells) -> pd.DataFrame:
    """One row as ``lr-transfer --fast`` writes it (a run of its grid), ``cells`` changed."""
    row = {"parametrization": "sp", "width": 32, "lr": 2.0**-7, "log2_lr": -7.0, "loss": 9.0,
           "train_loss": 9.1, "initial_loss": 9.5, "diverged": False, "reason": "",
           "seconds": 1.0}  # fmt: skip
    return pd.DataFrame([{**row, **cells}])


def test_lr_transfer_resumes_only_a_partial_file_of_the_same_config(tmp_path, monkeypatch,
                                                                     capsys):  # fmt: skip
    """C17: runs kept beside --out by another config are not taken as finished runs."""
    from optimal_scaling import experiments
    from optimal_scaling.results import write_table

    seen = []

    def grid(cfg, done=None, after_run=None):
        seen.append(done)
        return pd.DataFrame({"parametrization": ["mup"], "loss": [1.0]})

    monkeypatch.setattr(experiments, "gpt_lr_transfer", grid)
    args = ["lr-transfer", "--fast", "--data", "markov", "--out", str(tmp_path / "g.csv")]
    old = _finished_run()
    write_table(old, tmp_path / "g.partial.csv", "c", config="another config", partial="true")
    assert main(args) == 0
    assert seen == [None] and "resuming" not in capsys.readouterr().out
    import dataclasses

    cfg = dataclasses.replace(experiments.LRTransferConfig.fast(), data="markov")
    write_table(old, tmp_path / "g.partial.csv", "c", config=experiments.describe(cfg),
                partial="true")  # fmt: skip
    assert main(args) == 0
    assert seen[-1] is not None and seen[-1]["loss"].tolist() == [9.0]
    assert "resuming: 1 runs already in" in capsys.readouterr().out


@pytest.fixture
def bench_calls(monkeypatch, tmp_path):
    """Replace the benchmarks by recorders; benchmarks/results/ goes under tmp_path."""
    from optimal_scaling import bench, course

    calls = []
    monkeypatch.setattr(bench, "run_newton_schulz", lambda out, **k: calls.append(("ns", out, k)))
    monkeypatch.setattr(bench, "run_optimizers", lambda out, **k: calls.append(("optim", out, k)))
    monkeypatch.setattr(course, "repo_root", lambda: tmp_path)
    from optimal_scaling.sweep import benchmark

    monkeypatch.setattr(benchmark, "run_sweep_benchmark",
                        lambda out, **k: calls.append(("sweep", out, k)))  # fmt: skip
    return calls


def test_bench_ns_default_file_names_device_dtype_and_size(bench_calls, tmp_path):
    """C28, C29, C30: the default JSON name carries device, dtype and fast/full; --steps
    reaches the benchmark (default 5)."""
    results = tmp_path / "benchmarks" / "results"
    assert main(["bench", "ns", "--fast", "--device", "cpu", "--steps", "3"]) == 0
    name, out, kwargs = bench_calls[-1]
    assert out == results / "newton_schulz_cpu_float32_fast.json" and kwargs["steps"] == 3
    assert main(["bench", "ns", "--device", "cpu", "--dtype", "bfloat16"]) == 0
    name, out, kwargs = bench_calls[-1]
    assert out == results / "newton_schulz_cpu_bfloat16_full.json" and kwargs["steps"] == 5
    assert main(["bench", "optim", "--device", "cpu", "--no-write"]) == 0
    assert bench_calls[-1][:2] == ("optim", None)


@pytest.mark.parametrize("args, needle", [
    (["bench", "ns", "--steps", "0"], "--repeats and --steps must be ≥ 1"),
    (["bench", "optim", "--steps", "3"], "bench optim: --steps does not apply"),
    (["bench", "sweep", "--device", "cpu"], "bench sweep: --device does not apply"),
    (["bench", "tune", "--device", "cpu"], "bench tune: --device does not apply"),
    (["bench", "ns", "--device", "npu0"], "bench: unknown device 'npu0'"),
])  # fmt: skip
def test_bench_refuses_options_that_do_not_apply(bench_calls, capsys, args, needle):
    """C24, C25, C26, C27: an option a benchmark ignores (or a zero count) is refused before
    any timing, with one line."""
    assert main([*args, "--no-write"]) == 2
    assert needle in capsys.readouterr().err and bench_calls == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_names_a_missing_cuda_device(bench_calls, capsys):
    """C23: --device cuda without CUDA is one line and exit 2, before timing."""
    assert main(["bench", "ns", "--fast", "--device", "cuda", "--no-write"]) == 2
    assert "--device cuda but no CUDA device is available" in capsys.readouterr().err
    assert bench_calls == []


def test_bench_write_errors_are_one_line(monkeypatch, capsys, tmp_path):
    """C31: an OSError while benchmarking/writing ends the command with exit 2."""
    from optimal_scaling import bench

    def full(out, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bench, "run_newton_schulz", full)
    assert main(["bench", "ns", "--device", "cpu", "--out", str(tmp_path / "b.json")]) == 2
    assert capsys.readouterr().err.startswith("bench ns: [Errno 28] No space left")


@pytest.fixture
def sweep_calls(monkeypatch):
    from optimal_scaling import sweep

    calls = []

    def run(spec, out, **kwargs):
        calls.append((spec, out, kwargs))
        return {}

    monkeypatch.setattr(sweep, "run", run)
    return calls


def test_sweep_run_passes_its_options(sweep_calls, tmp_path):
    """C33, C34, C40: --workers, --quiet, --wait and --executor reach sweep.run."""
    out = str(tmp_path / "s")
    assert main(["sweep", "run", str(_ci_toml()), "--out", out, "--dry-run", "--workers", "3",
                 "--quiet", "--wait", "--executor", "slurm"]) == 0  # fmt: skip
    _, got_out, kw = sweep_calls[-1]
    assert got_out == out
    assert kw == {"executor": "slurm", "workers": 3, "dry_run": True, "wait": True,
                  "progress": False}  # fmt: skip
    assert main(["sweep", "run", str(_ci_toml()), "--out", out, "--dry-run"]) == 0
    kw = sweep_calls[-1][2]
    assert (kw["executor"], kw["workers"], kw["wait"], kw["progress"]) == ("local", None, False,
                                                                          True)  # fmt: skip


def test_sweep_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    """C38: Ctrl-C during a sweep: exit status 130 and the resume hint."""
    from optimal_scaling import sweep

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run", interrupted)
    assert main(["sweep", "run", str(_ci_toml()), "--out", str(tmp_path / "s")]) == 130
    assert "sweep: interrupted; finished horizons are kept" in capsys.readouterr().err


def test_sweep_status_runs_prints_one_line_per_run(monkeypatch, capsys, tmp_path):
    """C35: `sweep status DIR --runs` adds the per-run table."""
    from optimal_scaling import sweep

    monkeypatch.setattr(sweep, "status", lambda d: {"done": 1, "failed": 1})
    monkeypatch.setattr(sweep, "status_table", lambda d: pd.DataFrame(
        {"id": ["aaaa1111", "bbbb2222"], "status": ["done", "failed"]}))
    monkeypatch.setattr(sweep, "time_left", lambda d: {"runs_left": 0, "left": 0.0})
    assert main(["sweep", "status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "1 done, 1 failed"
    assert main(["sweep", "status", str(tmp_path), "--runs"]) == 0
    out = capsys.readouterr().out
    assert "aaaa1111" in out and "bbbb2222" in out and out.strip().endswith("1 done, 1 failed")


def test_shards_honours_pattern_max_bytes_and_val_fraction(tmp_path, capsys):
    """C41, C42, C43: --pattern picks the files, --max-bytes caps the corpus,
    --val-fraction splits it."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("t" * 1000)
    (src / "b.md").write_text("m" * 400)
    meta = lambda d: json.loads((tmp_path / d / "meta.json").read_text())  # noqa: E731
    sizes = lambda d: ((tmp_path / d / "train.bin").stat().st_size // 2,  # noqa: E731
                       (tmp_path / d / "val.bin").stat().st_size // 2)  # fmt: skip
    # files are concatenated, each followed by a newline (data.byte_corpus)
    assert main(["shards", str(src), str(tmp_path / "md"), "--pattern", "*.md"]) == 0
    assert sum(sizes("md")) == 401 and meta("md")["vocab_size"] == 256
    assert main(["shards", str(src), str(tmp_path / "all")]) == 0
    assert sum(sizes("all")) == 1001  # default pattern *.txt
    assert main(["shards", str(src), str(tmp_path / "cap"), "--max-bytes", "300"]) == 0
    assert sum(sizes("cap")) == 300
    assert main(["shards", str(src / "a.txt"), str(tmp_path / "half"), "--val-fraction",
                 "0.5"]) == 0  # fmt: skip
    train, val = sizes("half")
    assert train + val == 1001 and abs(val - train) <= 2
    capsys.readouterr()


def _ci_toml() -> Path:
    from optimal_scaling.course import repo_root

    return repo_root() / "configs" / "ci.toml"


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_bench_says_a_valid_but_absent_mps_device_is_absent(bench_calls, capsys):
    assert main(["bench", "ns", "--device", "mps"]) == 2
    assert capsys.readouterr().err == "bench: --device mps but no MPS device is available\n"


def test_collect_refuses_any_spacing_without_log(tmp_path, capsys):
    """--spacing thins training logs: given without --log it is refused, 0 included."""
    for spacing in ("0", "0.1"):
        assert main(["sweep", "collect", str(tmp_path), "--out", str(tmp_path / "t.csv"),
                     "--spacing", spacing]) == 2
        assert "applies only with --log" in capsys.readouterr().err


@pytest.mark.parametrize("args, name", [
    (["bench", "ns", "--fast", "--out", ""], "--out"),
    (["sweep", "run", "CONFIG", "--out", ""], "--out"),
    (["sweep", "run", ""], "CONFIG"),
    (["sweep", "status", ""], "DIR"),
    (["sweep", "collect", "", "--out", "t.csv"], "DIR"),
    (["sweep", "collect", "s", "--out", ""], "--out"),
    (["lr-transfer", "--fast", "--out", ""], "--out"),
    (["execute", ""], "NOTEBOOK"),
    (["execute", "n.ipynb", "--out", ""], "--out"),
    (["shards", "", "s"], "SOURCE"),
    (["shards", "a.txt", ""], "OUT"),
    (["sync", "lectures", ""], "DIR"),
    (["check", ""], "DIR"),
    (["exercises", "--solutions", ""], "--solutions"),
    (["exercises", "--exercises", ""], "--exercises"),
])  # fmt: skip
def test_an_empty_path_is_refused_before_any_work(args, name, bench_calls, sweep_calls, tmp_path,
                                                   monkeypatch, capsys):  # fmt: skip
    """An empty path is not "no path given" (bench: the repository's benchmarks/results) nor
    the current folder (Path("") is "."): one line naming the argument, exit 2, nothing run or
    written."""
    monkeypatch.chdir(tmp_path)
    args = [str(_ci_toml()) if a == "CONFIG" else a for a in args]
    assert main(args) == 2
    assert capsys.readouterr().err == f"{args[0]}: {name} is empty; give a path\n"
    assert bench_calls == [] and sweep_calls == [] and list(tmp_path.iterdir()) == []


def _damaged_partial(path: Path, body: str | bytes) -> bytes:
    """``path``: the header of a resume file of ``lr-transfer --fast --data markov``, then
    ``body``; returns the file's bytes."""
    import dataclasses

    from optimal_scaling import experiments
    from optimal_scaling.results import write_table

    cfg = dataclasses.replace(experiments.LRTransferConfig.fast(), data="markov")
    write_table(_finished_run(), path, "c", config=experiments.describe(cfg), partial="true")
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    body = body.encode() if isinstance(body, str) else body
    path.write_bytes(header.encode() + body)
    return path.read_bytes()


COLUMNS = "parametrization,width,lr,log2_lr,loss,train_loss,initial_loss,diverged,reason,seconds\n"


@pytest.mark.parametrize("body, needle", [
    ("a,b\n1,2\n", "no column ['parametrization', 'width'"),
    ("parametrization,width,log2_lr\nsp,32,-7\n", "no column ['lr', 'loss'"),
    (COLUMNS + "sp,abc,0.0078125,-7,9,9,9,False,,1\n", "column 'width' holds something other "
                                                       "than numbers"),
    (COLUMNS + "sp,32,0.0078125,-7,9,9,9,maybe,,1\n", "column 'diverged' holds something other"),
    (COLUMNS + "sp,48,0.0078125,-7,9,9,9,False,,1\n", "width=48, log2_lr=-7 is not in the grid"),
    (COLUMNS + "sp,32,0.0078125,-7,9,9,9,False,,1\n" * 2, "a run appears twice"),
    (b"\xff\xfe\n", "can't decode byte 0xff"),
])  # fmt: skip
def test_lr_transfer_refuses_a_damaged_resume_file(tmp_path, monkeypatch, capsys, body, needle):
    """A resume file of this config that is not a finished run's table is refused before any
    training, named, and left as it is (its runs may be hours of work); no table is written."""
    from optimal_scaling import experiments

    calls = []
    monkeypatch.setattr(experiments, "gpt_lr_transfer", lambda *a, **k: calls.append(k))
    partial = tmp_path / "g.partial.csv"
    before = _damaged_partial(partial, body)
    assert main(["lr-transfer", "--fast", "--data", "markov", "--out",
                 str(tmp_path / "g.csv")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith(f"lr-transfer: cannot resume from {partial}: ") and needle in err
    assert err.endswith("; repair it, or delete it to start over\n") and err.count("\n") == 1
    assert calls == [] and partial.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.partial.csv"]


def test_lr_transfer_refuses_a_folder_at_the_resume_path_before_training(tmp_path, monkeypatch,
                                                                         capsys):  # fmt: skip
    """The runs are kept in NAME.partial.csv after each run: a folder there is named before
    the first run, not met as an IsADirectoryError after it."""
    from optimal_scaling import experiments

    calls = []
    monkeypatch.setattr(experiments, "gpt_lr_transfer", lambda *a, **k: calls.append(k))
    (tmp_path / "g.partial.csv").mkdir()
    assert main(["lr-transfer", "--fast", "--out", str(tmp_path / "g.csv")]) == 2
    assert capsys.readouterr().err == (f"lr-transfer: {tmp_path / 'g.partial.csv'} is a folder "
                                       "(or another non-file); the finished runs are kept in a "
                                       "file of that name: move it away\n")  # fmt: skip
    assert calls == [] and not (tmp_path / "g.csv").exists()


def test_help_lists_every_command_in_plain_text(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.count("optimal-scaling sweep run CONFIG") == 1
    for command in ("env", "sync", "check", "exercises", "execute", "lr-transfer", "bench",
                    "shards", "sweep"):
        assert f"optimal-scaling {command}" in out, command
    assert "``" not in out  # the module docstring's RST quotes are not shown
