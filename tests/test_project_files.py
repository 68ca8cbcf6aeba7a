"""The project files agree with each other: pyproject ↔ environment.yml, README ↔ syllabus."""

import re

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from optimal_scaling.course import FOLDERS, SYLLABUS

CONDA_TO_PIP = {"pytorch": "torch"}


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~;\[ ]", spec.strip(), maxsplit=1)[0].lower()


def run_readme_block(root, heading: str) -> tuple[dict, str]:
    """Run the first Python block under README's ``## heading`` from the repository's root;
    return its variables and what it printed."""
    import contextlib
    import io
    import os

    section = (root / "README.md").read_text().split(f"## {heading}")[1]
    code = section.split("```python\n")[1].split("```")[0]
    scope: dict = {}
    here = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 (our own README)
    finally:
        os.chdir(here)
    return scope, printed.getvalue()


def test_environment_yml_lists_the_same_packages(root):
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pip_names = {requirement_name(r) for r in meta["dependencies"]}
    pip_names |= {requirement_name(r) for r in meta["optional-dependencies"]["dev"]}
    env = yaml.safe_load((root / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    conda_names = {CONDA_TO_PIP.get(n, n) for n in map(requirement_name, conda)} - {"python", "pip"}
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # triton comes in through the package's own extra (its marker keeps it to Linux)
    assert any(line.startswith("-e") and "triton" in line for line in pip_section)
    triton = {requirement_name(r) for r in meta["optional-dependencies"]["triton"]}
    assert triton == {"triton"}
    assert conda_names == pip_names - triton, (
        f"only in pyproject: {sorted(pip_names - triton - conda_names)}; "
        f"only in environment.yml: {sorted(conda_names - pip_names)}"
    )


def test_torch_is_a_lower_bound_only(root):
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    torch_req = [r for r in meta["dependencies"] if requirement_name(r) == "torch"]
    assert torch_req and all(re.fullmatch(r"torch>=[\d.]+", r) for r in torch_req)
    makefile = (root / "Makefile").read_text()
    assert re.search(r"^TORCH_VERSION \?= \d+\.\d+\.\d+$", makefile, re.M)


def test_readme_starts_with_the_two_commands(root):
    text = (root / "README.md").read_text()
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [
        ["make", "lab"],
        ["make", "test"],
    ]


def test_readme_syllabus_links_every_existing_notebook(root):
    text = (root / "README.md").read_text()
    rows = {int(m[1]): m[2] for m in re.finditer(r"^\| (\d\d) \| [^|]+ \| (.+) \|$", text, re.M)}
    assert sorted(rows) == [lec.number for lec in SYLLABUS]
    for lec in SYLLABUS:
        links = re.findall(r"\]\(([^)]+)\)", rows[lec.number])
        exists = [(root / f / f"{lec.stem}.ipynb").exists() for f in FOLDERS]
        if all(exists):
            assert sorted(links) == sorted(f"{f}/{lec.stem}.ipynb" for f in FOLDERS), lec.stem
        else:
            assert not any(exists), f"{lec.stem}: some but not all of its notebooks exist"
            assert rows[lec.number].strip() == "coming", lec.stem


def test_readme_links_resolve(root):
    text = (root / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (root / target).exists(), f"README links to missing {target}"


def test_make_takes_torch_from_the_cpu_index_without_an_nvidia_gpu(root, tmp_path):
    import os
    import shutil
    import subprocess

    make = shutil.which("make")
    if make is None:
        pytest.skip("no make on this machine")

    def install_lines(path: str) -> str:
        env = dict(os.environ, PATH=path)
        out = subprocess.run([make, "-n", "--always-make", f"VENV={tmp_path}/venv",
                              f"{tmp_path}/venv/.installed"], cwd=root, env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout

    def without_nvidia_smi(folder: str) -> str:
        """``folder``, or (on a GPU machine) a copy of it as links, less nvidia-smi."""
        if not os.path.exists(f"{folder}/nvidia-smi"):
            return folder
        copy = tmp_path / f"path{abs(hash(folder))}"
        copy.mkdir()
        for entry in os.listdir(folder):
            if entry != "nvidia-smi":
                (copy / entry).symlink_to(os.path.join(folder, entry))
        return str(copy)

    plain = os.environ["PATH"]
    without = install_lines(":".join(without_nvidia_smi(p) for p in plain.split(":")))
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in without
    assert '|| ' in without and 'pip install "torch==' in without  # the plain pin as fallback
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (fake / "nvidia-smi").chmod(0o755)
    with_gpu = install_lines(f"{fake}:{plain}")
    assert "download.pytorch.org/whl/cpu" not in with_gpu


#: The top level of the repository (DEVELOPERS.md's layout); anything else is a stray file.
TOP_LEVEL = {".ci", ".gitignore", "Makefile", "README.md", "benchmarks", "configs", "conftest.py",
             "environment.yml", "exercises", "jupytext.toml", "lectures", "optimal_scaling",
             "pyproject.toml", "results", "solutions", "tests", "tools"}  # fmt: skip


def test_no_stray_files_are_tracked(root):
    """A pid file, a scratch notebook or a run folder committed by accident fails here."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.split()  # fmt: skip
    stray = sorted({path.split("/")[0] for path in tracked} - TOP_LEVEL)
    assert not stray, f"tracked files outside the layout: {stray}"
    ignored = [p for p in tracked if p.endswith((".pid", ".tmp", ".pyc")) or "/runs/" in p]
    assert not ignored, f"tracked files that should be ignored: {ignored}"


def test_the_readme_training_loop_runs_and_does_what_it_says(root):
    """README's own-training-code example runs as is: Scion's steps are γ·ρ in each tracked
    norm (Spectral up to Newton–Schulz's approximation), and the loss falls towards H."""
    import math

    scope, printed = run_readme_block(
        root, "The optimizers and norm tracking in your own training code")
    assert "entropy rate" in printed
    table, opt, data = scope["tracker"].table, scope["opt"], scope["data"]
    gamma = opt.param_groups[0]["lr"]
    assert set(table.param) == {"embed.weight", "hidden.weight", "head.weight"}
    exact = table[table.param != "hidden.weight"]["update"]
    assert exact.to_numpy() == pytest.approx(gamma, rel=1e-5)
    spectral = table[table.param == "hidden.weight"]["update"]
    assert spectral.to_numpy() == pytest.approx(gamma, rel=0.02)
    loss = scope["loss"].item()
    H, start = data.irreducible_loss, math.log(data.vocab_size)
    assert H < loss < H + 0.25 * (start - H)


def test_the_readme_scaling_law_fit_runs_on_the_committed_sweep(root):
    """README's fitting example runs as is from the repository's root: one point per (N, D)
    cell of the sweep, each estimate inside its own bootstrap interval, and the checklist
    reports the points it was given."""
    import numpy as np

    scope, printed = run_readme_block(root, "Fitting scaling laws to your own runs")
    grid, finals, fit, iso = scope["grid"], scope["finals"], scope["fit"], scope["iso"]
    assert len(finals) == len(grid.groupby(["params", "tokens"])) == finals.val_loss.notna().sum()
    for key in ("alpha", "beta", "a"):
        low, high = fit["intervals"][key]
        assert low <= fit[key] <= high, key
    assert iso["intervals"]["a"][0] <= iso["a"] <= iso["intervals"]["a"][1]
    assert np.isclose(fit["a"] + fit["b"], 1.0)  # C = 6ND: the two exponents sum to one
    assert f"{len(finals)} points" in printed


def test_the_readme_critical_batch_example_runs(root):
    """README's B_crit example runs as is: one fastest run per (target, batch size), and each
    B_crit inside its bootstrap interval and equal to E_min/S_min of its fit."""
    scope, printed = run_readme_block(root, "The critical batch size of your own runs")
    fastest, fit = scope["fastest"], scope["fit"]
    assert not fastest.duplicated(["target", "batch_size"]).any()
    assert set(fastest.target) == {2.5, 2.0}
    low, high = fit.intervals["b_crit"]
    assert low <= fit.b_crit <= high and fit.b_crit == pytest.approx(fit.e_min / fit.s_min)
    assert printed.count("B_crit = ") == 2


def test_the_readme_lecture_09_example_runs(root):
    """README's inference/emergence/test-time example runs as is: no inference demand gives
    Chinchilla's model (saving 0), the cheapest measured run reaches the loss, and pass@k is
    1 − C(n−c, k)/C(n, k) of the samples it drew."""
    from math import comb

    import numpy as np

    scope, printed = run_readme_block(root, "Inference cost, sharp metrics, test-time samples")
    inf, law, tt = scope["inf"], scope["law"], scope["tt"]
    assert inf.inference_optimal(law, 2.0, 0.0).saving.iloc[0] == pytest.approx(0, abs=1e-9)
    assert (inf.cheapest_runs(scope["runs"], 2.0, [0, 1e9]).val_loss <= 2.0).all()
    codes, right = scope["codes"], scope["right"]
    assert codes.shape == (64, 16) and right.shape == (64,)
    c = (codes == right[:, None]).sum(1)
    want = np.mean([1 - comb(16 - ci, 4) / comb(16, 4) for ci in c])
    assert tt.pass_at_k(16, c, k=4).mean() == pytest.approx(want)
    lines = printed.splitlines()
    assert "token_accuracy" in printed and float(lines[-2]) == pytest.approx(want)
