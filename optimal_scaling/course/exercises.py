"""Generate exercise notebooks from solution notebooks.

``solutions/NN_topic.py`` is the only file a course author edits. This module turns it into
``exercises/NN_topic.py`` (and its paired ``.ipynb``):

* every region between a ``# BEGIN SOLUTION`` line and a ``# END SOLUTION`` line becomes a
  single ``raise NotImplementedError("...")`` at the indentation of the ``BEGIN`` line;
  ``# HINT: ...`` lines inside the region become the error's message;
* every cell tagged ``solution`` (``# %% tags=["solution"]``) is dropped.

A region must sit inside a function (or another block): a bare ``raise`` at the top of a cell
would stop the exercise notebook, and exercise notebooks must run top to bottom, with their
self-checks reporting "not attempted yet".

Usage::

    python -m optimal_scaling.course.exercises solutions exercises          # write
    python -m optimal_scaling.course.exercises solutions exercises --check  # exit 1 if stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
from nbformat.v4 import new_markdown_cell

from optimal_scaling.course.notebooks import (
    PY_FORMAT,
    cell_summary,
    clean,
    read_ipynb,
    read_text,
    to_text,
    write_ipynb,
    write_text,
)

BEGIN = re.compile(r"^(?P<indent>\s*)#\s*BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*#\s*END SOLUTION\s*$")
HINT = re.compile(r"^\s*#\s*HINT:\s?(?P<text>.*)$")
NEAR_MISS = re.compile(r"^\s*#\s*(BEGIN|END)[\s_-]*SOLUTION", re.IGNORECASE)  # "# Begin Solution"
CELL = re.compile(r"^#\s*%%")
DEFAULT_MESSAGE = "Exercise: replace this line with your code."
SOLUTION_TAG = "solution"


class ExerciseError(ValueError):
    """A solution file whose solution markers are malformed."""


def strip_solutions(text: str, filename: str = "<text>") -> str:
    """Replace every ``# BEGIN SOLUTION`` … ``# END SOLUTION`` region of ``text`` by a stub.

    Errors name the file and the 1-based line: an ``END`` without ``BEGIN``, a ``BEGIN``
    inside an open region, a region never closed, a region at the top level of a cell, a
    region that runs into the next cell, or a marker spelled differently (which would leak).
    """
    out: list[str] = []
    start: int | None = None  # line number of the open region's BEGIN
    indent = ""
    hints: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if not (begin or end) and NEAR_MISS.match(line):  # it would leak the solution
            raise ExerciseError(f"{filename}:{lineno}: write the marker exactly as '# BEGIN "
                                f"SOLUTION' or '# END SOLUTION', got {line.strip()!r}")  # fmt: skip
        if start is not None and CELL.match(line):
            raise ExerciseError(f"{filename}:{lineno}: a new cell inside the solution region "
                                f"opened at line {start}; close it first")  # fmt: skip
        if start is None:
            if end:
                raise ExerciseError(f"{filename}:{lineno}: '# END SOLUTION' without a BEGIN")
            if begin:
                start, indent, hints = lineno, begin["indent"], []
                if not indent:
                    raise ExerciseError(
                        f"{filename}:{lineno}: solution region at the top level of a cell; "
                        "put it inside a function so the exercise notebook still runs"
                    )
            else:
                out.append(line)
            continue
        if begin:
            raise ExerciseError(
                f"{filename}:{lineno}: '# BEGIN SOLUTION' inside the region opened at line {start}"
            )
        if end:
            message = " ".join(hints) if hints else DEFAULT_MESSAGE
            out.append(f"{indent}raise NotImplementedError({message!r})\n")
            start = None
        elif hint := HINT.match(line):
            hints.append(hint["text"].strip())
    if start is not None:
        raise ExerciseError(
            f"{filename}:{start}: '# BEGIN SOLUTION' has no matching '# END SOLUTION'"
        )
    return "".join(out)


def _banner(solution: Path) -> str:
    return (
        f"*Exercise notebook, generated from `solutions/{solution.name}` by `make exercises`.*\n"
        "Fill in every function that raises `NotImplementedError`, then run its self-check;\n"
        "keep the functions' parameter names (the self-checks pass arguments by name), and\n"
        "compare with the solution notebook when you are done."
    )


def exercise_notebook(solution: Path):
    """The exercise version of a solution ``.py`` file, as a notebook object."""
    text = strip_solutions(read_text(solution), filename=str(solution))
    nb = jupytext.reads(text, fmt=PY_FORMAT)
    nb.cells = [c for c in nb.cells if SOLUTION_TAG not in c.metadata.get("tags", ())]
    nb.cells.insert(0, new_markdown_cell(_banner(solution)))
    return clean(nb)


def _refuse_non_exercises(exercises: Path) -> None:
    """Writing replaces and deletes files in ``exercises``: refuse if any ``.py`` there was not
    generated (the two folders given the other way round would overwrite the solutions)."""
    mark = "generated from `solutions/"
    for path in sorted(exercises.glob("*.py")) if exercises.is_dir() else []:
        if mark not in path.read_text(encoding="utf-8", errors="replace")[:4000]:
            raise ExerciseError(f"{path} is not a generated exercise (no '{mark}…' banner); "
                             f"refusing to overwrite {exercises}: are the solutions and "
                             "exercises folders the other way round?")  # fmt: skip


def build(solutions: Path, exercises: Path, check: bool = False) -> list[str]:
    """Write every exercise (or, with ``check``, only compare); return what is stale.

    Writing also removes exercises whose solution no longer exists. Every exercise is made
    before any file is written or removed, so a solution that fails changes nothing.
    """
    stale: list[str] = []
    sources = sorted(solutions.glob("*.py"))
    made = [(exercises / s.name, exercise_notebook(s)) for s in sources]
    wanted = {s.name for s in sources}
    if not check:
        _refuse_non_exercises(exercises)
    for orphan in sorted(exercises.glob("*.py")) if exercises.is_dir() else []:
        if orphan.name not in wanted:
            if check:
                stale.append(f"{orphan}: has no solution {solutions / orphan.name}")
            else:
                orphan.unlink()
                orphan.with_suffix(".ipynb").unlink(missing_ok=True)
    for target, nb in made:
        ipynb = target.with_suffix(".ipynb")
        text = to_text(nb, target)
        if not check:
            exercises.mkdir(parents=True, exist_ok=True)
            write_text(target, text)
            write_ipynb(nb, ipynb)
        elif not target.is_file() or target.read_text("utf-8", errors="replace") != text:
            stale.append(f"{target}: stale, regenerate with `make exercises`")
        else:
            try:
                same = ipynb.is_file() and cell_summary(read_ipynb(ipynb)) == cell_summary(nb)
            except ValueError as err:  # a merge conflict, a truncated file
                stale.append(f"{err}; regenerate with `make exercises`")
                continue
            if not same:
                stale.append(f"{ipynb}: stale, regenerate with `make exercises`")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optimal_scaling.course.exercises",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("solutions")
    parser.add_argument("exercises")
    parser.add_argument("--check", action="store_true", help="fail if any exercise is stale")
    args = parser.parse_args(argv)
    if "" in (args.solutions, args.exercises):  # Path("") would be the current folder
        print("exercises: a folder name is empty", file=sys.stderr)
        return 2
    solutions, exercises = Path(args.solutions), Path(args.exercises)
    if not solutions.is_dir():
        print(f"exercises: not a folder: {solutions}", file=sys.stderr)
        return 2
    if exercises.exists() and not exercises.is_dir():
        print(f"exercises: {exercises} is not a folder; the exercises go into one",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        stale = build(solutions, exercises, check=args.check)
    except (ValueError, OSError) as err:  # ExerciseError, a file not UTF-8 or unreadable
        print(f"exercises: {err}", file=sys.stderr)
        return 2
    for line in stale:
        print(line, file=sys.stderr)
    if args.check:
        print(f"{len(stale)} stale exercise(s)" if stale else "exercises: up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
