import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from optimal_scaling.coord_check import optima
from optimal_scaling.experiments import LRTransferConfig, gpt_lr_transfer
from optimal_scaling.results import read_table, write_table


def test_fast_lr_transfer_grid_on_the_markov_language():
    cfg = dataclasses.replace(LRTransferConfig.fast(), data="markov", log2_lrs=(-8, -5, 6))
    grid = gpt_lr_transfer(cfg, progress=False)
    assert len(grid) == 2 * 2 * 3
    assert set(grid.parametrization) == {"sp", "mup"}
    # at the base width μP is SP: identical runs
    base = grid[grid.width == cfg.base_width].pivot(
        index="lr", columns="parametrization", values="loss"
    )
    np.testing.assert_array_equal(base["sp"], base["mup"])
    # lr = 64 fails; the reasonable ones learn (loss below the initial ln(vocab)-ish loss)
    assert grid[grid.log2_lr == 6].pipe(lambda g: (g.diverged | (g.loss >= g.initial_loss)).all())
    ok = grid[grid.log2_lr == -5]
    assert (ok.loss < ok.initial_loss).all()
    best = optima(grid, by=["parametrization", "width"])
    assert (best.divergence_lr == 64).all()


def test_result_tables_round_trip(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, math.inf]})
    path = write_table(df, tmp_path / "sub" / "t.csv", "optimal-scaling something", note="x")
    back, meta = read_table(path)
    pd.testing.assert_frame_equal(back, df)
    assert meta["command"] == "optimal-scaling something" and meta["note"] == "x"
    assert {"optimal_scaling", "torch", "machine", "date"} <= set(meta)
    assert not list(tmp_path.glob("sub/.*tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    for bad in ({"command": "a\nb"}, {"command": "c", "note": "a\rb"},
                {"command": "c", "note": "a\u2028b"}, {"command": "c", "a: b": "x"},
                {"command": "c", "note": "v\n"}, {"command": "\rc"}):  # fmt: skip
        with pytest.raises(ValueError, match="one line"):
            write_table(df, tmp_path / "u.csv", **bad)
    assert not (tmp_path / "u.csv").exists()
    with pytest.raises(ValueError, match="starts with '#'"):  # it would read back as metadata
        write_table(pd.DataFrame({"# n": [1]}), tmp_path / "h.csv", "c")
    with pytest.raises(ValueError, match="no columns"):
        write_table(pd.DataFrame(), tmp_path / "e.csv", "c")
    with pytest.raises(FileNotFoundError, match="no result table"):
        read_table(tmp_path / "missing.csv")
    # strings pandas would read as missing by default stay strings; missing values stay NaN
    names = pd.DataFrame({"p": ["None", "NA", "null", "mup"], "x": [1.0, math.nan, 2.0, 3.0]})
    back, _ = read_table(write_table(names, tmp_path / "n.csv", "c"))
    pd.testing.assert_frame_equal(back, names)


def test_cli_lr_transfer_writes_a_provenance_header(tmp_path):
    out = tmp_path / "grid.csv"
    cmd = [
        sys.executable,
        "-m",
        "optimal_scaling.cli",
        "lr-transfer",
        "--fast",
        "--data",
        "markov",
        "--widths",
        "32",
        "--log2-lrs",
        "-6",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    grid, meta = read_table(out)
    assert meta["command"].startswith("optimal-scaling lr-transfer --fast")
    assert "widths=(32,)" in meta["config"] and len(grid) == 2


def test_committed_lr_transfer_table(root):
    """The committed full-mode grid: regenerable, 16× width range, LRs a factor 2 apart."""
    grid, meta = read_table(root / "results" / "lr_transfer_gpt.csv")
    assert meta["command"].startswith("optimal-scaling lr-transfer")
    assert set(grid.parametrization) == {"sp", "mup"}
    assert grid.width.max() / grid.width.min() >= 16
    steps = np.diff(np.sort(grid.log2_lr.unique()))
    assert np.allclose(steps, 1.0)
    counts = grid.groupby(["parametrization", "width"]).size()
    assert counts.nunique() == 1  # a full grid
    # what lecture 01 reads off it: μP's optimum stays within one grid step over 16× width,
    # SP's moves to smaller learning rates by at least three
    best = grid.loc[grid.groupby(["parametrization", "width"]).loss.idxmin()]
    opt = best.set_index(["parametrization", "width"]).log2_lr
    assert opt["mup"].max() - opt["mup"].min() <= 1
    assert opt["sp"].iloc[0] - opt["sp"].iloc[-1] >= 3 and opt["sp"].is_monotonic_decreasing


def _committed_sweeps(root):
    out = []
    for path in sorted((root / "results").glob("*.csv")):
        _, meta = read_table(path)
        if meta.get("sweep"):
            out.append(path)
    return out


def test_committed_sweep_results_are_complete_and_regenerable(root):
    """Every collected sweep under results/: the command that regenerates it, every run
    finished (done or diverged), and every run × horizon (or log entry) present."""
    from optimal_scaling import sweep

    paths = _committed_sweeps(root)
    assert len(paths) >= 3
    for path in paths:
        table, meta = read_table(path)
        name = meta["sweep"]
        preset = root / "configs" / f"{name}.toml"
        assert preset.is_file(), f"{path.name}: no preset {preset.name}"
        assert meta["command"].startswith(f"optimal-scaling sweep collect runs/{name}")
        assert f"sweep run configs/{name}.toml" in preset.read_text()
        states = dict(part.split(" ") for part in meta["runs"].split(", "))
        assert set(states) <= {"done", "diverged"}, f"{path.name}: unfinished runs {states}"
        spec = sweep.load(preset)
        assert sum(map(int, states.values())) == len(spec.runs()), path.name
        if "--log" in meta["command"]:  # a run that diverged before its first entry has none
            assert int(states["done"]) <= table["run_id"].nunique() <= len(spec.runs())
        else:
            assert table["run_id"].nunique() == len(spec.runs()), path.name
            # a constant-schedule run is read at every horizon, a decaying one at its own
            assert len(table) == sum(len(r.horizons) for r in spec.runs()), path.name
            assert set(table["horizon"]) == set(spec.horizons)


@pytest.mark.parametrize("args, needle", [
    (["--widths", "32", "30"], "width 30 is not divisible by n_heads 4"),
    (["--steps", "0"], "steps must be a positive int"),
    (["--batch-size", "0"], "batch_size must be a positive int"),
    (["--log2-lrs", "nan"], "log2_lrs must be finite"),
])  # fmt: skip
def test_cli_lr_transfer_names_bad_settings_before_training(tmp_path, capsys, args, needle):
    from optimal_scaling.cli import main

    out = tmp_path / "grid.csv"
    assert main(["lr-transfer", "--fast", "--data", "markov", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lr-transfer: ") and needle in err
    assert not out.exists()


def test_cli_lr_transfer_refuses_an_unwritable_out_before_training(tmp_path, capsys):
    from optimal_scaling.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["lr-transfer", "--fast", "--data", "markov",
                 "--out", str(blocker / "grid.csv")]) == 2  # fmt: skip
    assert capsys.readouterr().err.startswith("lr-transfer: ")


def test_a_killed_lr_transfer_resumes_from_the_runs_it_finished(tmp_path, monkeypatch,
                                                                capsys):
    from optimal_scaling import experiments
    from optimal_scaling.cli import main

    args = ["lr-transfer", "--fast", "--data", "markov", "--widths", "32", "--log2-lrs", "-8",
            "-6", "--parametrizations", "mup", "--steps", "5"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "whole.csv")]) == 0
    real, calls = experiments.train_gpt, []

    def dies_on_the_second(*a, **k):
        calls.append(a[4])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(experiments, "train_gpt", dies_on_the_second)
    out = tmp_path / "grid.csv"
    out.write_text("# command: a finished table of another config\na\n1\n")
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 130  # Ctrl-C: one line, exit status 130
    err = capsys.readouterr().err
    assert "interrupted; the finished runs are in" in err and "grid.partial.csv" in err
    assert out.read_text().startswith("# command: a finished table")  # left alone
    part, meta = read_table(tmp_path / "grid.partial.csv")
    assert meta["partial"] == "true" and part["log2_lr"].tolist() == [-8.0]
    calls.clear()
    monkeypatch.setattr(experiments, "train_gpt", lambda *a, **k: (calls.append(a[4]),
                                                                    real(*a, **k))[1])
    assert main([*args, "--out", str(out)]) == 0
    assert calls == [2.0**-6]  # only the run that was missing
    got, meta = read_table(out)
    want, _ = read_table(tmp_path / "whole.csv")
    assert not (tmp_path / "grid.partial.csv").exists()
    assert "partial" not in meta and got["log2_lr"].tolist() == [-8.0, -6.0]
    assert np.allclose(got["loss"], want["loss"]) and np.allclose(got["train_loss"],
                                                                  want["train_loss"])
