"""The executors on their own: the local threads, and Dask on a real LocalCluster.

The Dask tests share one cluster of 2 worker processes per module (starting one
takes a second or two); the test that kills a worker waits for its replacement.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from dremioframe_async import (
    DremioFrameError,
    Pipeline,
    TaskRetrying,
    TaskState,
    TaskStateChanged,
    task,
)
from dremioframe_async.executors import (
    ExecutorError,
    LocalExecutor,
    ResultSizeWarning,
    TaskCall,
    TaskPickleError,
    WorkerLostError,
)
from dremioframe_async.orchestration import ArgumentError
from dremioframe_async.store import MemoryStore

distributed = pytest.importorskip(
    "distributed",
    reason="the Dask executor tests need the dask extra: pip install -e '.[dask]'",
)
from dremioframe_async.executors import DaskExecutor  # noqa: E402
from dremioframe_async.executors._dask import DaskSession  # noqa: E402

pytestmark = pytest.mark.anyio

LOCK = threading.Lock()
BOUND = 30.0  # generous: the machine is shared


class Boom(RuntimeError):
    pass


def pid_and_sum(a: int, b: int = 0) -> tuple[int, int]:
    return os.getpid(), a + b


def explode(x: int) -> None:
    raise Boom(f"exploded on {x}")


def nonce() -> str:
    return uuid.uuid4().hex


def uses_lock() -> bool:
    with LOCK:
        return True


def returns_lock() -> Any:
    return threading.Lock()


def big_result(n: int) -> bytes:
    return b"x" * n


def die(log: str) -> None:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def wait_for_file(started: str, go: str) -> str:
    Path(started).touch()
    deadline = time.monotonic() + BOUND
    while not Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"


def touch(path: str) -> None:
    Path(path).touch()


async def until(predicate: Callable[[], Any], what: str) -> None:
    """Poll ``predicate`` (a state on another process) until true, within BOUND."""
    with anyio.fail_after(BOUND):
        while not await _maybe_await(predicate()):
            await anyio.sleep(0.02)


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value


# -- the local executor ------------------------------------------------------------


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # distributed's client runs on asyncio only


async def test_local_runs_in_a_thread_of_this_process() -> None:
    async with LocalExecutor().session(concurrency=2) as session:
        pid, total = await session.run(TaskCall("add", pid_and_sum, (1,), {"b": 2}))
        ident = await session.run(TaskCall("ident", threading.get_ident))
    assert (pid, total) == (os.getpid(), 3)
    assert ident != threading.get_ident()


async def test_local_exception_keeps_its_traceback() -> None:
    async with LocalExecutor().session(concurrency=None) as session:
        with pytest.raises(Boom, match="exploded on 7") as info:
            await session.run(TaskCall("explode", explode, (7,)))
    assert "explode" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]


async def test_local_abandons_a_timed_out_thread_and_releases_when_it_ends(
    tmp_path: Path,
) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    released = threading.Event()
    call = TaskCall("wait", wait_for_file, (str(started), str(go)), release=released.set)
    async with LocalExecutor().session(concurrency=None) as session:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.run, call)
                await until(started.exists, "the thread started")
                scope.cancel()
        assert scope.cancelled_caught
        assert not released.is_set()  # the thread still runs: its slots stay taken
        go.touch()
        await until(released.is_set, "the thread ended")


# -- Dask: one LocalCluster of 2 worker processes for the module ---------------------


@pytest.fixture(scope="module")
async def dask() -> AsyncIterator[DaskExecutor]:
    async with DaskExecutor(n_workers=2, threads_per_worker=1) as executor:
        yield executor


@pytest.fixture
async def session(dask: DaskExecutor) -> AsyncIterator[DaskSession]:
    assert dask.client is not None
    await dask.client.wait_for_workers(2, timeout=BOUND)
    async with dask.session(concurrency=None) as s:
        yield s
    await no_futures_left(dask)


async def no_futures_left(dask: DaskExecutor) -> None:
    client = dask.client
    assert client is not None

    async def scheduler_empty() -> bool:
        count = await client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        return not client.futures and count == 0

    await until(scheduler_empty, "the scheduler forgot every task")


async def test_dask_runs_tasks_in_other_processes(dask: DaskExecutor, session: DaskSession) -> None:
    assert dask.cluster is not None
    assert len(dask.cluster.workers) == 2
    pid, total = await session.run(TaskCall("add", pid_and_sum, (2,), {"b": 3}))
    assert total == 5
    assert pid != os.getpid()
    worker_pids = await session.client.run(os.getpid)
    assert pid in worker_pids.values()


async def test_dask_identical_calls_are_separate_attempts(session: DaskSession) -> None:
    results: list[str] = []

    async def one() -> None:
        results.append(await session.run(TaskCall("nonce", nonce)))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    assert len(set(results)) == 3


async def test_dask_exception_comes_back_with_its_type_and_traceback(session: DaskSession) -> None:
    with pytest.raises(Boom, match="exploded on 3") as info:
        await session.run(TaskCall("explode", explode, (3,)))
    frames = traceback.extract_tb(info.value.__traceback__)
    mine = [f for f in frames if f.name == "explode"]
    assert mine, [f.name for f in frames]
    assert mine[0].filename == __file__
    assert mine[0].line == 'raise Boom(f"exploded on {x}")'


@pytest.fixture
async def killable() -> AsyncIterator[DaskExecutor]:
    """A cluster of its own for tests that kill workers: the shared one stays whole."""
    async with DaskExecutor(n_workers=2, threads_per_worker=1) as executor:
        yield executor


async def test_dask_killed_worker_fails_the_attempt(killable: DaskExecutor, tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    with pytest.raises(WorkerLostError, match="'die'") as info:
        async with killable.session(concurrency=None) as session:
            await session.run(TaskCall("die", die, (str(log),)))
    assert isinstance(info.value.__cause__, distributed.scheduler.KilledWorker)
    # The scheduler did not re-run it on the other worker: the task's own retry
    # policy decides.
    assert len(log.read_text().split()) == 1
    assert not isinstance(info.value, TypeError)  # retryable by the default policy


async def test_dask_cancellation_cancels_the_future(
    dask: DaskExecutor, session: DaskSession, tmp_path: Path
) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    released = threading.Event()
    call = TaskCall("wait", wait_for_file, (str(started), str(go)), release=released.set)
    try:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.run, call)
                await until(started.exists, "the task started on a worker")
                scope.cancel()
        assert scope.cancelled_caught
        assert released.is_set()
        assert not session.client.futures  # cancelled, not merely left to be collected
        await no_futures_left(dask)
    finally:
        go.touch()  # the worker's thread cannot be interrupted: let it end


async def test_dask_timeout_cancels_the_future(
    dask: DaskExecutor, session: DaskSession, tmp_path: Path
) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    try:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(1.0):
                await session.run(TaskCall("wait", wait_for_file, (str(started), str(go))))
        assert not session.client.futures
        await no_futures_left(dask)
    finally:
        go.touch()


async def test_dask_unpicklable_argument_is_named_before_anything_runs(
    session: DaskSession, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    call = TaskCall("load", touch, (str(ran),), {"conn": LOCK})
    # `touch` takes no `conn`: had the call been sent, it would fail differently.
    with pytest.raises(TaskPickleError) as info:
        await session.run(call)
    message = str(info.value)
    assert "task 'load'" in message
    assert "argument 'conn'" in message
    assert "_thread.lock" in message
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, DremioFrameError)
    assert not ran.exists()
    assert not session.client.futures


async def test_dask_unpicklable_part_is_found_inside_containers(session: DaskSession) -> None:
    with pytest.raises(TaskPickleError, match=r"argument 'b'\['conn'\]\[1\] \(_thread.lock\)"):
        await session.run(TaskCall("add", pid_and_sum, (1,), {"b": {"conn": [1, LOCK]}}))


async def test_dask_unpicklable_global_of_the_function_is_named(session: DaskSession) -> None:
    # This test module is not installed, so its functions go by value, globals too.
    with pytest.raises(TaskPickleError, match="uses_lock, through its global 'LOCK'"):
        await session.run(TaskCall("locked", uses_lock))


async def test_dask_unpicklable_result_is_named(session: DaskSession) -> None:
    with pytest.raises(TaskPickleError, match="task 'lock': its result"):
        await session.run(TaskCall("lock", returns_lock))


async def test_dask_large_result_warns_naming_the_task(dask: DaskExecutor) -> None:
    assert dask.client is not None
    session = DaskSession(dask.client, large_result_bytes=10_000)
    assert await session.run(TaskCall("small", big_result, (100,))) == b"x" * 100
    with pytest.warns(ResultSizeWarning, match="task 'big'"):
        assert await session.run(TaskCall("big", big_result, (20_000,))) == b"x" * 20_000


async def test_dask_runs_a_user_module_the_workers_cannot_import(
    session: DaskSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The workers started before this directory joined sys.path: only a copy of
    # the module sent by value lets them run its function.
    name = f"userpkg_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (package / "jobs.py").write_text(
        textwrap.dedent(f"""
        from {name}.helpers import double

        def quadruple(x):
            return double(double(x))
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    jobs = __import__(f"{name}.jobs", fromlist=["quadruple"])
    try:
        assert await session.run(TaskCall("quad", jobs.quadruple, (3,))) == 12
    finally:
        for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[module]


async def test_dask_scheduler_address_and_given_client(dask: DaskExecutor) -> None:
    assert dask.cluster is not None
    address = dask.cluster.scheduler_address
    by_address = DaskExecutor(address)
    async with by_address.session(concurrency=None) as s:
        pid, total = await s.run(TaskCall("add", pid_and_sum, (4,)))
        assert s.client is not dask.client
    assert total == 4
    assert pid != os.getpid()
    assert by_address.client is None  # disconnected at the end of the run
    given = DaskExecutor(client=dask.client)
    async with given.session(concurrency=None) as s:
        assert s.client is dask.client
    assert dask.client is not None
    assert dask.client.status == "running"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"address": "tcp://x:1", "client": object()}, "not both", id="both"),
        pytest.param({"address": "tcp://x:1", "n_workers": 2}, "n_workers", id="options"),
        pytest.param({"large_result_bytes": "big"}, "large_result_bytes", id="threshold"),
    ],
)
def test_dask_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ArgumentError, match=match):
        DaskExecutor(**kwargs)


async def test_dask_refuses_a_synchronous_client(dask: DaskExecutor) -> None:
    assert dask.cluster is not None
    address = dask.cluster.scheduler_address
    sync_client = await anyio.to_thread.run_sync(distributed.Client, address)
    try:
        with pytest.raises(ArgumentError, match="asynchronous=True"):
            DaskExecutor(client=sync_client)
    finally:
        await anyio.to_thread.run_sync(sync_client.close)


def test_dask_executor_repr_says_where_it_runs() -> None:
    assert repr(DaskExecutor("tcp://s:8786")) == "DaskExecutor(address='tcp://s:8786')"
    assert repr(DaskExecutor(n_workers=2)) == "DaskExecutor(n_workers=2)"
    assert repr(LocalExecutor()) == "LocalExecutor()"


def test_unknown_name_in_executors_module() -> None:
    import dremioframe_async.executors as executors

    with pytest.raises(AttributeError, match="RayExecutor"):
        _ = executors.RayExecutor


def test_without_the_dask_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import dremioframe_async.executors as executors
    from dremioframe_async.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "dremioframe_async.executors._dask")
    with pytest.raises(MissingExtra, match=r"pip install 'dremioframe_async\[dask\]'"):
        _ = executors.DaskExecutor


class Holder:
    def __init__(self) -> None:
        self.name = "fine"
        self.conn = LOCK


async def test_dask_unpicklable_attribute_is_named(session: DaskSession) -> None:
    with pytest.raises(TaskPickleError, match=r"argument 'b'\.conn \(_thread.lock\)"):
        await session.run(TaskCall("add", pid_and_sum, (1, Holder())))


async def test_dask_large_arguments_are_pickled_off_the_loop(session: DaskSession) -> None:
    blob = b"y" * (3 * 2**20)
    assert await session.run(TaskCall("len", len, (blob,))) == len(blob)


async def test_dask_unreachable_scheduler_is_a_clear_error() -> None:
    import dask.config

    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        executor = DaskExecutor("tcp://127.0.0.1:9")
        with pytest.raises(
            ExecutorError, match=r"cannot reach the scheduler at tcp://127\.0\.0\.1:9"
        ):
            async with executor.session(concurrency=None):
                pass


def test_dask_under_trio_is_a_clear_error() -> None:
    import trio

    async def open_under_trio() -> None:
        async with DaskExecutor().session(concurrency=None):
            pass

    with pytest.raises(ExecutorError, match="needs asyncio"):
        trio.run(open_under_trio)


def child_pids() -> set[int]:
    """Processes whose parent is this one (Linux /proc)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # FileNotFoundError, ProcessLookupError: reaped meanwhile
                continue
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if int(ppid) == os.getpid() and state not in ("Z", "X"):  # a zombie has ended
                children.add(int(entry.name))
    return children


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
async def test_cancelled_while_the_cluster_starts_leaves_no_process(dask: DaskExecutor) -> None:
    before = child_pids()
    executor = DaskExecutor(n_workers=1, threads_per_worker=1)
    started = anyio.Event()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: executor.__aenter__())

            async def cancel_once_a_worker_process_exists() -> None:
                await until(lambda: child_pids() - before, "a worker process started")
                started.set()
                scope.cancel()

            tg.start_soon(cancel_once_a_worker_process_exists)
    assert started.is_set()
    assert executor.client is None
    assert executor.cluster is None
    await until(lambda: not (child_pids() - before), "every new process ended")


async def test_dask_local_cluster_lives_for_one_run_and_leaves_nothing() -> None:
    executor = DaskExecutor(n_workers=1, threads_per_worker=1)
    async with executor.session(concurrency=None) as s:
        pid, _ = await s.run(TaskCall("add", pid_and_sum, (1,)))
        cluster = executor.cluster
        assert cluster is not None
    assert executor.client is None
    assert executor.cluster is None
    assert cluster.status.name == "closed"

    def gone() -> bool:
        # Signal 0 reaches a zombie too: where /proc tells, state Z or X counts as gone.
        try:
            os.kill(pid, 0)
            if Path("/proc/self/stat").exists():
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
                return state in ("Z", "X")
        except (FileNotFoundError, ProcessLookupError):  # reaped before or while it was read
            return True
        return False

    await until(gone, "the worker process ended")


# -- Dask through the engine: Pipeline(executor=...) and run(executor=...) ----------


def flaky(log: str) -> int:
    """Fails on its first attempt, succeeds on the second."""
    with open(log, "a") as f:
        f.write("x")
    attempts = len(Path(log).read_text())
    if attempts == 1:
        raise Boom("first attempt fails")
    return attempts


def dies_once(log: str) -> int:
    """Kills its worker on the first attempt; the retry succeeds."""
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    attempts = len(Path(log).read_text().split())
    if attempts == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return attempts


def interval(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def plain_pid() -> int:
    return os.getpid()


async def loop_pid() -> int:
    return os.getpid()


def add(a: int, b: int) -> int:
    return a + b


async def test_pipeline_runs_plain_tasks_on_dask_coroutines_on_the_loop(
    dask: DaskExecutor,
) -> None:

    on_loop = task(loop_pid)()
    on_worker = task(plain_pid)()
    total = task(add)(on_loop, on_worker)  # data edges into a task on a worker
    result = await Pipeline("mixed", executor=dask).add_task(total).run()
    result.raise_for_status()
    assert result["loop_pid"] == os.getpid()
    assert result["plain_pid"] != os.getpid()
    assert result["add"] == result["loop_pid"] + result["plain_pid"]


async def test_run_executor_overrides_the_pipelines(dask: DaskExecutor) -> None:

    pipeline = Pipeline("override").add_task(task(plain_pid)())
    assert (await pipeline.run())["plain_pid"] == os.getpid()
    assert (await pipeline.run(executor=dask))["plain_pid"] != os.getpid()


def test_pipeline_rejects_what_is_not_an_executor() -> None:

    with pytest.raises(ArgumentError, match="executor must be an Executor"):
        Pipeline("bad", executor="dask")  # type: ignore[arg-type]


async def test_retries_on_dask_record_every_attempt(dask: DaskExecutor, tmp_path: Path) -> None:

    events: list[Any] = []
    store = MemoryStore()
    flaky_task = task(retries=1)(flaky)(str(tmp_path / "log"))
    result = (
        await Pipeline("retry")
        .add_task(flaky_task)
        .run(executor=dask, on_event=events.append, store=store)
    )
    assert result["flaky"] == 2
    retried = [e for e in events if isinstance(e, TaskRetrying)]
    assert [type(e.error) for e in retried] == [Boom]
    (info,) = await store.get_tasks(result.run_id)
    assert [a.number for a in info.attempts] == [1, 2]
    assert info.attempts[0].error_type is not None
    assert "Boom" in info.attempts[0].error_type


async def test_killed_workers_task_is_retried(killable: DaskExecutor, tmp_path: Path) -> None:
    events: list[Any] = []
    log = tmp_path / "log"
    result = (
        await Pipeline("killed")
        .add_task(task(retries=1)(dies_once)(str(log)))
        .run(executor=killable, on_event=events.append)
    )
    result.raise_for_status()
    assert result["dies_once"] == 2
    (retry,) = [e for e in events if isinstance(e, TaskRetrying)]
    assert isinstance(retry.error, WorkerLostError)
    pids = log.read_text().split()
    assert len(pids) == 2
    assert str(os.getpid()) not in pids


async def test_timeout_on_dask_fails_the_attempt_and_cancels_the_future(
    dask: DaskExecutor, tmp_path: Path
) -> None:

    started, go = tmp_path / "started", tmp_path / "go"
    slow = task(timeout=1.0)(wait_for_file)(str(started), str(go))
    try:
        result = await Pipeline("timeout", executor=dask).add_task(slow).run()
        assert result.states["wait_for_file"] is TaskState.FAILED
        assert isinstance(result.tasks["wait_for_file"].error, TimeoutError)
        await no_futures_left(dask)
    finally:
        go.touch()


async def test_cancelling_the_run_cancels_the_futures(dask: DaskExecutor, tmp_path: Path) -> None:

    started, go = tmp_path / "started", tmp_path / "go"
    events: list[Any] = []
    slow = task(wait_for_file)(str(started), str(go))
    pipeline = Pipeline("cancel", executor=dask).add_task(slow)
    try:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: pipeline.run(on_event=events.append))
                await until(started.exists, "the task started on a worker")
                scope.cancel()
        assert scope.cancelled_caught
        assert dask.client is not None
        assert not dask.client.futures
        states = [e.state for e in events if isinstance(e, TaskStateChanged)]
        assert states[-1] is TaskState.CANCELLED
        await no_futures_left(dask)
    finally:
        go.touch()


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"pools": {"cpu": 1}}, id="pool"),
        pytest.param({"max_concurrency": 1}, id="max_concurrency"),
    ],
)
async def test_limits_bound_the_work_in_flight_on_the_cluster(
    dask: DaskExecutor, limits: dict[str, Any]
) -> None:

    assert dask.client is not None
    await dask.client.wait_for_workers(2, timeout=BOUND)  # room for two at once
    work = task(pool="cpu" if "pools" in limits else None)(interval)
    pipeline = Pipeline("bounded", executor=dask, **limits)
    for _ in range(3):
        pipeline.add_task(work(0.3))
    result = await pipeline.run()
    result.raise_for_status()
    spans = sorted(result[key] for key in result)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, spans


async def test_unpicklable_argument_is_refused_before_any_task_starts(
    dask: DaskExecutor, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    first = task(touch)(str(ran))
    locked = task(add)(1, LOCK)
    first.set_downstream(locked)
    events: list[Any] = []
    with pytest.raises(TaskPickleError, match=r"task 'add': argument 'b' \(_thread.lock\)"):
        await Pipeline("pickle", executor=dask).add_task(locked).run(on_event=events.append)
    assert events == []
    assert not ran.exists()


async def async_lock() -> Any:
    return threading.Lock()


async def test_unpicklable_upstream_result_fails_the_task_without_retries(
    dask: DaskExecutor,
) -> None:
    locked = task(retries=2)(add)(1, task(async_lock)())
    result = await Pipeline("pickle", executor=dask).add_task(locked).run()
    assert result.states["add"] is TaskState.FAILED
    run = result.tasks["add"]
    assert isinstance(run.error, TaskPickleError)
    assert "argument 'b' (_thread.lock)" in str(run.error)
    assert run.attempts == 1


async def test_coroutine_pipeline_never_opens_the_executor() -> None:

    unreachable = DaskExecutor("tcp://127.0.0.1:9")
    result = await Pipeline("async only", executor=unreachable).add_task(task(loop_pid)()).run()
    assert result["loop_pid"] == os.getpid()


SCRIPT = """
import asyncio
import os

from dremioframe_async import Pipeline, task
from dremioframe_async.executors import DaskExecutor


class Point:  # defined in __main__ too: crosses by value, comes back as itself
    def __init__(self, x):
        self.x = x


@task
def square(n):
    return Point(n * n), os.getpid()


async def main():
    executor = DaskExecutor(n_workers=1, threads_per_worker=1)
    result = await Pipeline("script", executor=executor).add_task(square(7)).run()
    point, pid = result["square"]
    print(type(point) is Point, point.x, pid != os.getpid(), executor.cluster is None)


if __name__ == "__main__":
    asyncio.run(main())
"""


@pytest.mark.timeout(BOUND * 2 + 10)  # above the script's own timeout
def test_a_task_defined_in_a_scripts_main_runs_on_dask(tmp_path: Path) -> None:
    script = tmp_path / "pipeline_script.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=BOUND * 2,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "49", "True", "True"], done.stderr


def reads_context(context: Any = None) -> tuple[str, Any, Any, list[str]]:
    return context.run_id, context["plain_pid"], context["day"], sorted(context)


async def test_a_task_on_dask_reads_its_context(dask: DaskExecutor) -> None:
    upstream = task(plain_pid)()
    reader = task(reads_context)()
    upstream.set_downstream(reader)
    result = await Pipeline("context", executor=dask).add_task(reader).run({"day": "mon"})
    result.raise_for_status()
    run_id, pid, day, keys = result["reads_context"]
    assert (run_id, pid, day) == (result.run_id, result["plain_pid"], "mon")
    assert keys == ["day", "plain_pid"]


async def test_a_local_task_stays_in_this_process(dask: DaskExecutor) -> None:
    here = task(executor="local")(plain_pid)()
    there = task(name="there")(plain_pid)()
    result = await Pipeline("local", executor=dask).add_task(here).add_task(there).run()
    assert result["plain_pid"] == os.getpid()
    assert result["there"] != os.getpid()


async def test_only_local_tasks_never_open_the_executor() -> None:
    unreachable = DaskExecutor("tcp://127.0.0.1:9")
    here = task(executor="local")(plain_pid)()
    result = await Pipeline("local only", executor=unreachable).add_task(here).run()
    assert result["plain_pid"] == os.getpid()


def pid_and_resource(counter: dict[str, int]) -> tuple[int, int]:
    return os.getpid(), counter["n"]


def reads_a_resource(context: Any) -> str:
    try:
        context.resources["counter"]
    except KeyError as exc:
        return str(exc)
    return "no error"  # pragma: no cover - the lookup raises


async def test_a_task_needing_a_resource_stays_in_this_process(dask: DaskExecutor) -> None:
    counter = {"n": 7}
    here = task(resources=("counter",))(pid_and_resource)()
    there = task(name="there")(plain_pid)()
    pipeline = Pipeline("resource", executor=dask, resources={"counter": lambda: counter})
    result = await pipeline.add_task(here).add_task(there).run()
    assert result["pid_and_resource"] == (os.getpid(), 7)
    assert result["there"] != os.getpid()


async def test_tasks_needing_resources_never_open_the_executor() -> None:
    unreachable = DaskExecutor("tcp://127.0.0.1:9")
    here = task(resources=("counter",))(pid_and_resource)()
    pipeline = Pipeline("resources only", executor=unreachable)
    result = await pipeline.add_task(here).run(resources={"counter": lambda: {"n": 1}})
    assert result["pid_and_resource"] == (os.getpid(), 1)


async def test_context_resources_on_a_worker_say_where_they_live(dask: DaskExecutor) -> None:
    reader = task(reads_a_resource)()
    pipeline = Pipeline("remote", executor=dask, resources={"counter": lambda: 1})
    result = await pipeline.add_task(reader).run()
    assert "resources live in the process that runs the pipeline" in result["reads_a_resource"]
    assert "@task(resources=('counter',))" in result["reads_a_resource"]


def test_task_executor_option_is_checked_at_decoration() -> None:
    from dremioframe_async import TaskDefinitionError

    with pytest.raises(TaskDefinitionError, match="executor must be 'local'"):
        task(executor="")(plain_pid)
    with pytest.raises(TaskDefinitionError, match="an executor's name"):
        task(executor=3)(plain_pid)  # type: ignore[arg-type]


async def test_a_cancelled_run_still_runs_its_cleanup_task_on_dask(
    dask: DaskExecutor, tmp_path: Path
) -> None:
    started, go, cleaned = tmp_path / "started", tmp_path / "go", tmp_path / "cleaned"
    slow = task(wait_for_file)(str(started), str(go))
    cleanup = task(name="cleanup", trigger_rule="all_done")(touch)(str(cleaned))
    slow.set_downstream(cleanup)
    events: list[Any] = []
    pipeline = Pipeline("cleanup", executor=dask, cleanup_grace=BOUND).add_task(slow)
    try:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: pipeline.run(on_event=events.append))
                await until(started.exists, "the slow task started on a worker")
                scope.cancel()
        assert scope.cancelled_caught
        assert cleaned.exists()  # ran on a worker, after the slow task's future was cancelled
        final = {e.key: e.state for e in events if isinstance(e, TaskStateChanged)}
        assert final == {"wait_for_file": TaskState.CANCELLED, "cleanup": TaskState.SUCCESS}
        await no_futures_left(dask)
    finally:
        go.touch()
