"""Identifier quoting and the maintenance statements' exact Dremio syntax."""

from __future__ import annotations

import datetime as dt

import pytest

from dremioframe_async.tasks import (
    expire_snapshots_sql,
    optimize_sql,
    quote_identifier,
    quote_path,
    refresh_reflections_sql,
    remove_orphan_files_sql,
    rollback_sql,
    string_literal,
)


@pytest.mark.parametrize(
    ("part", "quoted"),
    [
        pytest.param("sales", "sales", id="plain"),
        pytest.param("Sales_2024", "Sales_2024", id="plain-mixed"),
        pytest.param("sales 2024", '"sales 2024"', id="space"),
        pytest.param('we"ird', '"we""ird"', id="quote"),
        pytest.param('x"; DROP TABLE t; --', '"x""; DROP TABLE t; --"', id="injection"),
        pytest.param("select", '"select"', id="reserved"),
        pytest.param("2024", '"2024"', id="digit-first"),
        pytest.param("a.b", '"a.b"', id="dot"),
    ],
)
def test_quote_identifier(part: str, quoted: str) -> None:
    assert quote_identifier(part) == quoted


@pytest.mark.parametrize(
    ("path", "quoted"),
    [
        pytest.param("space.folder.sales", "space.folder.sales", id="dotted"),
        pytest.param('space."my folder".t', 'space."my folder".t', id="dotted-quoted"),
        pytest.param(["s3", "bucket.name", "o'k"], 's3."bucket.name"."o\'k"', id="parts"),
    ],
)
def test_quote_path(path: str | list[str], quoted: str) -> None:
    assert quote_path(path) == quoted


def test_empty_parts_are_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        quote_path("a..b")
    with pytest.raises(ValueError, match="at least one"):
        quote_path([])


def test_string_literal_escapes_quotes_and_formats_datetimes() -> None:
    assert string_literal("it's") == "'it''s'"
    assert string_literal(dt.datetime(2024, 5, 6, 7, 8, 9, 123456)) == "'2024-05-06 07:08:09.123'"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        pytest.param(
            refresh_reflections_sql('lake."sales 2024"'),
            'ALTER DATASET lake."sales 2024" REFRESH REFLECTIONS',
            id="refresh",
        ),
        pytest.param(
            optimize_sql("lake.t"), "OPTIMIZE TABLE lake.t REWRITE DATA USING BIN_PACK", id="opt"
        ),
        pytest.param(
            optimize_sql(
                "lake.t",
                options={"target_file_size_mb": 512, "MIN_INPUT_FILES": 10},
                for_partitions="year = 2024",
                rewrite_manifests=True,
            ),
            "OPTIMIZE TABLE lake.t REWRITE DATA USING BIN_PACK "
            "(TARGET_FILE_SIZE_MB=512, MIN_INPUT_FILES=10) FOR PARTITIONS year = 2024 "
            "REWRITE MANIFESTS",
            id="opt-full",
        ),
        pytest.param(
            optimize_sql("lake.t", rewrite_data=False, rewrite_manifests=True),
            "OPTIMIZE TABLE lake.t REWRITE MANIFESTS",
            id="opt-manifests",
        ),
        pytest.param(
            expire_snapshots_sql("lake.t", older_than="2024-01-01 00:00:00.000", retain_last=5),
            "VACUUM TABLE lake.t EXPIRE SNAPSHOTS older_than = '2024-01-01 00:00:00.000' "
            "retain_last = 5",
            id="expire",
        ),
        pytest.param(
            remove_orphan_files_sql("lake.t", location="s3://b/it's"),
            "VACUUM TABLE lake.t REMOVE ORPHAN FILES location = 's3://b/it''s'",
            id="orphans",
        ),
        pytest.param(
            rollback_sql("lake.t", snapshot_id=123),
            "ROLLBACK TABLE lake.t TO SNAPSHOT '123'",
            id="rb-id",
        ),
        pytest.param(
            rollback_sql("lake.t", timestamp=dt.datetime(2024, 1, 2)),
            "ROLLBACK TABLE lake.t TO TIMESTAMP '2024-01-02 00:00:00.000'",
            id="rb-ts",
        ),
    ],
)
def test_statement_syntax(sql: str, expected: str) -> None:
    assert sql == expected


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda: optimize_sql("t", options={"ZORDER": 1}), "unknown", id="unknown-opt"),
        pytest.param(
            lambda: optimize_sql("t", options={"MIN_INPUT_FILES": "5; DROP"}),
            "integer",
            id="non-int",
        ),
        pytest.param(lambda: optimize_sql("t", rewrite_data=False), "needs", id="nothing"),
        pytest.param(lambda: expire_snapshots_sql("t", retain_last=0), "positive", id="retain-0"),
        pytest.param(lambda: rollback_sql("t"), "exactly one", id="rollback-none"),
        pytest.param(
            lambda: rollback_sql("t", snapshot_id=1, timestamp="x"),
            "exactly one",
            id="rollback-both",
        ),
    ],
)
def test_bad_arguments_are_rejected(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]
