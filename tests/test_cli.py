"""The command line: a bad --out, a bad environment or Ctrl-C end a command with one line
and a nonzero exit status, before any work (never a traceback after minutes of timing)."""

from __future__ import annotations

import time

import pytest

from optimal_scaling.cli import main


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
