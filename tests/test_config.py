import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from optimal_scaling import config
from optimal_scaling.cli import main


def test_fast_mode_follows_ci_by_default(monkeypatch):
    assert config.fast_mode() is False
    monkeypatch.setenv("CI", "true")
    assert config.fast_mode() is True
    monkeypatch.setenv("OPTIMAL_SCALING_FAST", "0")  # explicit beats CI
    assert config.fast_mode() is False
    monkeypatch.setenv("OPTIMAL_SCALING_FAST", " ")  # empty counts as unset: CI decides
    assert config.fast_mode() is True
    for ci, expected in (("false", False), ("0", False), ("", False), ("1", True),
                         ("woodpecker", True)):  # fmt: skip
        monkeypatch.setenv("CI", ci)
        assert config.fast_mode() is expected, ci


@pytest.mark.parametrize("raw, expected", [("1", True), ("yes", True), ("OFF", False), ("", False)])
def test_fast_mode_values(monkeypatch, raw, expected):
    monkeypatch.setenv("OPTIMAL_SCALING_FAST", raw)
    assert config.fast_mode() is expected
    assert config.choose(fast="small", full="big") == ("small" if expected else "big")


def test_bad_flag_names_the_variable(monkeypatch):
    monkeypatch.setenv("OPTIMAL_SCALING_FAST", "maybe")
    with pytest.raises(ValueError, match="OPTIMAL_SCALING_FAST='maybe'"):
        config.fast_mode()


def test_device_default_and_override(monkeypatch):
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert config.device().type == "cuda"
    monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")


def test_device_override_errors(monkeypatch):
    monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="not a device name"):
        config.device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="not available"):
            config.device()


def test_a_cuda_index_past_the_last_gpu_is_not_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for name in ("cuda", "cuda:0", "cuda:1"):
        monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", name)
        assert config.device() == torch.device(name)
    monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", "cuda:2")  # indices count from 0
    with pytest.raises(RuntimeError, match="'cuda:2' is not available here"):
        config.device()


def test_seed_everything_is_reproducible():
    g1 = config.seed_everything(7)
    a = (torch.rand(3), np.random.rand(), torch.rand(2, generator=g1))
    g2 = config.seed_everything(7)
    b = (torch.rand(3), np.random.rand(), torch.rand(2, generator=g2))
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and torch.equal(a[2], b[2])
    # every stream (and the returned generator) is the one that seed names: not only
    # reproducible, but different for another seed
    for seed in (7, 8):
        g = config.seed_everything(seed)
        assert random.random() == random.Random(seed).random()
        assert np.random.rand() == np.random.RandomState(seed).rand()
        fresh = torch.Generator().manual_seed(seed)
        assert torch.equal(torch.rand(3), torch.rand(3, generator=fresh))
        fresh = torch.Generator().manual_seed(seed)
        assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=fresh))
    assert not torch.equal(a[2], torch.rand(2, generator=config.seed_everything(8)))
    with pytest.raises(ValueError, match="seed must be an int ≥ 0"):
        config.seed_everything(-1)


def test_environment_report_has_versions():
    report = config.environment()
    assert report["torch"] == torch.__version__
    assert report["device"] == str(config.device())
    assert {"python", "triton", "fast mode"} <= set(report)


def test_import_is_light():
    """`import optimal_scaling` must not pull in torch, Triton or data generation."""
    code = (
        "import sys, optimal_scaling\n"
        "print(sorted(m for m in ('torch', 'triton') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_env_runs():
    out = subprocess.run(
        [sys.executable, "-m", "optimal_scaling.cli", "env"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "torch" in out.stdout and torch.__version__ in out.stdout


@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("true", True), ("yes", True), ("on", True), (" ON ", True),
    ("0", False), ("false", False), ("no", False), ("off", False), (" No", False),
])  # fmt: skip
def test_every_documented_boolean_spelling_is_read(monkeypatch, raw, expected):
    """G02, G03: the module docstring lists 1/0, true/false, yes/no, on/off."""
    monkeypatch.setenv("OPTIMAL_SCALING_FAST", raw)
    assert config.fast_mode() is expected
    monkeypatch.setenv("OPTIMAL_SCALING_STRICT", raw)
    assert config.strict_mode() is expected


@pytest.mark.parametrize("ci", ["False", " false ", "NO", "Off", " 0 "])
def test_ci_set_to_a_false_word_in_any_case_is_not_fast(monkeypatch, ci):
    """G05: CI's value is read case- and space-insensitively, like the flag itself."""
    monkeypatch.setenv("CI", ci)
    assert config.fast_mode() is False


def test_strict_mode_does_not_follow_ci(monkeypatch):
    """G06: only OPTIMAL_SCALING_STRICT turns strict self-checks on (fast mode follows CI)."""
    monkeypatch.setenv("CI", "true")
    assert config.fast_mode() is True and config.strict_mode() is False


def test_plain_cuda_is_gpu_0_on_a_one_gpu_machine(monkeypatch):
    """G07: "cuda" means the current (first) GPU, available with one GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", "cuda")
    assert config.device() == torch.device("cuda")
    monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", "cuda:1")
    with pytest.raises(RuntimeError, match="'cuda:1' is not available here"):
        config.device()


def test_seed_everything_seeds_numpy_with_the_seed_itself_below_2_32():
    """G10: NumPy's stream is the one the seed names for every seed NumPy accepts."""
    import numpy as np

    for seed in (2**31 + 5, 2**32 - 1):
        config.seed_everything(seed)
        assert np.random.rand() == np.random.RandomState(seed).rand()


def test_env_report_lists_the_modes(monkeypatch, capsys):
    """G09: `optimal-scaling env` reports fast mode and strict self-checks."""
    monkeypatch.setenv("OPTIMAL_SCALING_STRICT", "1")
    monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", "cpu")
    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("strict self-checks") and line.endswith("True") for line in lines)
    assert any(line.startswith("fast mode") and line.endswith("False") for line in lines)


def test_env_names_a_device_that_is_not_available(monkeypatch, capsys):
    """C05: a valid but absent device (a RuntimeError in config.device) is one line, exit 2."""
    monkeypatch.setenv("OPTIMAL_SCALING_DEVICE", "cuda:97")
    assert main(["env"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("env: OPTIMAL_SCALING_DEVICE='cuda:97' is not available here")


def test_seed_everything_refuses_a_seed_past_64_bits_before_reseeding_anything():
    random.seed(5)
    state = random.getstate()
    with pytest.raises(ValueError, match=r"seed_everything: seed must be < 2\*\*64, got"):
        config.seed_everything(2**64)
    assert random.getstate() == state
    config.seed_everything(2**64 - 1)  # the largest seed torch takes
