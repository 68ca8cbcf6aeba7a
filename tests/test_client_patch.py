"""The sliced poll of optimal_scaling.course.execute (the root conftest applies it)."""

import asyncio
import time
from queue import Empty

import pytest

jc = pytest.importorskip("jupyter_client.channels")


class FakeSocket:
    """poll() reports a message only from its ``ready_after``-th call on (a missed wake-up)."""

    def __init__(self, ready_after: int) -> None:
        self.calls, self.ready_after, self.timeouts = 0, ready_after, []

    async def poll(self, timeout_ms: int) -> int:
        self.calls += 1
        self.timeouts.append(timeout_ms)
        if self.calls >= self.ready_after:
            return 1
        await asyncio.sleep(timeout_ms / 1000)
        return 0


class FakeChannel:
    get_msg = jc.AsyncZMQSocketChannel.get_msg  # patched by the root conftest.py

    def __init__(self, socket: FakeSocket) -> None:
        self.socket = socket

    async def _recv(self) -> dict:
        return {"msg": "reply"}


def test_poll_is_sliced_and_returns_the_waiting_message():
    socket = FakeSocket(ready_after=3)
    start = time.monotonic()
    msg = asyncio.run(FakeChannel(socket).get_msg(timeout=60))
    assert msg == {"msg": "reply"} and socket.calls == 3
    assert max(socket.timeouts) <= 250 and time.monotonic() - start < 2


def test_poll_still_times_out():
    socket = FakeSocket(ready_after=10**9)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(FakeChannel(socket).get_msg(timeout=0.6))
    assert 0.55 < time.monotonic() - start < 2
    assert socket.calls >= 3  # 0.25 + 0.25 + 0.1 s


def test_execute_keeps_outputs_and_sets_the_mode(tmp_path):
    import json

    from optimal_scaling.cli import main

    src = tmp_path / "tiny.py"
    src.write_text('# %% [markdown]\n# A tiny notebook\n\n# %%\nimport os\n'
                   'print("fast =", os.environ.get("OPTIMAL_SCALING_FAST"))\n\n# %%\n6 * 7\n')
    out = tmp_path / "ran.ipynb"
    assert main(["execute", str(src), "--out", str(out), "--fast", "--timeout", "60"]) == 0
    cells = json.loads(out.read_text())["cells"]
    assert "".join(cells[1]["outputs"][0]["text"]) == "fast = 1\n"
    assert "".join(cells[2]["outputs"][0]["data"]["text/plain"]) == "42"
    assert main(["execute", str(tmp_path / "missing.ipynb")]) == 2


def test_execute_names_the_failing_cell_and_keeps_what_ran(tmp_path, capsys):
    import json

    from optimal_scaling.cli import main

    src = tmp_path / "broken.py"
    src.write_text('# %%\nx = 6 * 7\nprint(x)\n\n# %%\nraise KeyError("oops")\n\n# %%\nprint(1)\n')
    out = tmp_path / "ran.ipynb"
    assert main(["execute", str(src), "--out", str(out), "--timeout", "60"]) == 1
    err = capsys.readouterr().err
    assert "cell 2 failed (KeyError: 'oops')" in err and str(out) in err  # counted from 1
    assert "Traceback" not in err
    cells = json.loads(out.read_text())["cells"]
    assert "".join(cells[0]["outputs"][0]["text"]) == "42\n"
    assert cells[1]["outputs"][-1]["output_type"] == "error" and not cells[2]["outputs"]
