"""The task library's public names, error tree, credentials and redaction helpers."""

from __future__ import annotations

import pytest

import dremioframe_async.tasks as tasks
from dremioframe_async import DremioFrameError, Task
from dremioframe_async.tasks import Credential, TaskLibraryError
from dremioframe_async.tasks._common import redact, redact_url, setting

LIBRARY_TASKS = [
    "DataQualityTask",
    "DbtTask",
    "EmailTask",
    "HttpTask",
    "S3Task",
    "ShellTask",
    "SlackAlertTask",
]
LIBRARY_ERRORS = [
    "DataQualityConfigError",
    "DataQualityFailed",
    "DbtError",
    "EmailError",
    "EmailTransientError",
    "HttpConnectionError",
    "HttpError",
    "HttpStatusError",
    "HttpTransientError",
    "S3Error",
    "S3IntegrityError",
    "S3TransientError",
    "ShellCommandFailed",
]


def test_all_is_pinned_and_sorted() -> None:
    for name in [*LIBRARY_TASKS, *LIBRARY_ERRORS, "Credential", "TaskLibraryError"]:
        assert name in tasks.__all__
    assert all(hasattr(tasks, n) for n in tasks.__all__)
    assert len(set(tasks.__all__)) == len(tasks.__all__)


@pytest.mark.parametrize("name", LIBRARY_TASKS)
def test_every_library_task_is_a_task(name: str) -> None:
    assert issubclass(getattr(tasks, name), Task)


@pytest.mark.parametrize("name", LIBRARY_ERRORS)
def test_every_library_error_derives_from_the_roots(name: str) -> None:
    cls = getattr(tasks, name)
    assert issubclass(cls, TaskLibraryError)
    assert issubclass(cls, DremioFrameError)


def test_credential_lookup_order_and_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DF_TOKEN", "from-env")
    both = Credential.from_context("token", env="DF_TOKEN")
    assert both.get({"token": "from-ctx"}) == "from-ctx"
    assert both.get({}) == "from-env"
    assert Credential("literal-value").get() == "literal-value"
    assert Credential.from_env("DF_MISSING_VAR").get() is None
    shown = repr(Credential("literal-value")) + repr(both)
    assert "literal-value" not in shown
    assert "from-env" not in shown
    assert "DF_TOKEN" in shown


def test_setting_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DF_HOST", "env-host")
    assert setting("given", {"host": "ctx"}, "host", "DF_HOST") == "given"
    assert setting(None, {"host": "ctx"}, "host", "DF_HOST") == "ctx"
    assert setting(None, {}, "host", "DF_HOST") == "env-host"
    monkeypatch.delenv("DF_HOST")
    assert setting(None, None, "host", "DF_HOST", "default") == "default"


def test_redaction() -> None:
    assert redact("token abcd1234 and abcd1234", ["abcd1234", None, "ab"]) == "token *** and ***"
    assert redact_url("https://u:pw@h/p?api_key=k&page=2") == "https://u:***@h/p?api_key=***&page=2"
    assert redact_url("https://tok@h/p") == "https://***@h/p"
    assert redact_url("http://[bad") == "***"


def test_asyncio_only_tasks_say_so_under_trio() -> None:
    import trio

    from dremioframe_async import Pipeline
    from dremioframe_async.tasks import EmailTask, HttpTask, S3Task

    made = [
        HttpTask("http", "http://127.0.0.1:9/"),
        EmailTask("mail", "a@example.com", "s", "b"),
        S3Task("s3", "list", "bucket"),
    ]

    async def main():
        pipeline = Pipeline("p")
        for t in made:
            pipeline.add_task(t)
        return await pipeline.run()

    result = trio.run(main)
    for key in ("http", "mail", "s3"):
        assert "needs asyncio (not trio)" in str(result.tasks[key].error)
