"""Queued runs through real ``serve`` processes on one PostgreSQL store.

On a fresh database (created through an admin connection, dropped at the end)
it starts 1, 2 and 4 ``dremioframe-async serve`` processes serving a no-op
pipeline (one task), and measures, for each count:

* **trigger-to-start latency**: runs queued one at a time through
  ``PostgresStore.enqueue`` at a modest rate (``--rate``, default 20/s); for each
  run, ``started - queued_at`` (``started`` is set when a process claims it) and
  the task's own start minus ``queued_at`` (what the run's recording adds on top).
  p50 and p99 over ``--latency-runs`` runs;
* **claims per second**: ``--claims`` runs queued at once (one transaction, one
  ``NOTIFY``), then the time until the last one is claimed, and until the last
  one has finished.

Targets (issue 19): p50 <= 50 ms, p99 <= 250 ms, >= 200 claims/s with 4 processes;
each row says met or MISSED. Every process and the database run on this machine,
so on a shared 2-core host the figures move with the load average (printed).

    python benchmarks/serve.py                       # about a minute
    python benchmarks/serve.py --quick               # a few seconds, for CI smoke
    python benchmarks/serve.py --processes 4 --claims 2000

PostgreSQL: ``DREMIOFRAME_ASYNC_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/test``), used only to create and drop
the scratch database.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio

from dremioframe_async.store import PostgresStore, RunInfo, RunStatus
from dremioframe_async.store import _postgres_queue as queue

PG_URL = os.environ.get("DREMIOFRAME_ASYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PIPELINE = "bench_noop"
SCHEMA = "dremioframe_async"
READY_TIMEOUT = 60.0
SERVE = (sys.executable, "-m", "dremioframe_async", "serve")
TARGET_P50, TARGET_P99, TARGET_CLAIMS = 0.050, 0.250, 200.0

MODULE = textwrap.dedent(
    f"""
    from dremioframe_async import Pipeline, task

    @task(name="noop")
    async def noop() -> None:
        return None

    pipeline = Pipeline({PIPELINE!r}).add_task(noop())
    """
)


def database_url(name: str) -> str:
    parts = urlsplit(PG_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh database's URL, dropped (with whatever still uses it) afterwards."""
    name = f"dfa_bench_serve_{secrets.token_hex(4)}"
    anyio.run(admin, f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        anyio.run(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def serve_processes(
    count: int, folder: Path, url: str, logs: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` serve processes, ready (they print their URL), stopped by SIGTERM at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    outs: list[Path] = []
    try:
        for i in range(count):
            out = logs / f"serve-{count}-{i}.out"
            outs.append(out)
            with out.open("wb") as stdout, (logs / f"serve-{count}-{i}.err").open("wb") as err:
                procs.append(
                    subprocess.Popen(
                        [*SERVE, str(folder), "--store", url, "--port", "0", "--drain-grace", "5"],
                        stdout=stdout,
                        stderr=err,
                    )
                )
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(b"serving " in out.read_bytes() for out in outs):
            for i, proc in enumerate(procs):
                if proc.poll() is not None:
                    err = (logs / f"serve-{count}-{i}.err").read_text()
                    raise RuntimeError(f"serve exited {proc.returncode}: {err}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve processes not ready within {READY_TIMEOUT} s")
            time.sleep(0.05)
        yield procs
    finally:
        stop(procs)


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_ended(store: PostgresStore, run_ids: Sequence[str], timeout: float) -> list[RunInfo]:
    """The runs, once none is QUEUED or RUNNING.

    Polled with one light count query every 0.1 s, so that watching costs the
    serve processes little; the runs are read once at the end.
    """
    import asyncpg

    conn = await asyncpg.connect(store.dsn)
    try:
        with anyio.fail_after(timeout):
            while await conn.fetchval(
                f'SELECT count(*) FROM "{SCHEMA}".runs WHERE run_id = ANY($1::text[]) '
                "AND status NOT IN ('QUEUED', 'RUNNING')",
                list(run_ids),
            ) < len(run_ids):
                await anyio.sleep(0.1)
    finally:
        await conn.close()
    wanted = set(run_ids)
    return [r for r in await store.list_runs(pipeline=PIPELINE, limit=None) if r.run_id in wanted]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latency(url: str, runs: int, rate: float) -> tuple[list[float], list[float]]:
    """Seconds from queued to claimed, and from queued to the task's start, per run."""
    async with PostgresStore(url) as store:
        ids = []
        for _ in range(runs):
            ids.append(await store.enqueue(PIPELINE, {}))
            await anyio.sleep(1 / rate)
        ended = await wait_ended(store, ids, timeout=60 + runs / rate)
        bad = [r.status.value for r in ended if r.status is not RunStatus.SUCCESS]
        if bad:
            raise RuntimeError(f"{len(bad)} runs did not succeed: {bad[:5]}")
        claim, task_start = [], []
        for run in ended:
            assert run.queued_at is not None
            claim.append(run.started - run.queued_at)
            (noop,) = await store.get_tasks(run.run_id)
            assert noop.started is not None
            task_start.append(noop.started - run.queued_at)
    return claim, task_start


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU seconds the processes ``pids`` have used (Linux ``/proc``)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone, or no /proc here
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Throughput:
    last_claim: float  # seconds from the commit that queued them to the last claim
    last_end: float  # ... to the last run's end
    serve_cpu: float  # CPU seconds of the serve processes meanwhile
    db_cpu: float  # CPU seconds of the database's server processes meanwhile


async def throughput(url: str, count: int, serve_pids: Sequence[int]) -> Throughput:
    """``count`` runs queued at once: how long until all are claimed and ended, at what CPU."""
    async with PostgresStore(url) as store:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            backends = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            db_pids = [pid for (pid,) in backends]
            cpu = cpu_seconds(serve_pids), cpu_seconds(db_pids)
            ids = [secrets.token_hex(16) for _ in range(count)]
            async with conn.transaction():
                for run_id in ids:
                    await queue._insert_queued(conn, f'"{SCHEMA}".', run_id, PIPELINE, "{}", None)
                await conn.execute("SELECT pg_notify($1, $2)", f"{SCHEMA}_events", PIPELINE)
            committed = time.time()
        finally:
            await conn.close()
        ended = await wait_ended(store, ids, timeout=60 + count / 10)
        cpu = cpu_seconds(serve_pids) - cpu[0], cpu_seconds(db_pids) - cpu[1]
    bad = [r.status.value for r in ended if r.status is not RunStatus.SUCCESS]
    if bad:
        raise RuntimeError(f"{len(bad)} runs did not succeed: {bad[:5]}")
    last_claim = max(r.started for r in ended) - committed
    last_end = max(r.finished or 0.0 for r in ended) - committed
    return Throughput(last_claim, last_end, *cpu)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def measure(count: int, folder: Path, url: str, logs: Path, args: argparse.Namespace) -> None:
    with serve_processes(count, folder, url, logs) as procs:
        claim, task_start = anyio.run(latency, url, args.latency_runs, args.rate)
        p50, p99 = percentile(claim, 0.5), percentile(claim, 0.99)
        t50, t99 = percentile(task_start, 0.5), percentile(task_start, 0.99)
        done = anyio.run(throughput, url, args.claims, [p.pid for p in procs])
    rate = args.claims / done.last_claim
    print(
        f"{count} process{'es' if count > 1 else '  '}  latency to claim p50 {p50 * 1e3:6.1f} ms "
        f"(<= 50 {verdict(p50 <= TARGET_P50)}), p99 {p99 * 1e3:6.1f} ms "
        f"(<= 250 {verdict(p99 <= TARGET_P99)}); to task start p50 {t50 * 1e3:6.1f} ms, "
        f"p99 {t99 * 1e3:6.1f} ms"
    )
    target = f" (>= 200 with 4 {verdict(rate >= TARGET_CLAIMS)})" if count == 4 else ""
    print(
        f"{count} process{'es' if count > 1 else '  '}  {args.claims} queued at once: "
        f"claims/s {rate:7.1f}{target}, all claimed in {done.last_claim:.2f} s, "
        f"all ended in {done.last_end:.2f} s ({args.claims / done.last_end:.1f} runs/s); "
        f"CPU ms per run: serve {done.serve_cpu / args.claims * 1e3:.2f}, "
        f"PostgreSQL {done.db_cpu / args.claims * 1e3:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for CI smoke")
    parser.add_argument("--processes", default="1,2,4", help="serve process counts (1,2,4)")
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="latency runs queued per second")
    parser.add_argument("--claims", type=int, default=1000, help="runs queued at once")
    args = parser.parse_args()
    if args.quick:
        args.latency_runs, args.claims, args.rate = 10, 40, 40.0
    counts = [int(n) for n in args.processes.split(",")]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"latency: {args.latency_runs} runs at {args.rate:g}/s; throughput: "
        f"{args.claims} runs queued at once"
    )
    with tempfile.TemporaryDirectory() as tmp, scratch_database() as url:
        folder = Path(tmp, "pipelines")
        folder.mkdir()
        (folder / "noop.py").write_text(MODULE)
        for count in counts:
            measure(count, folder, url, Path(tmp), args)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
