import subprocess
import sys
import textwrap

import jupytext
import pytest

from optimal_scaling.course.exercises import (
    ExerciseError,
    build,
    exercise_notebook,
    main,
    strip_solutions,
)

HEADER = "# %%\n"


def strip(text: str) -> str:
    return strip_solutions(textwrap.dedent(text), "sol.py")


def test_region_inside_function_body_keeps_indentation_and_hint():
    out = strip(
        """\
        def f(x):
            y = x + 1
            # BEGIN SOLUTION
            # HINT: double it
            z = 2 * y
            # END SOLUTION
            return z
        """
    )
    assert out == textwrap.dedent(
        """\
        def f(x):
            y = x + 1
            raise NotImplementedError('double it')
            return z
        """
    )


def test_nested_indentation():
    out = strip(
        """\
        class A:
            def f(self, xs):
                for x in xs:
                    if x:
                        # BEGIN SOLUTION
                        print(x)
                        # END SOLUTION
                return xs
        """
    )
    assert "                raise NotImplementedError(" in out
    assert "print" not in out
    compile(out, "out", "exec")  # still valid Python


def test_several_regions_in_one_cell():
    src = """\
        def f():
            # BEGIN SOLUTION
            # HINT: first
            return 1
            # END SOLUTION


        def g():
            # BEGIN SOLUTION
            return 2
            # END SOLUTION
        """
    out = strip(src)
    assert out.count("raise NotImplementedError") == 2
    assert "'first'" in out and "replace this line with your code" in out
    assert "return 1" not in out and "return 2" not in out
    namespace = {}
    exec(out, namespace)
    for name in "fg":
        with pytest.raises(NotImplementedError):
            namespace[name]()


def test_several_hint_lines_join():
    lines = ["def f():", "# BEGIN SOLUTION", "# HINT: a", "# HINT: b", "pass", "# END SOLUTION"]
    out = strip("\n    ".join(lines) + "\n")
    assert "raise NotImplementedError('a b')" in out


@pytest.mark.parametrize(
    "src, needle",
    [
        (
            "x = 1\ndef f():\n    # BEGIN SOLUTION\n    return 1\n",
            "sol.py:3: '# BEGIN SOLUTION' has no matching",
        ),
        (
            "def f():\n    return 1\n    # END SOLUTION\n",
            "sol.py:3: '# END SOLUTION' without a BEGIN",
        ),
        (
            "def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n",
            "sol.py:3: '# BEGIN SOLUTION' inside the region opened at line 2",
        ),
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "sol.py:1: solution region at the top level"),
        (
            "def f():\n    # Begin Solution\n    return 1\n    # END SOLUTION\n",
            "sol.py:2: write the marker exactly",
        ),
        (  # accepted as a plain comment, this would leave the solution in the exercise
            "def f():\n    # BEGIN_SOLUTION\n    return 1\n    # END_SOLUTION\n",
            "sol.py:2: write the marker exactly",
        ),
        (
            "def f():\n    # BEGIN-SOLUTION\n    return 1\n    # END SOLUTION\n",
            "sol.py:2: write the marker exactly",
        ),
        (
            "def f():\n    # BEGIN SOLUTION\n    return 1\n# %%\nx = 2\n    # END SOLUTION\n",
            "sol.py:4: a new cell inside the solution region opened at line 2",
        ),
    ],
)
def test_malformed_markers_name_file_and_line(src, needle):
    with pytest.raises(ExerciseError) as err:
        strip_solutions(src, "sol.py")
    assert needle in str(err.value)


SOLUTION = """\
# %% [markdown]
# Intro

# %%
def f(x):
    # BEGIN SOLUTION
    return x + 1
    # END SOLUTION

# %% tags=["solution"]
print("the answer is", f(1))

# %%
print("done")
"""


def test_solution_tagged_cells_are_dropped(tmp_path):
    sol = tmp_path / "01_x.py"
    sol.write_text(SOLUTION + '\n# %% tags=["check"]\nprint("self-check")\n')
    nb = exercise_notebook(sol)
    sources = [c.source for c in nb.cells]
    assert not any("the answer is" in s for s in sources)
    assert any('print("done")' in s for s in sources)
    # only the "solution" tag drops a cell: a cell with another tag stays, tag and all
    kept = [c for c in nb.cells if 'print("self-check")' in c.source]
    assert len(kept) == 1 and kept[0].metadata["tags"] == ["check"]
    assert "generated from `solutions/01_x.py`" in sources[0]


def test_build_then_check_detects_stale(tmp_path):
    sols, exs = tmp_path / "solutions", tmp_path / "exercises"
    sols.mkdir()
    (sols / "01_x.py").write_text(SOLUTION)
    assert build(sols, exs, check=True) == [
        f"{exs / '01_x.py'}: stale, regenerate with `make exercises`"
    ]
    assert build(sols, exs) == []
    assert (exs / "01_x.ipynb").exists()
    assert build(sols, exs, check=True) == []
    # the generated notebook reads back with the stub in place
    assert "raise NotImplementedError" in jupytext.read(exs / "01_x.py").cells[2].source
    (sols / "01_x.py").write_text(SOLUTION.replace("x + 1", "x + 2"))
    assert build(sols, exs, check=True) == []  # the solution body is hidden: still up to date
    (sols / "01_x.py").write_text(SOLUTION.replace('print("done")', 'print("finished")'))
    assert len(build(sols, exs, check=True)) == 1
    # an edited ipynb is stale too
    build(sols, exs)
    nb_path = exs / "01_x.ipynb"
    nb_path.write_text(nb_path.read_text().replace("finished", "edited by hand"))
    assert build(sols, exs, check=True) == [f"{nb_path}: stale, regenerate with `make exercises`"]
    # an exercise whose solution is gone is reported, then removed on rebuild, notebook too
    (sols / "02_y.py").write_text(SOLUTION)
    build(sols, exs)
    assert (exs / "02_y.py").exists() and (exs / "02_y.ipynb").exists()
    (sols / "02_y.py").unlink()
    assert build(sols, exs, check=True) == [
        f"{exs / '02_y.py'}: has no solution {sols / '02_y.py'}"
    ]
    build(sols, exs)
    assert not (exs / "02_y.py").exists()
    assert not (exs / "02_y.ipynb").exists()
    assert build(sols, exs, check=True) == []


def test_check_reports_a_missing_notebook(tmp_path):
    sols, exs = tmp_path / "solutions", tmp_path / "exercises"
    sols.mkdir()
    (sols / "01_x.py").write_text(SOLUTION)
    build(sols, exs)
    (exs / "01_x.ipynb").unlink()
    assert build(sols, exs, check=True) == [
        f"{exs / '01_x.ipynb'}: stale, regenerate with `make exercises`"
    ]


def test_main_check_exit_status(tmp_path, capsys):
    """``--check`` exits 1 while an exercise is stale (CI relies on it), 0 once rebuilt."""
    sols, exs = tmp_path / "solutions", tmp_path / "exercises"
    sols.mkdir()
    (sols / "01_x.py").write_text(SOLUTION)
    assert main([str(sols), str(exs)]) == 0
    assert main([str(sols), str(exs), "--check"]) == 0
    (sols / "01_x.py").write_text(SOLUTION.replace('print("done")', 'print("finished")'))
    assert main([str(sols), str(exs), "--check"]) == 1
    assert "1 stale exercise(s)" in capsys.readouterr().out
    assert main([str(sols), str(exs)]) == 0
    assert main([str(sols), str(exs), "--check"]) == 0


def test_build_refuses_folders_given_the_other_way_round(tmp_path):
    """Writing exercises deletes orphans and overwrites: a folder holding hand-written
    notebooks (the solutions, swapped by mistake) is refused and left as it was."""
    sols, exs = tmp_path / "solutions", tmp_path / "exercises"
    sols.mkdir()
    (sols / "01_x.py").write_text(SOLUTION)
    build(sols, exs)
    before = {p.name: p.read_bytes() for p in sols.iterdir()}
    with pytest.raises(ExerciseError, match="not a generated exercise.*other way round"):
        build(exs, sols)
    assert {p.name: p.read_bytes() for p in sols.iterdir()} == before
    assert build(sols, exs, check=True) == []


def test_cli_reports_bad_marker(tmp_path):
    sols = tmp_path / "solutions"
    sols.mkdir()
    (sols / "01_x.py").write_text("# %%\ndef f():\n    # BEGIN SOLUTION\n    return 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "optimal_scaling.course.exercises", str(sols), str(tmp_path / "ex")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert f"{sols / '01_x.py'}:3: '# BEGIN SOLUTION' has no matching" in out.stderr
    assert "Traceback" not in out.stderr


def test_course_exercises_are_up_to_date(root):
    assert build(root / "solutions", root / "exercises", check=True) == []


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def test_exercises_into_a_file_is_one_line_not_a_traceback(tmp_path, capsys):
    """``--exercises`` naming a file: 'exercises: … is not a folder', exit 2, file kept."""
    sols, exs = tmp_path / "solutions", tmp_path / "exfile"
    sols.mkdir()
    (sols / "01_x.py").write_text(SOLUTION)
    exs.write_text("mine")
    for check in ([], ["--check"]):
        assert main([str(sols), str(exs), *check]) == 2
        assert capsys.readouterr().err == (f"exercises: {exs} is not a folder; the exercises "
                                           "go into one\n")  # fmt: skip
    assert exs.read_text() == "mine"


def test_a_solution_not_utf8_is_named_and_nothing_is_written(tmp_path, capsys):
    """A solution that is not UTF-8 text: one 'exercises: FILE: not UTF-8 text' line, exit 2;
    the exercises made from the other solutions are not written either (nor orphans removed)."""
    sols, exs = tmp_path / "solutions", tmp_path / "exercises"
    sols.mkdir()
    (sols / "01_x.py").write_text(SOLUTION)
    (sols / "03_z.py").write_text(SOLUTION)
    assert main([str(sols), str(exs)]) == 0
    (sols / "03_z.py").unlink()  # its exercise is an orphan now
    (sols / "01_x.py").write_text(SOLUTION.replace("Intro", "Introduction"))
    (sols / "02_y.py").write_bytes(b"# %%\nx = '\xff'\n")
    before = _snapshot(exs)
    for check in ([], ["--check"]):
        assert main([str(sols), str(exs), *check]) == 2
        assert capsys.readouterr().err == (f"exercises: {sols / '02_y.py'}: not UTF-8 text "
                                           "(byte 0xff at offset 10); save it as UTF-8\n")
    assert _snapshot(exs) == before


def test_an_exercise_not_utf8_is_refused_or_stale(tmp_path, capsys):
    """A non-UTF-8 .py in the exercises folder was not generated: writing refuses to overwrite
    it (exit 2, 'exercises: ' and the file named), ``--check`` lists it as stale (exit 1)."""
    sols, exs = tmp_path / "solutions", tmp_path / "exercises"
    sols.mkdir()
    (sols / "01_x.py").write_text(SOLUTION)
    exs.mkdir()
    (exs / "01_x.py").write_bytes(b"\xff\xfe")
    assert main([str(sols), str(exs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"exercises: {exs / '01_x.py'} is not a generated exercise")
    assert main([str(sols), str(exs), "--check"]) == 1
    assert f"{exs / '01_x.py'}: stale, regenerate" in capsys.readouterr().err
    assert _snapshot(exs) == {"01_x.py": b"\xff\xfe"}


def test_check_lists_an_unreadable_exercise_notebook(tmp_path, capsys):
    """``--check`` with a corrupt exercise .ipynb (a merge conflict): a stale line that names
    the file and why, exit 1, no traceback; nothing is written."""
    sols, exs = tmp_path / "solutions", tmp_path / "exercises"
    sols.mkdir()
    (sols / "01_x.py").write_text(SOLUTION)
    assert main([str(sols), str(exs)]) == 0
    (exs / "01_x.ipynb").write_text("<<<<<<< HEAD\n{")
    before = _snapshot(exs)
    assert main([str(sols), str(exs), "--check"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{exs / '01_x.ipynb'}: not a notebook nbformat can read (NotJSON")
    assert "; regenerate with `make exercises`\n" in err and _snapshot(exs) == before


def test_errors_are_prefixed_with_the_command(tmp_path, capsys):
    """A malformed marker reads 'exercises: FILE:LINE: …', as every other command's errors."""
    sols = tmp_path / "solutions"
    sols.mkdir()
    (sols / "01_x.py").write_text("# %%\ndef f():\n    # END SOLUTION\n")
    assert main([str(sols), str(tmp_path / "ex")]) == 2
    assert capsys.readouterr().err == (f"exercises: {sols / '01_x.py'}:3: '# END SOLUTION' "
                                       "without a BEGIN\n")  # fmt: skip
    assert not (tmp_path / "ex").exists()
