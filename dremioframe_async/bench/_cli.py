"""``dremioframe-async bench dremio|engine``: argument parsing and the two commands."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .._interrupts import EXIT_INTERRUPTED, interruptible
from ..errors import DremioFrameError
from ..progress import describe
from ._engine import EngineReport, measure_engine
from ._report import ProgressLine, engine_table, machine_line, sweep_table
from ._results import SAMPLE_TABLE, Sweep, dump_sweeps
from ._svg import bar_chart, sweep_chart
from ._sweep import sweep
from ._through import through_engine
from .shapes import Shape

if TYPE_CHECKING:
    from ..dremio import DremioClient

__all__ = ["add_bench_command"]

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
CANCEL_TIMEOUT = 2.0
"""Seconds the benchmark's client waits for Dremio to cancel the job of a call cut at a
step's end (the client's default is 10)."""
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_seconds(text: str) -> float:
    """``30s``, ``500ms``, ``2m``, ``1h`` or a plain number of seconds.

    :raises argparse.ArgumentTypeError: anything else, or a negative duration.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 500ms, 2m)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_levels(text: str) -> list[int]:
    """``1,4,16,64`` as a list of concurrency levels (each at least 1).

    :raises argparse.ArgumentTypeError: not a comma-separated list of positive integers.
    """
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,4,16,64, not {text!r}")
    return levels


def add_bench_command(commands: Any) -> None:
    """Register ``bench`` (with ``dremio`` and ``engine``) on the CLI's subparsers."""
    text = "measure throughput: a Dremio's concurrency curve, or this engine's overhead"
    bench = commands.add_parser("bench", help=text, description=text)
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="KIND")
    _dremio_args(kinds.add_parser("dremio", help="sweep concurrent queries against a Dremio"))
    _engine_args(kinds.add_parser("engine", help="the engine's overhead against raw anyio"))


def _dremio_args(sub: argparse.ArgumentParser) -> None:
    sub.description = (
        "Sweep concurrent queries against a Dremio (or, with no --url, an embedded "
        "FakeDremio with a latency model) and report throughput and latency per step."
    )
    sub.set_defaults(handler=_guarded(_cmd_dremio))
    sub.add_argument("--url", help="Dremio's REST URL (default $DREMIO_URL; none: FakeDremio)")
    sub.add_argument("--pat", help="personal access token (default $DREMIO_PAT)")
    sub.add_argument("--flight-url", help="Arrow Flight endpoint (default $DREMIO_FLIGHT_URL)")
    sub.add_argument("--sql", action="append", default=[], help="a statement (repeatable)")
    sub.add_argument("--table", help="benchmark SELECT * FROM this table")
    sub.add_argument("--concurrency", type=parse_levels, default=[1, 4, 16, 64], metavar="N,N")
    span = sub.add_mutually_exclusive_group()
    span.add_argument("--duration", type=parse_seconds, metavar="30s", help="per step")
    span.add_argument("--queries", type=int, metavar="N", help="queries per step")
    sub.add_argument("--warmup", type=parse_seconds, default=1.0, metavar="1s", help="per step")
    sub.add_argument("--via", choices=("rest", "flight", "both"), help="default: both if Flight")
    sub.add_argument(
        "--direct",
        action="store_true",
        help="call the client directly (default: each query is a task of a reused Pipeline)",
    )
    fake = sub.add_argument_group("the embedded FakeDremio (no --url)")
    fake.add_argument("--latency", type=parse_seconds, default=0.05, help="per job (50ms)")
    fake.add_argument("--server-limit", type=int, default=8, metavar="N", help="jobs at once")
    fake.add_argument("--rows", type=int, default=1_000, help=f"rows in {SAMPLE_TABLE}")
    fake.add_argument(
        "--fake",
        choices=("process", "inline"),
        default="process",
        help="serve it from a child process (default: client and server do not share a "
        "GIL) or inline, in this process",
    )
    _output_args(sub)


def _engine_args(sub: argparse.ArgumentParser) -> None:
    sub.description = (
        "Run the engine's overhead shapes (no-op fan-out, chain, 20 ms sleeps; warm and "
        "cold) beside raw anyio, asyncio.gather and aiodag (when installed), in this process."
    )
    sub.set_defaults(handler=_guarded(_cmd_engine))
    sub.add_argument("--quick", action="store_true", help="small shapes, 3 repetitions (CI)")
    sub.add_argument("--reps", type=int, metavar="N", help="repetitions (default 5, quick 3)")
    _output_args(sub)


def _output_args(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", type=Path, metavar="OUT.json", help="write the raw figures")
    sub.add_argument("--chart", type=Path, metavar="OUT.svg", help="draw an SVG chart")


# ---------------------------------------------------------------- bench dremio


@dataclass(frozen=True, slots=True)
class _Target:
    url: str | None
    token: str | None
    flight_url: str | None
    statements: tuple[str, ...]
    vias: tuple[str, ...]


def _target(args: argparse.Namespace) -> _Target:
    url = args.url or os.environ.get("DREMIO_URL") or None
    flight_url = args.flight_url or os.environ.get("DREMIO_FLIGHT_URL") or None
    statements = tuple(args.sql) + ((f"SELECT * FROM {args.table}",) if args.table else ())
    if url is None:
        statements = statements or (f"SELECT * FROM {SAMPLE_TABLE}",)
        flight_url = "embedded"
    elif not statements:
        raise ValueError("give --sql (repeatable) or --table to benchmark a Dremio")
    via = args.via or ("both" if flight_url else "rest")
    if via != "rest" and flight_url is None:
        raise ValueError(f"--via {via} needs --flight-url (or $DREMIO_FLIGHT_URL)")
    vias = ("rest", "flight") if via == "both" else (via,)
    if args.queries is not None and args.queries < 1:
        raise ValueError("--queries must be at least 1")
    if args.server_limit < 1 or args.rows < 0:
        raise ValueError("--server-limit must be at least 1 and --rows at least 0")
    return _Target(url, args.pat, flight_url, statements, vias)


@asynccontextmanager
async def _client(target: _Target, args: argparse.Namespace) -> AsyncIterator[DremioClient]:
    # Imported here: the rest of the CLI does not need aiohttp and pyarrow.
    from ..dremio import DremioClient
    from ._dremio import embedded_dremio
    from ._fake_process import fake_dremio_process

    # The client's own limits must not be what the sweep measures.
    top = max(args.concurrency)
    limits: dict[str, Any] = {"max_connections": max(64, 2 * top), "flight_streams": top}
    # Calls cut at a step's end cancel their jobs: bounded, so that the next step
    # starts on time even when the server hangs.
    limits["cancel_timeout"] = CANCEL_TIMEOUT
    if target.url is not None:
        async with DremioClient(
            target.url, token=target.token, flight_url=target.flight_url, **limits
        ) as client:
            yield client
        return
    model = {"latency": args.latency, "max_running_jobs": args.server_limit, "rows": args.rows}
    serve = fake_dremio_process if args.fake == "process" else embedded_dremio
    async with (
        serve(**model) as fake,
        DremioClient(fake.url, token=fake.token, flight_url=fake.flight_url, **limits) as client,
    ):
        yield client


async def _dremio_sweeps(target: _Target, args: argparse.Namespace, where: str) -> list[Sweep]:
    duration = args.duration if args.duration is not None or args.queries else 30.0
    from ._dremio import flight_work, rest_work

    progress = ProgressLine()
    sweeps = []
    async with _client(target, args) as client:
        # Announced once serving: by then Ctrl-C is handled (cancel, stop the fake, exit 130).
        print(f"benchmarking {where}", file=sys.stderr, flush=True)
        for via in target.vias:
            work = (rest_work if via == "rest" else flight_work)(client, target.statements)
            work = work if args.direct else through_engine(work, f"{via}-query")
            sweeps.append(
                await sweep(
                    work,
                    concurrency=args.concurrency,
                    duration=None if args.queries else duration,
                    queries=args.queries,
                    warmup=args.warmup,
                    label=via,
                    on_progress=progress,
                )
            )
    return sweeps


def _cmd_dremio(args: argparse.Namespace) -> int:
    target = _target(args)
    inline = "in this process" if args.fake == "inline" else "in a child process"
    where = target.url or (
        f"an embedded FakeDremio {inline} ({args.latency * 1e3:g} ms per job, "
        f"{args.server_limit} jobs at once, {args.rows} rows)"
    )
    sweeps: list[Sweep] = []

    async def go(_stop_cleanup: anyio.Event) -> int:
        sweeps.extend(await _dremio_sweeps(target, args, where))
        return EXIT_OK

    if anyio.run(interruptible, go) == EXIT_INTERRUPTED:
        print("interrupted: no figures written", file=sys.stderr)
        return EXIT_INTERRUPTED
    for s in sweeps:
        print(sweep_table(s) + "\n")
    print(machine_line(sweeps[0].machine, sweeps[-1].machine_after))
    print("absolute figures vary with the machine's load; compare ratios from one run")
    _write(args.json, dump_sweeps(sweeps))
    title = "bench dremio: throughput and p95 latency against concurrency"
    _write(args.chart, sweep_chart(sweeps, title, subtitle=where))
    return EXIT_ERRORS if any(step.flagged for s in sweeps for step in s.steps) else EXIT_OK


# ---------------------------------------------------------------- bench engine

_FULL = (Shape("fan-out", 10_000), Shape("chain", 1_000), Shape("sleep", 1_000))
_QUICK = (Shape("fan-out", 1_000), Shape("chain", 200), Shape("sleep", 200))


def _cmd_engine(args: argparse.Namespace) -> int:
    reps = args.reps or (3 if args.quick else 5)
    if reps < 1:
        raise ValueError("--reps must be at least 1")
    report = measure_engine(_QUICK if args.quick else _FULL, reps)
    print(engine_table(report))
    print(machine_line(report.machine, report.machine_after))
    print("absolute figures vary with the machine's load; compare ratios from one run")
    _write(args.json, report.to_json())
    _write(args.chart, _engine_chart(report))
    return EXIT_OK


def _engine_chart(report: EngineReport) -> str:
    shapes = list(dict.fromkeys(row.shape for row in report.rows))
    groups = [
        (shape, [(r.impl, r.per_task_us) for r in report.rows if r.shape == shape])
        for shape in shapes
    ]
    return bar_chart(groups, "us/task", "dremioframe-async bench engine: cost per task")


def _write(path: Path | None, text: str) -> None:
    if path is not None:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input reads as a message and exit code 2; an unreachable Dremio as exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ValueError as exc:  # bad input; DremioConfigError is a ValueError too
            what = describe(exc) if isinstance(exc, DremioFrameError) else f"UsageError: {exc}"
            print(f"dremioframe-async bench {args.bench}: error: {what}", file=sys.stderr)
            return EXIT_USAGE
        except DremioFrameError as exc:
            print(f"dremioframe-async bench {args.bench}: error: {describe(exc)}", file=sys.stderr)
            return EXIT_ERRORS

    return run
