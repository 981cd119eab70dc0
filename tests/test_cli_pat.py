"""A personal access token may start with '-' (one base64url token in 64 does):
``--pat -Xy...`` reaches the command instead of argparse's "expected one argument"."""

from __future__ import annotations

import pytest

from dremioframe_async import demo
from dremioframe_async._argv import glue_dash_values
from dremioframe_async.cli import main


@pytest.mark.parametrize(
    ("argv", "glued"),
    [
        (["--pat", "-Xy3"], ["--pat=-Xy3"]),
        (["run", "--pat", "-a", "--url", "u"], ["run", "--pat=-a", "--url", "u"]),
        (["--pat", "abc"], ["--pat", "abc"]),
        (["--pat", "--url", "u"], ["--pat", "--url", "u"]),  # a forgotten value: argparse says so
        (["--pat", "-"], ["--pat", "-"]),
        (["--pat"], ["--pat"]),
        (["--", "--pat", "-x"], ["--", "--pat", "-x"]),  # positional after --
        (["--pat=-x"], ["--pat=-x"]),
        (["--url", "-x"], ["--url", "-x"]),  # only the options that take such values
    ],
)
def test_a_dash_value_is_glued_to_its_option(argv: list[str], glued: list[str]) -> None:
    assert glue_dash_values(argv) == glued


def test_the_bench_command_takes_a_token_that_starts_with_a_dash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Parsed: the command's own check speaks (no --sql), not argparse.
    assert main(["bench", "dremio", "--url", "http://127.0.0.1:9", "--pat", "-Xy3"]) == 2
    err = capsys.readouterr().err
    assert "give --sql" in err, err
    assert "expected one argument" not in err


def test_the_demo_takes_a_token_that_starts_with_a_dash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Parsed: the demo's own check of the URL speaks (argparse would exit instead).
    assert demo.main(["--url", "ftp://dremio.example", "--pat", "-Xy3", "--no-store"]) == 2
    err = capsys.readouterr().err
    assert "the URL must start with http:// or https://" in err, err
    assert "expected one argument" not in err
