"""`make lab` serves the course, with the Jupytext .py files opening as notebooks."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

TOKEN = "course-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_serves_lecture_00(root):
    port = free_port()
    args = f"--no-browser --port {port} --ServerApp.ip=127.0.0.1 --IdentityProvider.token={TOKEN}"
    proc = subprocess.Popen(
        ["make", "-s", "lab", f"LAB_ARGS={args}"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if get(f"{base}/api/status?token={TOKEN}")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not come up within 60 s")
        for name in ("00_welcome.ipynb", "00_welcome.py"):
            status, body = get(f"{base}/api/contents/lectures/{name}?token={TOKEN}")
            model = json.loads(body)
            assert status == 200 and model["type"] == "notebook", name
            assert model["content"]["cells"][0]["source"].startswith("# 00 · Welcome")
        assert get(f"{base}/lab/tree/lectures/00_welcome.ipynb?token={TOKEN}")[0] == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
