"""Store building blocks: result/error encoding, owners, URLs, the public names."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

import dremioframe_async.store as store_pkg
from dremioframe_async import DremioFrameError
from dremioframe_async.store import (
    MemoryStore,
    PostgresStore,
    RunStore,
    SQLiteStore,
    StoreConfigError,
    StoreURLError,
    default_store_url,
    open_store,
)
from dremioframe_async.store._codec import encode_error, encode_result
from dremioframe_async.store._errors import redact
from dremioframe_async.store._owner import current_owner, is_dead


class Custom:
    pass


@pytest.mark.parametrize(
    ("value", "stored", "type_name"),
    [
        (None, True, None),
        ({"a": [1, 2.5, "x", None, True]}, True, "dict"),
        ("text", True, "str"),
        ('quote " \\ \u00e9 \ud800', True, "str"),
        (7, True, "int"),
        (10**40, True, "int"),
        (True, True, "bool"),
        (0.1, True, "float"),
        (-0.0, True, "float"),
        (1e300, True, "float"),
        ((1, 2), False, "tuple"),
        ({1: "int key"}, False, "dict"),
        (math.nan, False, "float"),
        (math.inf, False, "float"),
        (10**5000, False, "int"),
        (Custom(), False, "test_store_units.Custom"),
        ("x" * 2000, False, "str"),
    ],
    ids=[
        "none",
        "json",
        "str",
        "str-escapes",
        "int",
        "big-int",
        "bool",
        "float",
        "minus-zero",
        "huge-float",
        "tuple",
        "int-keys",
        "nan",
        "inf",
        "int-too-long-for-str",
        "object",
        "too-big",
    ],
)
def test_encode_result(value: object, stored: bool, type_name: str | None) -> None:
    encoded = encode_result(value, max_bytes=1000)
    assert (encoded.stored, encoded.type) == (stored, type_name)
    assert (encoded.json is not None) == stored
    assert bool(encoded.note) != stored
    if stored:  # what is stored reads back as the same value, of the same type
        decoded = json.loads(encoded.json or "")
        assert (decoded, type(decoded)) == (value, type(value))


@pytest.mark.parametrize(
    "value",
    [
        *("", "plain", 'quo"te\\', "é 日本", "\x00\n\t", "\ud800"),
        *(0, -7, 10**40, True, False, 0.1, -0.0, 1e300, 5e-324, 2.0**63),
    ],
)
def test_a_scalar_result_is_stored_as_json_writes_it(value: object) -> None:
    assert encode_result(value).json == json.dumps(value, separators=(",", ":"), allow_nan=False)


def test_encode_error_keeps_the_chain() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        encoded = encode_error(exc)
    assert (encoded.type, encoded.message) == ("RuntimeError", "outer")
    assert "KeyError: 'inner'" in encoded.traceback
    assert "direct cause" in encoded.traceback


def test_this_process_is_alive_and_garbage_is_not_declared_dead() -> None:
    assert not is_dead(current_owner())
    assert not is_dead("not an owner")
    assert current_owner().count(":") >= 2


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", MemoryStore),
        ("sqlite:///tmp/x/runs.sqlite", SQLiteStore),
        ("runs.sqlite", SQLiteStore),
        ("postgresql://u@h:5432/db?schema=s1", PostgresStore),
        ("postgres://u@h/db", PostgresStore),
    ],
    ids=["memory", "sqlite", "path", "postgresql", "postgres"],
)
def test_open_store(url: str, kind: type) -> None:
    store = open_store(url)
    assert isinstance(store, kind)
    assert isinstance(store, RunStore)


def test_open_store_details() -> None:
    pg = open_store("postgresql://u:pw@h:5432/db?schema=s1&sslmode=disable")
    assert isinstance(pg, PostgresStore)
    assert (pg.schema, pg.dsn) == ("s1", "postgresql://u:pw@h:5432/db?sslmode=disable")
    assert repr(pg) == "PostgresStore(postgresql://u:***@h:5432/db?sslmode=disable (schema s1))"


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///runs.sqlite", "runs.sqlite"),
        ("sqlite:///tmp/x/runs.sqlite", "tmp/x/runs.sqlite"),
        ("sqlite:////tmp/x/runs.sqlite", "/tmp/x/runs.sqlite"),
        ("SQLite:////tmp/x/runs.sqlite", "/tmp/x/runs.sqlite"),
        ("sqlite:///:memory:", ":memory:"),
        ("runs/x.sqlite", "runs/x.sqlite"),
    ],
    ids=["relative", "relative-folder", "absolute", "upper-case", "in-memory", "plain-path"],
)
def test_sqlite_urls_read_as_sqlalchemy_reads_them_and_show_as_given(url: str, path: str) -> None:
    """Three slashes and a relative path, four and an absolute one, as in SQLAlchemy."""
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    assert store.path == path
    assert store.name == url
    assert repr(store) == f"SQLiteStore({url})"


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("", "use memory://"),
        ("mysql://x/y", "use memory://"),
        ("sqlite://", "sqlite:// needs a path"),
        ("sqlite:///", "sqlite:// needs a path"),
        ("memory://x", "use memory://"),
        ("sqlite://runs.sqlite", "did you mean sqlite:///runs.sqlite (relative"),
        ("sqlite://tmp/x.sqlite", "or sqlite:////tmp/x.sqlite (absolute"),
        ("sqlite://///tmp/x.sqlite", "did you mean sqlite:////tmp/x.sqlite (four slashes"),
        ("sqlite:/tmp/x.sqlite", "did you mean sqlite:////tmp/x.sqlite"),
        ("SQLite:/tmp/x.sqlite", "did you mean sqlite:////tmp/x.sqlite"),
        ("sqlite:runs.sqlite", "did you mean sqlite:///runs.sqlite or the plain path"),
        ("sqlite:", "sqlite: needs a path"),
        ("memory:", "did you mean memory://"),
        ("postgresql:/h/db", "did you mean postgresql://h/db"),
        ("postgres:u:secret@h/db", "did you mean postgres://u:secret@h/db"),
    ],
    ids=[
        "empty",
        "mysql",
        "sqlite-no-path",
        "sqlite-three-slashes-no-path",
        "memory-with-path",
        "sqlite-two-slashes",
        "sqlite-two-slashes-folder",
        "sqlite-five-slashes",
        "sqlite-one-slash",
        "sqlite-upper-case",
        "sqlite-no-slash",
        "sqlite-bare",
        "memory-bare",
        "postgresql-one-slash",
        "postgres-no-slash",
    ],
)
def test_open_store_rejects(url: str, hint: str) -> None:
    with pytest.raises(StoreURLError, match="cannot open a run store") as info:
        open_store(url)
    assert hint in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not (Path.cwd() / "sqlite:").exists()


def test_a_password_never_appears_in_store_errors() -> None:
    with pytest.raises(StoreURLError) as info:
        open_store("mysql://user:hunter2@h/db?password=hunter2")
    assert "hunter2" not in str(info.value)
    assert "user:***@h" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?password=pw&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("postgresql://h/db", "postgresql://h/db"),
        ("http://[::1", "<unparsable URL>"),
    ],
    ids=["authority", "query", "none", "unparsable"],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


@pytest.mark.parametrize(
    "make",
    [
        lambda: PostgresStore("postgresql://x/y", schema='a"; drop'),
        lambda: PostgresStore("postgresql://x/y", min_size=3, max_size=2),
        lambda: SQLiteStore("x.sqlite", synchronous="OFF"),  # type: ignore[arg-type]
        lambda: SQLiteStore("x.sqlite", busy_timeout=-1),
    ],
    ids=["schema", "pool-sizes", "synchronous", "busy-timeout"],
)
def test_bad_store_arguments_are_store_config_errors(make: Callable[[], object]) -> None:
    with pytest.raises(StoreConfigError) as info:
        make()
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, DremioFrameError)


def test_default_store_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DREMIOFRAME_ASYNC_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_url() == f"sqlite:///{tmp_path}/dremioframe_async/runs.sqlite"
    monkeypatch.setenv("DREMIOFRAME_ASYNC_STORE", "memory://")
    assert default_store_url() == "memory://"


def test_public_names() -> None:
    assert sorted(store_pkg.__all__) == [
        "AttemptInfo",
        "CancelOutcome",
        "HistoryIncomplete",
        "LogEntry",
        "LogPage",
        "LogQuery",
        "LogReader",
        "MemoryStore",
        "PostgresStore",
        "QueuedRun",
        "RunInfo",
        "RunNotFound",
        "RunPage",
        "RunQuery",
        "RunStatus",
        "RunStore",
        "SQLiteStore",
        "SchedulePauses",
        "StateEntry",
        "StateStore",
        "StoreConfigError",
        "StoreError",
        "StoreSchemaError",
        "StoreURLError",
        "StoreUnavailable",
        "TaskInfo",
        "default_store_url",
        "drop_marker",
        "open_store",
    ]


def test_store_errors_are_in_the_documented_tree() -> None:
    import dremioframe_async.errors as errors
    from dremioframe_async.orchestration import ResumeRefused

    tree = errors.__doc__ or ""
    for name in (
        "StoreError",
        "RunNotFound",
        "StoreSchemaError",
        "StoreUnavailable",
        "HistoryIncomplete",
        "StoreConfigError",
        "StoreURLError",
    ):
        cls = getattr(store_pkg, name)
        assert issubclass(cls, DremioFrameError), name
        assert issubclass(cls, errors.StoreError), name
        assert f"{name} " in tree, f"{name} missing from the tree in errors.py"
    assert "ResumeRefused" in tree
    assert issubclass(ResumeRefused, DremioFrameError)
    assert issubclass(ResumeRefused, ValueError)
    assert store_pkg.StoreError is errors.StoreError
