"""The progress listener: counts, notes on a non-terminal, redraws on a terminal, the table."""

from __future__ import annotations

import io

import pytest
from test_store import sample_run

from dremioframe_async.progress import Progress, describe, format_duration, format_table, printable


def feed(progress: Progress, upto: int | None = None) -> None:
    for event in sample_run()[:upto]:
        progress(event)


def test_counts_midway() -> None:
    progress = Progress(io.StringIO(), live=False)
    feed(progress, 8)  # a done, b retried and done, c running
    assert progress.counts() == {"done": 2, "running": 1, "failed": 0, "retries": 1}
    assert progress.status_line() == "etl: 2/4 done, 1 running, 0 failed, 1 retries"


def test_non_terminal_prints_retries_and_failures_only() -> None:
    out = io.StringIO()
    progress = Progress(out, live=False)
    feed(progress)
    assert out.getvalue().splitlines() == [
        "retry b: attempt 1 failed: ValueError: bad row 7",
        "failed c: ValueError: bad row 7",
    ]
    assert progress.status == "FAILED"
    assert progress.counts()["failed"] == 2  # c failed, d upstream failed


def test_terminal_redraws_one_line_and_ends_it() -> None:
    out = io.StringIO()
    feed(Progress(out, live=True, min_interval=0.0))
    text = out.getvalue()
    assert text.count("\r\x1b[2K") > 5
    assert text.endswith("etl: 4/4 done, 0 running, 2 failed, 1 retries\n")


def test_summary_table() -> None:
    progress = Progress(io.StringIO(), live=False)
    feed(progress)
    lines = progress.summary().splitlines()
    assert lines[0].split() == ["TASK", "STATE", "ATTEMPTS", "DURATION", "ERROR", "/", "REASON"]
    assert lines[3].split()[:4] == ["b", "SUCCESS", "2", "3.00s"]
    assert "ValueError: bad row 7" in lines[4]
    assert lines[5].endswith("upstream c failed")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.421, "0.42s"), (12.34, "12.3s"), (245, "4m05s"), (7380, "2h03m")],
    ids=["unknown", "sub-10s", "sub-minute", "minutes", "hours"],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_table_aligns_columns() -> None:
    assert format_table(("A", "BB"), [("xxx", 1), ("y", 22)]).splitlines() == [
        "A    BB",
        "---  --",
        "xxx  1",
        "y    22",
    ]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain", "plain"),
        ("two\nlines", "two\nlines"),
        ("\x1b[2Jclear", "\\x1b[2Jclear"),
        ("bell\x07 cr\r", "bell\\x07 cr\\r"),
        ("bidi \u202eevil", "bidi \\u202eevil"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("café ✓", "café ✓"),
    ],
    ids=["plain", "newline", "escape", "bell-cr", "bidi", "surrogate", "unicode"],
)
def test_printable_escapes_control_characters(text: str, shown: str) -> None:
    assert printable(text) == shown
    printable(text).encode("utf-8")  # always encodable, even from a lone surrogate


def test_describe_names_the_type_and_keeps_the_whole_message() -> None:
    long = "x" * 300
    assert describe(KeyError("DREMIO_URL")) == "KeyError: 'DREMIO_URL'"
    assert describe(ValueError(long)) == f"ValueError: {long}"
    assert describe(TimeoutError()) == "TimeoutError"


def test_describe_an_exception_whose_str_raises() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert describe(Unprintable()) == "Unprintable: <str() of Unprintable raised RuntimeError>"


def test_format_table_wraps_the_last_column_and_never_cuts() -> None:
    message = " ".join(f"w{i}" for i in range(40))
    lines = format_table(("K", "NOTE"), [("key", message), ("k2", "a\nb")], width=40).splitlines()
    assert all(len(line) <= 40 for line in lines)
    assert lines[2].startswith("key  w0 w1")
    assert lines[3].startswith("     w")  # continuation under its column
    assert " ".join(" ".join(line.split()) for line in lines[2:-2]).endswith(message[-20:])
    assert lines[-2:] == ["k2   a", "     b"]
    unwrapped = format_table(("K", "NOTE"), [("key", message)], width=None).splitlines()
    assert unwrapped[2] == f"key  {message}"
