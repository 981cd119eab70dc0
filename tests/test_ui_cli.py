"""``dremioframe-async ui`` in a subprocess: serves, refuses unsafe binds, hashes passwords."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from dremioframe_async.ui import BasicAuth
from dremioframe_async.ui._security import _verify

PIPE = f"{Path(__file__).parent / '_crash_pipeline.py'}:pipeline"
_SCRIPT = Path(sys.executable).with_name("dremioframe-async")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dremioframe_async"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DREMIOFRAME_ASYNC_UI_")}
    return {
        **clean,
        "DREMIOFRAME_ASYNC_STORE": f"sqlite:///{tmp_path / 'runs.sqlite'}",
        "CRASHY_DIR": str(tmp_path),
    }


def test_ui_refuses_a_public_bind_without_auth(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [*COMMAND, "ui", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 2
    assert "refusing to serve the UI on '0.0.0.0' without auth" in proc.stderr


def test_ui_hashes_a_password_from_stdin(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [*COMMAND, "ui", "--hash-password"],
        env=env,
        input="s3cret pass\n",
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    hashed = proc.stdout.strip()
    BasicAuth("ops", hashed)  # well-formed
    assert _verify("s3cret pass", hashed)
    assert not _verify("other", hashed)


def test_ui_serves_the_store_and_stops_on_sigint(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [*COMMAND, "ui", "--port", "0", "--pipeline", PIPE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving the UI at http://127.0.0.1:"), proc.stderr.read()
        assert "auth: none (loopback only)" in line
        assert f"over SQLiteStore({env['DREMIOFRAME_ASYNC_STORE']});" in line  # as given
        url = line.split()[4]
        with urllib.request.urlopen(url + "api/pipelines", timeout=10) as response:
            data = json.load(response)
        assert [p["name"] for p in data["pipelines"]] == ["crashy"]
        with urllib.request.urlopen(url, timeout=10) as response:
            assert "<h1>Runs</h1>" in response.read().decode()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_ui_refuses_an_empty_password(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [*COMMAND, "ui", "--hash-password"],
        env=env,
        input="\n",
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 2
    assert "the password is empty" in proc.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--max-streams", "0"], "max_streams must be >= 1"),
        (["--session-hours", "0"], "session_seconds must be > 0"),
    ],
)
def test_ui_refuses_bad_stream_and_session_settings(
    env: dict[str, str], option: list[str], message: str
) -> None:
    proc = subprocess.run(
        [*COMMAND, "ui", "--port", "0", *option],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
