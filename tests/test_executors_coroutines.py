"""Coroutine tasks on a real 2-worker Dask LocalCluster, and worker-scoped resources.

One cluster of 2 worker processes for the module (4 threads each, so that a
worker runs several coroutines at once); the killed-worker test has its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from dremioframe_async import (
    Pipeline,
    PipelineDefinitionError,
    TaskRetrying,
    TaskState,
    TaskStateChanged,
    task,
)
from dremioframe_async.dremio import DremioClient
from dremioframe_async.executors import TaskPickleError, WorkerLostError, worker_scoped
from dremioframe_async.orchestration import AttemptTimeout, ResourceError, TaskOptions
from dremioframe_async.orchestration._placement import on_executor
from dremioframe_async.store import MemoryStore
from dremioframe_async.testing import FakeDremio

distributed = pytest.importorskip(
    "distributed",
    reason="the Dask executor tests need the dask extra: pip install -e '.[dask]'",
)
from dremioframe_async.executors import DaskExecutor  # noqa: E402

pytestmark = pytest.mark.anyio

BOUND = 30.0  # generous: the machine is shared


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # distributed's client runs on asyncio only


@pytest.fixture(scope="module")
async def dask() -> AsyncIterator[DaskExecutor]:
    async with DaskExecutor(n_workers=2, threads_per_worker=4) as executor:
        assert executor.client is not None
        await executor.client.wait_for_workers(2, timeout=BOUND)
        yield executor


@pytest.fixture
async def coroutines(dask: DaskExecutor) -> AsyncIterator[DaskExecutor]:
    """The module's cluster, taking every coroutine task; checks that nothing is left."""
    executor = DaskExecutor(client=dask.client, coroutines=True)
    yield executor
    await nothing_left(dask)


async def until(predicate: Callable[[], Any], what: str) -> None:
    """Poll ``predicate`` (maybe async: a state in another process) until true, within BOUND."""
    with anyio.fail_after(BOUND):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await anyio.sleep(0.02)


def _worker_state(dask_worker: Any) -> tuple[int, int]:
    state = getattr(dask_worker, "_dremioframe_async", None) or {"running": {}, "scopes": {}}
    return len(state["running"]), len(state["scopes"])


async def nothing_left(dask: DaskExecutor) -> None:
    """No future on the client or the scheduler; no coroutine or resource left on a worker."""
    client = dask.client
    assert client is not None

    async def empty() -> bool:
        count = await client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        states = await client.run(_worker_state)
        return not client.futures and count == 0 and set(states.values()) <= {(0, 0)}

    await until(empty, "the cluster forgot every task")


async def worker_pids(dask: DaskExecutor) -> set[int]:
    assert dask.client is not None
    return set((await dask.client.run(os.getpid)).values())


# -- the tasks -------------------------------------------------------------------------


@task(executor="dask")
async def where(x: int) -> tuple[int, int]:
    await asyncio.sleep(0)  # a real coroutine, on the worker's loop
    return os.getpid(), x * 2


@task
async def on_loop() -> int:
    return os.getpid()


@task(executor="dask", retries=1)
async def flaky(log: str) -> int:
    with open(log, "a") as f:
        f.write("x")
    attempts = len(Path(log).read_text())
    if attempts == 1:
        raise RuntimeError("first attempt fails")
    return attempts


async def wait_forever(started: str, seen: str) -> None:
    """Says it started, then waits; writes ``seen`` when cancelled (on the worker)."""
    Path(started).write_text(str(os.getpid()))
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        Path(seen).write_text(f"cancelled in {os.getpid()}")
        raise


@task(executor="dask", retries=1)
async def dies_once(log: str) -> int:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    attempts = len(Path(log).read_text().split())
    if attempts == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return attempts


# -- where attempts run ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("is_async", "options", "executor", "factories", "expected"),
    [
        pytest.param(True, {}, "plain", {}, False, id="coroutine-stays"),
        pytest.param(True, {}, "coroutines", {}, True, id="coroutine-taken"),
        pytest.param(True, {"executor": "dask"}, "plain", {}, True, id="coroutine-named"),
        pytest.param(True, {"executor": "local"}, "coroutines", {}, False, id="coroutine-local"),
        pytest.param(
            True, {"resources": ("r",)}, "coroutines", {"r": dict}, False, id="run-scoped-stays"
        ),
        pytest.param(
            True,
            {"resources": ("r",)},
            "coroutines",
            {"r": worker_scoped(dict)},
            True,
            id="worker-scoped-goes",
        ),
        pytest.param(False, {}, "plain", {}, True, id="function-goes"),
        pytest.param(
            False, {"resources": ("r",)}, "plain", {"r": worker_scoped(dict)}, False, id="fn-res"
        ),
        pytest.param(True, {"executor": "dask"}, None, {}, False, id="no-executor"),
    ],
)
def test_placement(
    is_async: bool,
    options: dict[str, Any],
    executor: str | None,
    factories: dict[str, Any],
    expected: bool,
) -> None:
    chosen = None if executor is None else DaskExecutor(coroutines=executor == "coroutines")
    assert on_executor(is_async, TaskOptions(**options), chosen, factories) is expected


async def test_a_named_executor_the_run_lacks_is_a_graph_problem() -> None:
    with pytest.raises(PipelineDefinitionError, match="runs on executor 'dask'"):
        await Pipeline("no dask").add_task(where(1)).run()


async def test_a_coroutine_sent_with_a_run_scoped_resource_is_a_graph_problem(
    dask: DaskExecutor,
) -> None:
    @task(executor="dask", resources=("r",))
    async def uses(r: Any) -> Any:
        return r

    pipeline = Pipeline("scoped", executor=dask, resources={"r": dict})
    with pytest.raises(PipelineDefinitionError, match=r"run-scoped resource\(s\) 'r'"):
        await pipeline.add_task(uses()).run()


# -- on the cluster --------------------------------------------------------------------


async def test_a_coroutine_runs_on_a_worker_and_returns_its_result(dask: DaskExecutor) -> None:
    here = on_loop()
    remote = where(21)
    result = await Pipeline("where", executor=dask).add_task(here).add_task(remote).run()
    result.raise_for_status()
    pid, doubled = result["where"]
    assert doubled == 42
    assert pid != os.getpid()
    assert pid in await worker_pids(dask)
    assert result["on_loop"] == os.getpid()  # not named, and coroutines=False: stays here
    await nothing_left(dask)


async def test_every_coroutine_goes_with_coroutines_true(
    dask: DaskExecutor, coroutines: DaskExecutor
) -> None:
    @task
    async def double(x: int, context: Any = None) -> tuple[int, int, str]:
        return os.getpid(), 2 * context["seed"], context.run_id

    @task
    async def seed() -> int:
        return 5

    seeded = seed()
    doubled = double(seeded)
    result = await Pipeline("all", executor=coroutines).add_task(doubled).run()
    result.raise_for_status()
    pid, value, run_id = result["double"]
    assert pid in await worker_pids(dask)
    assert pid != os.getpid()
    assert (value, run_id) == (10, result.run_id)


async def test_events_are_those_of_a_local_run(dask: DaskExecutor) -> None:
    def states(events: list[Any]) -> list[TaskState]:
        return [e.state for e in events if isinstance(e, TaskStateChanged)]

    local: list[Any] = []
    remote: list[Any] = []
    await Pipeline("events").add_task(on_loop()).run(on_event=local.append)
    await Pipeline("events", executor=dask).add_task(where(1)).run(on_event=remote.append)
    assert [type(e) for e in remote] == [type(e) for e in local]
    assert states(remote) == states(local) == [TaskState.RUNNING, TaskState.SUCCESS]
    await nothing_left(dask)


async def test_retries_record_every_attempt(dask: DaskExecutor, tmp_path: Path) -> None:
    events: list[Any] = []
    store = MemoryStore()
    pipeline = Pipeline("retry", executor=dask).add_task(flaky(str(tmp_path / "log")))
    result = await pipeline.run(on_event=events.append, store=store)
    assert result["flaky"] == 2
    retried = [e for e in events if isinstance(e, TaskRetrying)]
    assert [type(e.error) for e in retried] == [RuntimeError]
    (info,) = await store.get_tasks(result.run_id)
    assert [a.number for a in info.attempts] == [1, 2]
    await nothing_left(dask)


async def test_a_timeout_cancels_the_coroutine_on_its_worker(
    dask: DaskExecutor, tmp_path: Path
) -> None:
    started, seen = tmp_path / "started", tmp_path / "seen"
    slow = task(executor="dask", timeout=3.0)(wait_forever)(str(started), str(seen))
    result = await Pipeline("timeout", executor=dask).add_task(slow).run()
    assert result.states["wait_forever"] is TaskState.FAILED
    assert isinstance(result.errors["wait_forever"], AttemptTimeout)
    # Seen on the worker before the run returned: the cancel was awaited there.
    worker = int(started.read_text())
    assert seen.read_text() == f"cancelled in {worker}"
    assert worker in await worker_pids(dask)
    await nothing_left(dask)


async def test_cancelling_the_run_cancels_the_coroutine_on_its_worker(
    dask: DaskExecutor, tmp_path: Path
) -> None:
    started, seen = tmp_path / "started", tmp_path / "seen"
    slow = task(executor="dask")(wait_forever)(str(started), str(seen))
    events: list[Any] = []
    pipeline = Pipeline("cancel", executor=dask).add_task(slow)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: pipeline.run(on_event=events.append))
            await until(started.exists, "the coroutine started on a worker")
            scope.cancel()
    assert scope.cancelled_caught
    assert seen.read_text() == f"cancelled in {int(started.read_text())}"
    final = [e.state for e in events if isinstance(e, TaskStateChanged)][-1]
    assert final is TaskState.CANCELLED
    assert dask.client is not None
    assert not dask.client.futures
    await nothing_left(dask)


@pytest.fixture
async def killable() -> AsyncIterator[DaskExecutor]:
    """A cluster of its own for the test that kills a worker: the shared one stays whole."""
    async with DaskExecutor(n_workers=2, threads_per_worker=2) as executor:
        yield executor


async def test_a_killed_workers_coroutine_is_retried(
    killable: DaskExecutor, tmp_path: Path
) -> None:
    events: list[Any] = []
    log = tmp_path / "log"
    result = (
        await Pipeline("killed", executor=killable)
        .add_task(dies_once(str(log)))
        .run(on_event=events.append)
    )
    result.raise_for_status()
    assert result["dies_once"] == 2
    (retry,) = [e for e in events if isinstance(e, TaskRetrying)]
    assert isinstance(retry.error, WorkerLostError)
    first, second = (int(p) for p in log.read_text().split())
    assert first != second != os.getpid()


# -- worker-scoped resources -----------------------------------------------------------


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeDremio]:
    import pyarrow as pa

    async with FakeDremio(password="s3cret") as server:
        server.add_table("lake.numbers", pa.table({"n": list(range(10))}))
        yield server


def logins(server: FakeDremio) -> int:
    return len(server.requests_to("/apiv2/login", "POST"))


@task(resources=("dremio",))
async def count(part: int, dremio: DremioClient) -> tuple[int, int]:
    table = await dremio.query(f"SELECT n FROM lake.numbers WHERE n <= {part % 10}")
    return os.getpid(), table.num_rows


@task(resources=("dremio",))
async def count_via_context(context: Any = None) -> int:
    table = await context.resources["dremio"].query("SELECT n FROM lake.numbers")
    return int(table.num_rows)


async def test_a_worker_scoped_client_logs_in_once_per_worker(
    dask: DaskExecutor, coroutines: DaskExecutor, fake: FakeDremio
) -> None:
    url, password = fake.url, fake.password
    client = worker_scoped(lambda: DremioClient(url, username="dremio", password=password))
    pipeline = Pipeline("logins", executor=coroutines, resources={"dremio": client})
    counts = [count(part) for part in range(40)]
    for t in counts:
        pipeline.add_task(t)
    pipeline.add_task(count_via_context())
    before = logins(fake)
    result = await pipeline.run()
    result.raise_for_status()
    pids = {result[t][0] for t in counts}
    assert pids <= await worker_pids(dask)
    assert [result[t][1] for t in counts[:12]] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]
    assert result["count_via_context"] == 10
    # One login per worker that ran a task, not one per task.
    assert logins(fake) - before == len(pids)
    assert 1 <= len(pids) <= 2


async def test_worker_scoped_in_this_process_is_a_run_resource(fake: FakeDremio) -> None:
    url, password = fake.url, fake.password
    client = worker_scoped(lambda: DremioClient(url, username="dremio", password=password))
    pipeline = Pipeline("here", resources={"dremio": client})
    for part in range(5):
        pipeline.add_task(count(part))
    before = logins(fake)
    result = await pipeline.run()
    result.raise_for_status()
    assert {result[k][0] for k in result} == {os.getpid()}
    assert logins(fake) - before == 1


async def test_an_unpicklable_worker_scoped_factory_is_named(
    dask: DaskExecutor, coroutines: DaskExecutor
) -> None:
    import threading

    lock = threading.Lock()

    @task(resources=("r",))
    async def uses(r: Any) -> Any:
        return r

    factory = worker_scoped(lambda: lock)
    pipeline = Pipeline("unpicklable", executor=coroutines, resources={"r": factory})
    with pytest.raises(TaskPickleError) as info:  # before anything runs
        await pipeline.add_task(uses()).run()
    assert "worker-scoped resource 'r', through its nonlocal 'lock'" in str(info.value)


def refuse_to_open() -> Any:
    raise RuntimeError("no login today")


async def test_a_worker_scoped_resource_that_cannot_open_fails_its_tasks(
    dask: DaskExecutor, coroutines: DaskExecutor
) -> None:
    @task(resources=("r",))
    async def uses(r: Any) -> Any:
        return r

    pipeline = Pipeline("unopened", resources={"r": worker_scoped(refuse_to_open)})
    pipeline.add_task(uses())
    local = (await pipeline.run()).errors["uses"]
    remote = (await pipeline.run(executor=coroutines)).errors["uses"]
    assert isinstance(local, ResourceError)
    assert isinstance(remote, ResourceError)
    assert str(local) == "resource 'r' could not be opened: RuntimeError: no login today"
    assert str(remote) == f"{local} (on a Dask worker)"


def test_coroutines_option_is_checked_and_shown() -> None:
    from dremioframe_async.orchestration import ArgumentError

    with pytest.raises(ArgumentError, match="coroutines must be True or False"):
        DaskExecutor(coroutines="yes")  # type: ignore[arg-type]
    assert repr(DaskExecutor(n_workers=2, coroutines=True)) == (
        "DaskExecutor(n_workers=2, coroutines=True)"
    )


async def test_dremio_query_tasks_share_a_worker_scoped_client(
    dask: DaskExecutor, coroutines: DaskExecutor, fake: FakeDremio
) -> None:
    from dremioframe_async.tasks import DremioQueryTask

    url, password = fake.url, fake.password
    client = worker_scoped(lambda: DremioClient(url, username="dremio", password=password))
    queries = [
        DremioQueryTask(f"q{i}", f"SELECT n FROM lake.numbers WHERE n < {i}") for i in range(24)
    ]
    for q in queries[1:]:
        queries[0].set_downstream(q)
    before = logins(fake)
    result = (
        await Pipeline("dremio tasks", resources={"dremio": client})
        .add_task(queries[0])
        .run(executor=coroutines)
    )
    result.raise_for_status()
    assert [result[q].num_rows for q in queries[:4]] == [0, 1, 2, 3]
    # The tasks ran on the workers: logins there, one per worker at most.
    assert 1 <= logins(fake) - before <= 2


def test_a_task_crosses_without_the_graph_around_it() -> None:
    from dremioframe_async.executors import TaskCall
    from dremioframe_async.executors._pickling import pack
    from dremioframe_async.tasks import DremioQueryTask

    def payload(fan_out: int) -> int:
        queries = [DremioQueryTask(f"q{i}", "SELECT 1") for i in range(fan_out)]
        for q in queries[1:]:
            queries[0].set_downstream(q)
        return len(pack(TaskCall("q1", queries[1].action)))

    assert payload(500) < payload(5) + 64  # the order counter may take a byte more


@task(executor="dask")
async def chatty(name: str, context: Any = None) -> str:
    log = logging.getLogger("tests.on_worker")
    for i in range(3):
        log.warning("%s line %d", name, i)
        await asyncio.sleep(0.01)  # let the other coroutine on the loop log meanwhile
    await asyncio.to_thread(log.warning, "%s from a thread", name)
    context.log.info("%s through context.log", name)
    return name


async def test_a_coroutines_log_lines_are_its_own(dask: DaskExecutor) -> None:
    from test_task_logs import read_all

    store = MemoryStore()
    pipeline = Pipeline("logs", executor=dask)
    for name in "abcdef":  # six on two workers: some share a worker's loop, at once
        pipeline.add_task(chatty(name))
    result = await pipeline.run(store=store)
    result.raise_for_status()
    for key in result:
        name = result[key]
        lines = [(x.attempt, x.message) for x in await read_all(store, result.run_id, key=key)]
        assert lines == [
            *[(1, f"{name} line {i}") for i in range(3)],
            (1, f"{name} from a thread"),
            (1, f"{name} through context.log"),
        ]
    await nothing_left(dask)


async def touch_async(path: str) -> str:
    Path(path).touch()
    return path


async def test_an_attempt_cancelled_before_it_reaches_its_worker_never_starts(
    dask: DaskExecutor, tmp_path: Path
) -> None:
    from dremioframe_async.executors import TaskCall, _pickling, _remote

    client = dask.client
    assert client is not None
    ran = tmp_path / "ran"
    payload = _pickling.pack(TaskCall("early", touch_async, (str(ran),), is_async=True))
    scoped = _pickling.dumps(({}, ()))
    # The driver's cancel reached every worker before the attempt reached one.
    found = await client.run(_remote.cancel_attempt, "early-1", "scope-1")
    assert set(found.values()) == {False}
    future = client.submit(
        _remote.run_coroutine, payload, scoped, "early-1", "scope-1", key="early-1", pure=False
    )
    try:
        assert await future == ("cancelled",)
    finally:
        future.release()
    assert not ran.exists()
    await client.run(_remote.close_scope, "scope-1")
    await nothing_left(dask)
