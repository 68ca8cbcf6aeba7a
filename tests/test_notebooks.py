import json
import shutil

import pytest

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
