"""``dremioframe-async bench dremio|engine``: output, --json round trips, --chart, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _flight_child import stoppable_fake
from _processes import running

from dremioframe_async.bench import EngineReport, Step, Sweep, dump_sweeps, load_sweeps
from dremioframe_async.bench._cli import parse_levels, parse_seconds
from dremioframe_async.bench.shapes import aiodag_available
from dremioframe_async.cli import main

SVG = "{http://www.w3.org/2000/svg}"


def _series(svg: Path) -> set[str | None]:
    root = ET.parse(svg).getroot()
    return {g.get("data-series") for g in root.iter(f"{SVG}g") if g.get("data-series")}


def test_bench_dremio_on_the_embedded_fake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, chart = tmp_path / "out.json", tmp_path / "out.svg"
    argv = ["bench", "dremio", "--concurrency", "1,2", "--queries", "4", "--warmup", "0"]
    argv += ["--latency", "10ms", "--server-limit", "2", "--rows", "7", "--fake", "inline"]
    code = main([*argv, "--json", str(out), "--chart", str(chart)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "<- knee" in printed.out
    assert "load average" in printed.out
    assert "compare ratios from one run" in printed.out
    sweeps = load_sweeps(out.read_text())
    assert [s.label for s in sweeps] == ["rest", "flight"]
    assert all(isinstance(s, Sweep) and isinstance(s.steps[0], Step) for s in sweeps)
    assert [step.concurrency for step in sweeps[0].steps] == [1, 2]
    assert all(step.queries == 4 and step.rows == 28 for s in sweeps for step in s.steps)
    assert dump_sweeps(sweeps) == out.read_text()
    assert _series(chart) == {"rest throughput", "rest p95", "flight throughput", "flight p95"}


def test_bench_dremio_with_the_fake_in_a_child_process_for_a_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rest.json"
    argv = ["bench", "dremio", "--concurrency", "2", "--duration", "300ms", "--warmup", "0"]
    code = main([*argv, "--via", "rest", "--latency", "0", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    (rest,) = load_sweeps(out.read_text())
    assert rest.duration == pytest.approx(0.3)
    assert rest.steps[0].queries > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://127.0.0.1:9", "--pat", "x"], "give --sql"),
        (
            ["--url", "http://127.0.0.1:9", "--pat", "x", "--sql", "SELECT 1", "--via", "flight"],
            "--flight-url",
        ),
        (["--queries", "0"], "--queries"),
        (["--server-limit", "0"], "--server-limit"),
    ],
    ids=["no-sql", "flight-without-url", "zero-queries", "zero-limit"],
)
def test_bad_input_is_a_usage_error(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DREMIO_FLIGHT_URL", raising=False)
    assert main(["bench", "dremio", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("dremioframe-async bench dremio: error: UsageError: "), err
    assert len(err.splitlines()) == 1


def test_an_unreachable_dremio_is_reported_with_its_error_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--url", "http://127.0.0.1:9", "--pat", "x", "--sql", "SELECT 1"]
    argv += ["--concurrency", "1", "--queries", "2", "--warmup", "0"]
    assert main(["bench", "dremio", *argv]) == 1
    out = capsys.readouterr().out
    assert "DremioConnectionError x2" in out  # in the table
    # ...and once below it, with what the error said (the host it could not reach)
    (line,) = [ln for ln in out.splitlines() if ln.startswith("  DremioConnectionError: ")]
    assert "127.0.0.1:9" in line


@pytest.mark.parametrize("argv", [["--concurrency", "0,2"], ["--duration", "soon"]], ids=["c", "d"])
def test_bad_values_are_rejected_by_the_parser(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "dremio", *argv])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1.5", 1.5), ("1h", 3600.0)],
)
def test_parse_seconds(text: str, seconds: float) -> None:
    assert parse_seconds(text) == pytest.approx(seconds)


def test_parse_levels() -> None:
    assert parse_levels("1,4,16,64") == [1, 4, 16, 64]


@pytest.mark.timeout(240)  # a CI smoke run: about 15 s on a loaded 2-core machine
def test_bench_engine_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, chart = tmp_path / "engine.json", tmp_path / "engine.svg"
    assert main(["bench", "engine", "--quick", "--json", str(out), "--chart", str(chart)]) == 0
    printed = capsys.readouterr().out
    assert "x raw-anyio" in printed
    assert "load average" in printed
    report = EngineReport.from_json(out.read_text())
    assert report.to_json() == out.read_text()
    impls = {(row.shape, row.impl) for row in report.rows}
    expected = ["engine", "engine cold", "raw-anyio", "gather"]
    if aiodag_available() or os.environ.get("CI") == "true":  # the bench extra, in dev
        expected.append("aiodag")
    assert impls == {(shape, impl) for shape in ("fan-out", "chain", "sleep") for impl in expected}
    engine = next(r for r in report.rows if r.shape == "sleep" and r.impl == "engine")
    assert engine.median_s >= 0.02  # the sleep shape cannot beat its own sleep
    assert report.ratio(engine, "gather") is not None
    root = ET.parse(chart).getroot()
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "bar"]) == len(report.rows)


def test_engine_report_rejects_other_json() -> None:
    with pytest.raises(ValueError, match="engine report"):
        EngineReport.from_json('{"format": "x"}')
    with pytest.raises(ValueError, match="malformed"):
        EngineReport.from_json('{"format": "dremioframe_async.bench.engine/1"}')


def test_bench_dremio_against_a_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [sys.executable, "-m", "dremioframe_async.bench._fake_process", "--latency", "0.01"]
    argv += ["--rows", "3"]
    with running(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None
            fake = json.loads(child.stdout.readline())
            out = tmp_path / "url.json"
            code = main(
                [
                    "bench", "dremio", "--url", fake["url"], f"--pat={fake['token']}",
                    "--flight-url", fake["flight_url"], "--table", "bench.sample",
                    "--sql", "SELECT 1 AS one", "--concurrency", "1,2", "--queries", "4",
                    "--warmup", "0", "--json", str(out),
                ]
            )  # fmt: skip
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert fake["url"] in printed.err
    sweeps = load_sweeps(out.read_text())
    assert [s.label for s in sweeps] == ["rest", "flight"]
    # the two statements are taken in turn: 3 rows, then 1
    assert {step.rows for s in sweeps for step in s.steps} == {8}


def test_ctrl_c_stops_bench_dremio_and_its_fake(tmp_path: Path) -> None:
    out = tmp_path / "never.json"
    argv = [sys.executable, "-m", "dremioframe_async", "bench", "dremio", "--duration", "60s"]
    argv += ["--concurrency", "2", "--warmup", "0", "--json", str(out)]
    with running(argv, stderr=subprocess.PIPE, text=True) as bench:
        assert bench.stderr is not None
        assert bench.stderr.readline().startswith("benchmarking")
        bench.send_signal(signal.SIGINT)
        code = bench.wait(timeout=60)
        err = bench.stderr.read()
    assert code == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.timeout(90)
def test_bench_dremio_ends_each_step_on_time_when_the_server_hangs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "hung.json"
    with stoppable_fake(rows=3) as (child, fake):
        os.kill(child.pid, signal.SIGSTOP)  # the server accepts connections, answers nothing
        started = time.monotonic()
        code = main(
            [
                "bench", "dremio", "--url", fake["url"], f"--pat={fake['token']}",
                "--flight-url", fake["flight_url"], "--table", "shop.sales",
                "--sql", "SELECT 1 AS one", "--concurrency", "1,2", "--duration", "1s",
                "--warmup", "0", "--json", str(out),
            ]
        )  # fmt: skip
        elapsed = time.monotonic() - started
    printed = capsys.readouterr()
    assert code == 1, printed.err  # flagged: every call timed out
    # Four steps of 1 s (+1 s to drain), each with at most a 2 s bounded cleanup, and
    # room for a loaded machine; unbounded, one hung REST call waits request_timeout (300 s).
    assert elapsed < 4 * (2.0 + 2.0) + 10.0, f"bench dremio took {elapsed:.1f} s"
    sweeps = load_sweeps(out.read_text())
    assert [s.label for s in sweeps] == ["rest", "flight"]
    for s in sweeps:
        for step in s.steps:
            assert step.queries == 0
            assert step.errors == {"StepTimeout": step.concurrency}, (s.label, step)
            assert step.seconds == pytest.approx(2.0, abs=0.2)
