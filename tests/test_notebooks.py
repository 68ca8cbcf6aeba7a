import json
import shutil
import textwrap
from pathlib import Path

import pytest

from optimal_scaling.cli import main
from optimal_scaling.course import notebooks

FOLDERS = ["lectures", "solutions", "exercises"]


def test_course_notebooks_are_clean_pairs(root):
    assert notebooks.problems([root / f for f in FOLDERS]) == []
    for folder in FOLDERS:
        assert list((root / folder).glob("*.ipynb")), f"{folder} has no notebooks"


@pytest.fixture
def pair(root, tmp_path):
    """A copy of lecture 00's pair in a temporary folder."""
    for suffix in (".py", ".ipynb"):
        shutil.copy(root / "lectures" / f"00_welcome{suffix}", tmp_path / f"00_welcome{suffix}")
    assert notebooks.problems([tmp_path]) == []
    return tmp_path / "00_welcome.py", tmp_path / "00_welcome.ipynb"


def edit(ipynb, fn):
    nb = json.loads(ipynb.read_text())
    fn(nb)
    ipynb.write_text(json.dumps(nb))


def first_code(nb):
    return next(c for c in nb["cells"] if c["cell_type"] == "code")


def test_drift_is_detected_and_sync_repairs_it(pair):
    py, ipynb = pair
    py.write_text(py.read_text().replace("import pandas as pd", "import pandas as pd  # edited"))
    assert notebooks.problems([py.parent]) == [f"{ipynb}: differs from {py.name} (run `make sync`)"]
    notebooks.sync([py.parent])
    assert notebooks.problems([py.parent]) == []


def test_outputs_are_detected(pair):
    _, ipynb = pair
    edit(
        ipynb,
        lambda nb: first_code(nb).update(
            outputs=[{"output_type": "stream", "name": "stdout", "text": "hi"}]
        ),
    )
    assert any("holds outputs" in p for p in notebooks.problems([ipynb.parent]))


def test_execution_count_is_detected(pair):
    _, ipynb = pair
    edit(ipynb, lambda nb: first_code(nb).update(execution_count=3))
    assert any(
        "holds outputs or an execution count" in p for p in notebooks.problems([ipynb.parent])
    )


def test_widget_state_is_detected_and_stripped(pair):
    _, ipynb = pair
    edit(
        ipynb,
        lambda nb: nb["metadata"].update(widgets={"application/vnd.jupyter.widget-state+json": {}}),
    )
    assert any("widget state" in p for p in notebooks.problems([ipynb.parent]))
    notebooks.sync([ipynb.parent])
    assert notebooks.problems([ipynb.parent]) == []


def test_missing_pair_is_detected_and_sync_creates_it(pair):
    py, ipynb = pair
    py.unlink()
    assert notebooks.problems([ipynb.parent]) == [f"{ipynb}: no paired {py.name} (run `make sync`)"]
    notebooks.sync([ipynb.parent])
    assert py.exists() and notebooks.problems([ipynb.parent]) == []
    ipynb.unlink()
    assert notebooks.problems([py.parent]) == [f"{py}: no paired {ipynb.name} (run `make sync`)"]


def test_sync_strips_outputs(pair):
    _, ipynb = pair
    edit(ipynb, lambda nb: first_code(nb).update(execution_count=1))
    notebooks.sync([ipynb.parent])
    assert all(c.get("execution_count") is None for c in json.loads(ipynb.read_text())["cells"])


def test_no_notebook_hard_codes_a_device(root):
    """Notebooks take their device from osc.config.device(), never `.cuda()` or "cuda"."""
    offenders = []
    for folder in FOLDERS:
        for py in (root / folder).glob("*.py"):
            for lineno, line in enumerate(py.read_text().splitlines(), start=1):
                code = line.split("#", 1)[0]
                if ".cuda(" in code or "device='cuda'" in code or 'device="cuda"' in code:
                    offenders.append(f"{py.relative_to(root)}:{lineno}")
    assert offenders == []


def test_sync_is_byte_stable(pair):
    """Rewriting an unchanged pair changes nothing (cell ids come from content, not chance)."""
    _, ipynb = pair
    notebooks.sync([ipynb.parent])
    first = ipynb.read_bytes()
    notebooks.sync([ipynb.parent])
    assert ipynb.read_bytes() == first


def _pair(folder: Path, name: str = "n", tags: str = "") -> None:
    from optimal_scaling.course import notebooks

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(f"# %%{tags}\nx = 1\n")
    notebooks.sync([folder])


def test_check_command_exit_status_and_default_folders(tmp_path, monkeypatch, capsys):
    """C46, C47, N05: `optimal-scaling check` looks at lectures, solutions and exercises,
    exits 1 on a problem, 0 when clean; `sync` writes the missing .ipynb."""
    monkeypatch.chdir(tmp_path)
    for folder in ("lectures", "solutions", "exercises"):
        _pair(tmp_path / folder)
    assert main(["check"]) == 0
    (tmp_path / "exercises" / "extra.py").write_text("# %%\ny = 2\n")
    assert main(["check"]) == 1
    assert "extra.py: no paired extra.ipynb" in capsys.readouterr().err
    assert main(["sync", "exercises"]) == 0
    assert (tmp_path / "exercises" / "extra.ipynb").is_file()
    assert main(["check"]) == 0


def test_check_compares_cell_tags(tmp_path):
    """N07: tags belong to what must agree between the two files of a pair (a `solution`
    tag decides what an exercise keeps)."""
    from optimal_scaling.course import notebooks

    _pair(tmp_path)
    (tmp_path / "n.py").write_text('# %% tags=["solution"]\nx = 1\n')
    assert notebooks.problems([tmp_path]) == [
        f"{tmp_path / 'n.ipynb'}: differs from n.py (run `make sync`)"
    ]


def test_check_refuses_a_missing_folder(tmp_path, capsys):
    """N06: a folder that does not exist is a usage error, not "all in sync": one line that
    names the command and the folder, exit 2 returned (not another program's usage)."""
    for command in ("check", "sync"):
        assert main([command, str(tmp_path / "nope")]) == 2
        assert capsys.readouterr().err == f"{command}: not a folder: {tmp_path / 'nope'}\n"
    assert main(["exercises", "--solutions", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"exercises: not a folder: {tmp_path / 'nope'}\n"


def test_an_unreadable_notebook_is_a_problem_line_not_a_traceback(tmp_path, capsys):
    """A merge conflict left in a committed .ipynb: `check` lists it and goes on to the other
    pairs (exit 1); `sync`, which must read a notebook without its .py, says so (exit 2)."""
    (tmp_path / "bad.ipynb").write_text("{not json")
    (tmp_path / "bad.py").write_text("# %%\n")
    assert main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.ipynb'}: not a notebook nbformat can read (NotJSONError" in err
    (tmp_path / "bad.py").unlink()
    assert main(["sync", str(tmp_path)]) == 2
    assert "sync: " in capsys.readouterr().err and not (tmp_path / "bad.py").exists()


def test_exercises_check_only_checks(tmp_path, capsys):
    """C45: `exercises --check` reports stale exercises (exit 1) and writes nothing."""
    sols, exs = tmp_path / "solutions", tmp_path / "exercises"
    sols.mkdir()
    (sols / "01_x.py").write_text(textwrap.dedent("""\
        # %%
        def f(x):
            # BEGIN SOLUTION
            return x + 1
            # END SOLUTION
        """))
    args = ["exercises", "--solutions", str(sols), "--exercises", str(exs)]
    assert main([*args, "--check"]) == 1
    assert not exs.exists() or not any(exs.iterdir())
    assert main(args) == 0 and (exs / "01_x.py").is_file()
    assert main([*args, "--check"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("damage, why", [
    (lambda py: py.write_bytes(b"\xff\x00binary"), "not UTF-8 text (byte 0xff at offset 0)"),
    (lambda py: py.mkdir(), "cannot read it (Is a directory)"),
])  # fmt: skip
def test_a_py_that_cannot_be_read_is_named(tmp_path, capsys, damage, why):
    """A pair's .py that is binary or a folder: `check` lists it (exit 1), `sync` says so in
    one line (exit 2); both name the file, and the .ipynb is left as it was."""
    _pair(tmp_path, "x")
    py, ipynb = tmp_path / "x.py", tmp_path / "x.ipynb"
    py.unlink()
    damage(py)
    before = ipynb.read_bytes()
    assert main(["check", str(tmp_path)]) == 1
    assert f"{py}: {why}" in capsys.readouterr().err
    assert main(["sync", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"sync: {py}: {why}")
    assert ipynb.read_bytes() == before


def test_an_empty_folder_name_is_not_the_current_folder(tmp_path, monkeypatch, capsys):
    """`python -m optimal_scaling.course.notebooks sync ""` (and exercises): refused, not run
    on the current folder (Path("") is ".")."""
    from optimal_scaling.course import exercises

    monkeypatch.chdir(tmp_path)
    (tmp_path / "n.py").write_text("# %%\nx = 1\n")
    assert notebooks.main(["sync", ""]) == 2
    assert capsys.readouterr().err == "sync: not a folder: ''\n"
    (tmp_path / "solutions").mkdir()
    assert exercises.main(["solutions", ""]) == 2
    assert capsys.readouterr().err == "exercises: a folder name is empty\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.py", "solutions"]
