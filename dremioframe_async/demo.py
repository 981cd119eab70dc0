"""The demo: a fan-out extraction pipeline from Dremio to Parquet, with live progress.

``dremioframe-async demo`` starts an embedded FakeDremio (a real HTTP server on
loopback) holding a dozen generated tables, then runs::

    list_tables -> extract[0..n] (concurrently, each to Parquet) -> validate -> summary
                          \\-> alert (one_failed)                 cleanup (all_done) <-/

and prints a table of tasks, states, rows and timings. The run is recorded in the
run store (``--store``, default the user's SQLite file; ``--no-store``), and the
demo ends with the command that shows it, with its tasks' logs, in the web UI.
``--url``/``--pat`` (or
``DREMIO_URL``/``DREMIO_PAT``) run the same pipeline against a real Dremio, on
the tables of ``--folder``. Results travel over Arrow Flight when there is a
Flight endpoint (always on the embedded server; ``--flight-url`` or
``DREMIO_FLIGHT_URL`` for a real Dremio); ``--via rest`` compares with REST.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import anyio
import pyarrow.parquet as pq

from . import Pipeline, RunResult, TaskState, task
from ._argv import glue_dash_values
from ._interrupts import EXIT_INTERRUPTED, interruptible
from .cli._common import ui_hint
from .dremio import DremioClient, DremioConfigError, Via, split_path
from .errors import DremioFrameError
from .orchestration import Event, RunRecorder, TaskStateChanged
from .progress import Progress, describe, format_duration, format_table
from .store import RunStore, default_store_url, open_store
from .tasks import quote_path

__all__ = ["DemoOutcome", "main", "run_demo"]

DEMO_FOLDER = "demo.sales"
_TABLE_NAMES = (
    "orders_eu",
    "orders_us",
    "orders_apac",
    "customers",
    "products",
    "payments",
    "refunds",
    "shipments",
    "inventory",
    "returns",
    "reviews",
    "sessions",
)


@dataclass(frozen=True, slots=True)
class DemoOutcome:
    """What a demo run produced: the run, its report table, the output folder and row total.

    ``seconds`` is the pipeline run (listing, extraction, checks and cleanup), what
    the rows per second refer to; ``setup_seconds`` is what came before it: the
    output folder and, without a URL, starting the embedded server and generating
    its tables.
    """

    result: RunResult
    report: str
    out_dir: Path
    total_rows: int
    seconds: float
    via: str = "rest"
    setup_seconds: float = 0.0


@asynccontextmanager
async def _dremio(
    url: str | None, pat: str | None, tables: int, rows: int, flight_url: str | None = None
) -> AsyncIterator[tuple[Callable[[], DremioClient], str]]:
    """How to make a client (the run opens and closes it): to the given Dremio, or to an
    embedded FakeDremio with sample tables, served while the context is open."""
    if url:
        yield (lambda: DremioClient(url, token=pat, flight_url=flight_url)), "Dremio at " + url
        return
    from .testing import FakeDremio, sample_table

    async with FakeDremio(job_latency=0.05, flight=True) as fake:
        weights = [i % 4 + 1 for i in range(tables)]
        offset = 0
        for i, weight in enumerate(weights):
            count = rows * weight // sum(weights)
            name = _TABLE_NAMES[i] if i < len(_TABLE_NAMES) else f"table_{i}"
            fake.add_table(f"{DEMO_FOLDER}.{name}", sample_table(count, offset=offset))
            offset += count
        where = f"embedded FakeDremio at {fake.url} ({tables} tables, {offset:,} rows)"
        yield (
            (
                lambda: DremioClient(
                    fake.url, token=fake.token, poll_interval=0.02, flight_url=fake.flight_url
                )
            ),
            where,
        )


def build_pipeline(
    make_client: Callable[[], DremioClient],
    folder: str,
    out_dir: Path,
    *,
    concurrency: int,
    limit: int | None,
    stream: TextIO,
    remove_out_dir: bool,
    via: Via = "rest",
) -> Pipeline:
    """The extraction pipeline (built per run); its tasks share the run's client, a resource."""

    @task(name="list_tables", retries=2, retry_delay=0.5, resources=("dremio",))
    async def list_tables(dremio: DremioClient) -> list[list[str]]:
        entity = await dremio.catalog_by_path(split_path(folder))
        children = entity.get("children") or []
        return [list(c["path"]) for c in children if c.get("type") == "DATASET"]

    @task(name="extract", pool="dremio", retries=2, retry_delay=0.5, resources=("dremio",))
    async def extract(
        table: list[str], dremio: DremioClient, context: Any = None
    ) -> dict[str, Any]:
        sql = f"SELECT * FROM {quote_path(table)}" + (f" LIMIT {limit}" if limit else "")
        path = out_dir / (table[-1].replace("/", "_") + ".parquet")
        context.log.info("extracting %s over %s", ".".join(table), via)  # in the task's log
        if via == "flight":  # the client checks the rows against Dremio's count itself
            written = await dremio.query_to_parquet(sql, path, via="flight")
            context.log.info("wrote %d rows to %s", written, path.name)
            return {"table": ".".join(table), "path": str(path), "rows": written}
        job_id = await dremio.submit(sql)
        job = await dremio.wait(job_id)
        written = await dremio.to_parquet(job, path)  # the Job: no second status request
        context.log.info("job %s: wrote %d rows to %s", job_id, job.row_count, path.name)
        return {
            "table": ".".join(table),
            "path": str(path),
            "rows": job.row_count,
            "written": written,
        }

    @task(name="validate")
    async def validate(context: Any = None) -> int:
        extracted: list[dict[str, Any]] = context["extract"]
        for item in extracted:
            meta = await anyio.to_thread.run_sync(pq.read_metadata, item["path"])
            if meta.num_rows != item["rows"]:
                raise ValueError(
                    f"{item['table']}: Dremio said {item['rows']} rows, file has {meta.num_rows}"
                )
        return sum(int(item["rows"]) for item in extracted)

    @task(name="summary")
    async def summary(context: Any = None) -> dict[str, Any]:
        extracted: list[dict[str, Any]] = context["extract"]
        sizes = [await anyio.Path(item["path"]).stat() for item in extracted]
        return {
            "tables": len(extracted),
            "rows": context["validate"],
            "bytes": sum(s.st_size for s in sizes),
        }

    @task(name="alert", trigger_rule="one_failed")
    def alert() -> str:
        print("ALERT: the extraction failed; see the table below", file=stream)
        return "alerted"

    @task(name="cleanup", trigger_rule="all_done")
    async def cleanup() -> str:
        if remove_out_dir:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(out_dir, ignore_errors=True))
            return f"removed {out_dir}"
        return f"kept {out_dir}"

    listed = list_tables()
    extracted = extract.expand(table=listed)
    checked = validate()
    extracted.set_downstream(checked)
    summed = summary()
    checked.set_downstream(summed)
    extracted.set_downstream(summed)
    warn = alert()
    for upstream in (listed, extracted, checked):
        upstream.set_downstream(warn)
    tidy = cleanup()
    for upstream in (summed, warn):
        upstream.set_downstream(tidy)
    return Pipeline(
        "demo_extract",
        max_concurrency=64,
        pools={"dremio": concurrency},
        resources={"dremio": make_client},
    ).add_task(listed)


class _DemoProgress:
    """Progress on ``stream``: one live line on a terminal, else a line per quarter done."""

    def __init__(self, stream: TextIO, progress: Progress) -> None:
        self.progress = progress
        self.stream = stream
        self._reported = 0

    def __call__(self, event: Event) -> None:
        self.progress(event)
        if not isinstance(event, TaskStateChanged):
            return
        if event.key == "list_tables" and event.state is TaskState.SUCCESS:
            # One extract per table: counted now, so "n/total" keeps its total.
            self.progress.expect(f"extract[{i}]" for i in range(len(event.result)))
        if self.progress.live:
            return
        counts, total = self.progress.counts(), len(self.progress.tasks)
        quarter = 4 * counts["done"] // max(total, 1)
        if quarter > self._reported:
            self._reported = quarter
            print(self.progress.status_line(), file=self.stream, flush=True)


def _rows(value: Any) -> str:
    if isinstance(value, dict) and "rows" in value:
        return f"{int(value['rows']):,}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return ""


def _detail(value: Any, line: Any, error_text: str = "") -> str:
    if isinstance(value, dict) and "table" in value:
        return str(value["table"])
    if isinstance(value, dict) and "bytes" in value:
        return f"{value['tables']} Parquet files, {value['bytes'] / 1e6:.1f} MB"
    if isinstance(value, list) and all(isinstance(v, list) for v in value):
        return f"{len(value)} tables found"
    if isinstance(value, str):
        return value
    return str(error_text or line.error or line.reason)  # whole: the table wraps it


def _error_text(result: RunResult, key: str) -> str:
    error = result.errors.get(key)
    if error is None:
        return ""
    # Dremio's own message is the useful part; the job id is in the logs.
    return f"{type(error).__name__}: {getattr(error, 'error_message', '') or error}"


def _ordered(keys: Sequence[str]) -> list[str]:
    """Task keys with the fan-out instances (``extract[3]``) right after their parent."""
    parents = [k for k in keys if "[" not in k]
    ordered = []
    for parent in parents:
        ordered.append(parent)
        children = [k for k in keys if k.startswith(parent + "[")]
        ordered += sorted(children, key=lambda k: int(k[len(parent) + 1 : -1]))
    return ordered + [k for k in keys if k not in ordered]


def report(result: RunResult, progress: Progress) -> str:
    """The final table: task, state, rows, duration and a detail (table, error or reason)."""
    rows = []
    for key in _ordered(list(progress.tasks)):
        line = progress.tasks[key]
        value = result[key] if line.state is TaskState.SUCCESS and key in result else None
        duration = None if line.started is None else (line.finished or line.started) - line.started
        rows.append(
            (
                key,
                line.state.value,
                _rows(value),
                format_duration(duration),
                _detail(value, line, _error_text(result, key)),
            )
        )
    return format_table(("TASK", "STATE", "ROWS", "TIME", "DETAIL"), rows)


async def run_demo(
    *,
    url: str | None = None,
    pat: str | None = None,
    folder: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    tables: int = 12,
    rows: int = 300_000,
    concurrency: int = 8,
    limit: int | None = None,
    stream: TextIO | None = None,
    progress: Progress | None = None,
    stop_cleanup: anyio.Event | None = None,
    via: Via = "auto",
    flight_url: str | None = None,
    store: RunRecorder | None = None,
) -> DemoOutcome:
    """Run the demo pipeline once; return its outcome (never raises for a failed run).

    Without ``url`` an embedded FakeDremio with ``tables`` generated tables of
    ``rows`` rows in all is used. Without ``out_dir`` files go to a temporary
    folder that the cleanup task removes; when the demo is cancelled the cleanup
    task still runs (``stop_cleanup`` ends it, see ``Pipeline.run``), and the
    temporary folder is removed in any case. ``via`` picks how results travel
    (``auto``: Flight when the client has a Flight URL, as the embedded server does).
    The client is the run's resource: opened when the first task needs it and
    closed when the run ends; if it cannot log in, the tasks that need it fail.

    :param progress: the display to feed (default: a new one on ``stream``).
    :param store: where to record the run (its tasks, attempts and log lines), if anywhere.
    :raises DremioError: a bad URL, or ``via="flight"`` without a Flight endpoint.
    """
    stream = stream if stream is not None else sys.stderr
    target = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="dremioframe-demo-"))
    progress = progress or Progress(stream)
    started = time.perf_counter()
    try:
        await anyio.Path(target).mkdir(parents=True, exist_ok=True)
        async with _dremio(url, pat, tables, rows, flight_url) as (make_client, where):
            client = make_client()  # not opened: its configuration, checked before the run
            flight = via == "flight" or (via == "auto" and client.flight_url is not None)
            path: Via = "flight" if flight else "rest"
            if flight and client.flight_url is None:  # fail once, not once per table
                raise DremioConfigError("--via flight needs --flight-url (or DREMIO_FLIGHT_URL)")
            over = "Arrow Flight" if path == "flight" else "REST"
            print(
                f"demo: extracting {folder or DEMO_FOLDER} from {where} over {over} into {target}",
                file=stream,
            )
            pipeline = build_pipeline(
                make_client,
                folder or DEMO_FOLDER,
                target,
                concurrency=concurrency,
                limit=limit,
                stream=stream,
                remove_out_dir=out_dir is None,
                via=path,
            )
            listener = _DemoProgress(stream, progress)
            ran = time.perf_counter()
            result = await pipeline.run(on_event=listener, stop_cleanup=stop_cleanup, store=store)
            finished = time.perf_counter()
    except BaseException:
        if out_dir is None:  # whatever stopped the run, the temporary folder goes
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: shutil.rmtree(target, ignore_errors=True))
        raise
    total = int(result["validate"]) if result.states.get("validate") is TaskState.SUCCESS else 0
    return DemoOutcome(
        result, report(result, progress), target, total, finished - ran, path, ran - started
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dremioframe-async demo",
        description="Extract a folder of Dremio tables to Parquet concurrently, with live "
        "progress. Without --url an embedded FakeDremio with generated tables is used.",
    )
    parser.add_argument(
        "--url", default=os.environ.get("DREMIO_URL"), help="Dremio URL (env DREMIO_URL)"
    )
    parser.add_argument("--pat", default=None, help="personal access token (env DREMIO_PAT)")
    parser.add_argument(
        "--folder", help=f"dotted folder/space whose tables to extract (default {DEMO_FOLDER})"
    )
    parser.add_argument(
        "--out", help="output folder to keep the Parquet files (default: temporary)"
    )
    parser.add_argument("--tables", type=int, default=12, help="generated tables (embedded server)")
    parser.add_argument(
        "--rows", type=int, default=300_000, help="generated rows in all (embedded server)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="Dremio jobs in flight (default 8)"
    )
    parser.add_argument("--limit", type=int, help="LIMIT each extraction (handy on a real Dremio)")
    parser.add_argument(
        "--via",
        choices=("auto", "flight", "rest"),
        default="auto",
        help="how results travel: Arrow Flight or REST (default: Flight when available)",
    )
    parser.add_argument(
        "--flight-url", help="Dremio's Arrow Flight endpoint (env DREMIO_FLIGHT_URL)"
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="record the run there, to see it in the web UI (default: "
        "$DREMIOFRAME_ASYNC_STORE or the user's SQLite file)",
    )
    parser.add_argument("--no-store", action="store_true", help="record nothing")
    return parser


def _missing_testing_extra() -> str | None:
    """Why the embedded FakeDremio cannot start (DuckDB is missing), or None."""
    from .testing import duckdb_missing

    return duckdb_missing()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line; 0 when the pipeline succeeded, 1 otherwise
    (2 for a bad argument, such as a URL that is not http(s), and when the embedded
    server needs the ``testing`` extra).

    Ctrl-C cancels it (130): the cleanup task still runs and the table is printed;
    a second Ctrl-C stops the cleanup, a third exits at once.
    """
    given = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(glue_dash_values(given))
    if not args.url and (missing := _missing_testing_extra()):
        print(f"demo: {missing}", file=sys.stderr)  # the embedded server cannot run
        return 2
    progress = Progress(sys.stderr)
    outcomes: list[DemoOutcome] = []

    store_url = None if args.no_store else (args.store or default_store_url())

    async def go(stop_cleanup: anyio.Event) -> int:
        if store_url is None:
            return await demo_run(stop_cleanup, None)
        store = open_store(store_url)
        try:
            return await demo_run(stop_cleanup, store)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await store.aclose()

    async def demo_run(stop_cleanup: anyio.Event, store: RunStore | None) -> int:
        outcome = await run_demo(
            url=args.url,
            pat=args.pat,
            folder=args.folder,
            out_dir=args.out,
            tables=args.tables,
            rows=args.rows,
            concurrency=args.concurrency,
            limit=args.limit,
            progress=progress,
            stop_cleanup=stop_cleanup,
            via=args.via,
            flight_url=args.flight_url,
            store=store,
        )
        outcomes.append(outcome)
        return 0 if outcome.result.status == "SUCCESS" else 1

    try:
        code = anyio.run(interruptible, go)
    except KeyboardInterrupt:  # before the signal watcher listens: the same ending as after
        code = EXIT_INTERRUPTED
    except DremioFrameError as exc:  # a bad --url or --via: one line, as the CLI prints errors
        print(f"dremioframe-async demo: error: {describe(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    if not outcomes:
        if progress.run_id:
            print(progress.summary())
        print(f"\ninterrupted: run {progress.run_id or '(not started)'} cancelled", file=sys.stderr)
        return code
    outcome = outcomes[0]
    print(outcome.report)
    rate = outcome.total_rows / max(outcome.seconds, 1e-9)
    print(
        f"\n{outcome.result.status}: {outcome.total_rows:,} rows in {outcome.seconds:.2f}s "
        f"({rate:,.0f} rows/s) via {outcome.via}"
    )
    print(f"Setup before the run: {outcome.setup_seconds:.2f}s")
    kept = outcome.out_dir.exists()
    print(f"Parquet files: {outcome.out_dir}" + ("" if kept else " (removed by the cleanup task)"))
    if store_url is not None:
        print("\n" + ui_hint(store_url, outcome.result.run_id))
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
