"""Notebook pairs: every course notebook is a Jupytext percent ``.py`` (the source) plus its
``.ipynb`` (committed without outputs).

``python -m optimal_scaling.course.notebooks sync lectures solutions exercises``
    Rewrite each ``.ipynb`` from its ``.py`` (outputs and widget state dropped). An ``.ipynb``
    that has no ``.py`` yet gets one written from it first.
``python -m optimal_scaling.course.notebooks check lectures solutions exercises``
    Exit 1 and list every problem: a missing pair, a pair whose cells drifted, a committed
    ``.ipynb`` with outputs, execution counts or widget state.

Inside JupyterLab the Jupytext contents manager keeps both files of a pair in step on save
(``jupytext.toml`` sets the pairing), so ``make sync`` is only needed after editing a ``.py``
in a text editor.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterable
from pathlib import Path

import jupytext
import nbformat

PY_FORMAT = "py:percent"


def jupytext_config(path: Path):
    """The ``jupytext.toml`` settings that apply to ``path`` (as JupyterLab would use them)."""
    from jupytext.config import (
        find_jupytext_configuration_file,
        load_jupytext_configuration_file,
    )

    found = find_jupytext_configuration_file(str(Path(path).resolve().parent))
    return load_jupytext_configuration_file(found) if found else None


def to_text(nb: nbformat.NotebookNode, path: Path) -> str:
    """``nb`` as the percent ``.py`` text JupyterLab would save at ``path``."""
    return jupytext.writes(nb, fmt=PY_FORMAT, config=jupytext_config(path))


def read_text(path: Path) -> str:
    """``path``'s text, or a ValueError naming the file: not UTF-8, a folder, unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                         f"{err.start}); save it as UTF-8") from None  # fmt: skip
    except OSError as err:
        raise ValueError(f"{path}: cannot read it ({err.strerror or err})") from None


def read_source(py: Path) -> nbformat.NotebookNode:
    """Read a Jupytext percent ``.py`` file as a notebook (a ValueError names a file that
    cannot be read as text)."""
    return jupytext.reads(read_text(py), fmt=PY_FORMAT)


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop outputs, execution counts and widget state, in place; return ``nb``."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    return nb


def write_pair(nb: nbformat.NotebookNode, py: Path) -> None:
    """Write ``nb`` as ``py`` (percent format) and its paired ``.ipynb`` without outputs."""
    clean(nb)
    nb.metadata.setdefault(
        "kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"}
    )
    write_text(py, to_text(nb, py))
    write_ipynb(nb, py.with_suffix(".ipynb"))


def write_ipynb(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write the ``.ipynb`` of a pair, without outputs; the file is replaced atomically.

    Cell ids are derived from each cell's position and content, so rewriting an unchanged
    notebook gives the same bytes (no diff churn from random ids).
    """
    clean(nb)
    for i, cell in enumerate(nb.cells):
        digest = hashlib.sha1(f"{i}:{cell.cell_type}:{cell.source}".encode()).hexdigest()
        cell["id"] = digest[:8]
    write_text(path, jupytext.writes(nb, fmt="ipynb"))


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8 with ``\\n`` line ends, through a temporary file
    of its own (two writers never share one), so no half-written file is left."""
    from optimal_scaling.results import atomic_write

    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def cell_summary(nb: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    """What must agree between the two files of a pair: each cell's type, source and tags."""
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def notebook_files(dirs: Iterable[str | Path]) -> list[Path]:
    """Every ``.py`` and ``.ipynb`` directly inside ``dirs``."""
    files: list[Path] = []
    for d in map(Path, dirs):
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.suffix in {".py", ".ipynb"})
    return files


def read_ipynb(path: Path) -> nbformat.NotebookNode:
    """``path`` read by nbformat, or a ValueError naming the file (a merge conflict left in
    a committed notebook, a truncated file)."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises JSON, validation and reader errors of its own
        raise ValueError(f"{path}: not a notebook nbformat can read "
                         f"({type(err).__name__}: {str(err).splitlines()[0][:120]})") from err


def problems(dirs: Iterable[str | Path]) -> list[str]:
    """List what is wrong with the notebook pairs in ``dirs`` (empty when all is well)."""
    found: list[str] = []
    files = notebook_files(dirs)
    for path in files:
        twin = path.with_suffix(".ipynb" if path.suffix == ".py" else ".py")
        if not twin.exists():
            found.append(f"{path}: no paired {twin.name} (run `make sync`)")
        if path.suffix != ".ipynb":
            continue
        try:
            nb = read_ipynb(path)
        except ValueError as err:
            found.append(str(err))
            continue
        if "widgets" in nb.metadata:
            found.append(f"{path}: holds widget state (run `make sync`)")
        for i, cell in enumerate(nb.cells, start=1):
            if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
                found.append(f"{path}: cell {i} holds outputs or an execution count")
                break
        try:
            drifted = twin.exists() and cell_summary(read_source(twin)) != cell_summary(nb)
        except ValueError as err:  # the .py is not UTF-8 text, or a folder
            found.append(str(err))
            continue
        if drifted:
            found.append(f"{path}: differs from {twin.name} (run `make sync`)")
    return found


def sync(dirs: Iterable[str | Path]) -> list[Path]:
    """Rewrite every ``.ipynb`` from its ``.py``; return the files written."""
    written: list[Path] = []
    for path in notebook_files(dirs):
        if path.suffix == ".ipynb" and not path.with_suffix(".py").exists():
            write_pair(read_ipynb(path), path.with_suffix(".py"))
            written.append(path.with_suffix(".py"))
    for path in notebook_files(dirs):
        if path.suffix == ".py":
            write_ipynb(read_source(path), path.with_suffix(".ipynb"))
            written.append(path.with_suffix(".ipynb"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m optimal_scaling.course.notebooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["sync", "check"])
    parser.add_argument("dirs", nargs="+", help="folders holding notebook pairs")
    args = parser.parse_args(argv)
    missing = [d or "''" for d in args.dirs if not d or not Path(d).is_dir()]  # "": not "."
    if missing:
        print(f"{args.command}: not a folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.command == "sync":
        try:
            written = sync(args.dirs)
        except ValueError as err:
            print(f"sync: {err}", file=sys.stderr)
            return 2
        for path in written:
            print(f"wrote {path}")
        return 0
    found = problems(args.dirs)
    for line in found:
        print(line, file=sys.stderr)
    print(f"{len(found)} notebook problem(s)" if found else "notebook pairs: all in sync")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
