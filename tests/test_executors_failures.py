"""DaskExecutor failures that must read as themselves: a cluster that cannot start, and
an exception from a task that cannot be pickled back from its worker."""

from __future__ import annotations

import pickle
import threading
from collections.abc import AsyncIterator

import pytest

from dremioframe_async import Pipeline, task
from dremioframe_async.executors import ExecutorError, RemoteTaskError
from dremioframe_async.orchestration import Task

distributed = pytest.importorskip(
    "distributed",
    reason="the Dask executor tests need the dask extra: pip install -e '.[dask]'",
)
from dremioframe_async.executors import DaskExecutor  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # distributed's client runs on asyncio only


@pytest.fixture(scope="module")
async def dask() -> AsyncIterator[DaskExecutor]:
    async with DaskExecutor(n_workers=1, threads_per_worker=1) as executor:
        yield executor


@pytest.mark.parametrize(
    ("options", "cause", "says"),
    [
        pytest.param({"memory_limit": "bogus"}, ValueError, "interpret 'bogus'", id="bad-value"),
        pytest.param({"no_such_option": 1}, RuntimeError, "no_such_option", id="unknown-option"),
    ],
)
async def test_a_cluster_that_cannot_start_is_an_executor_error(
    options: dict[str, object], cause: type[Exception], says: str
) -> None:
    executor = DaskExecutor(n_workers=1, threads_per_worker=1, **options)  # type: ignore[arg-type]
    with pytest.raises(ExecutorError) as caught:
        async with executor:
            pass
    assert "cannot start a local cluster" in str(caught.value)
    assert says in str(caught.value)  # the root cause, even when it is only in a worker's log
    assert isinstance(caught.value.__cause__, cause)
    assert executor.client is None
    assert executor.cluster is None


class Jammed(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class TwoArguments(Exception):
    """Pickles, but cannot be rebuilt: its __init__ wants two arguments."""

    def __init__(self, what: str, code: int) -> None:
        super().__init__(f"{what} failed with {code}")


@task
def jam() -> None:
    raise Jammed("the widget jammed")


@task
def two() -> None:
    raise TwoArguments("the widget", 7)


@pytest.mark.parametrize(
    ("job", "type_name", "message"),
    [
        pytest.param(jam, "Jammed", "the widget jammed", id="unpicklable"),
        pytest.param(two, "TwoArguments", "the widget failed with 7", id="not-rebuildable"),
    ],
)
async def test_an_exception_that_cannot_travel_keeps_its_type_name_and_message(
    dask: DaskExecutor, job: object, type_name: str, message: str
) -> None:
    result = await Pipeline("p", executor=dask).add_task(job()).run()  # type: ignore[operator]
    error = result.errors[job.name]  # type: ignore[attr-defined]
    assert isinstance(error, RemoteTaskError)
    assert error.type_name.endswith(type_name)
    assert error.message == message
    assert f"{type_name}: {message}" in str(error)
    assert "could not be pickled" in str(error)
    assert "raise " in error.remote_traceback  # the worker's traceback, as text


def test_remote_task_error_survives_pickling() -> None:
    error = RemoteTaskError("t", "m.Jammed", "the widget jammed", "TypeError: lock", "tb")
    back = pickle.loads(pickle.dumps(error))
    assert (str(back), back.type_name, back.remote_traceback) == (str(error), "m.Jammed", "tb")


class _Described(Task):
    """A Task subclass whose action is its own bound method, as the Dremio tasks' are."""

    def __init__(self, name: str, sql: str) -> None:
        self.sql = sql  # a subclass field, in its __dict__
        super().__init__(name, self.describe, retries=2)

    def describe(self) -> str:
        return f"{self.name} runs {self.sql} with {self.options.retries} retries"


def test_a_task_travels_to_a_worker_with_its_fields_but_not_its_graph() -> None:
    from dremioframe_async.executors._pickling import dumps, loads

    def noop() -> None:
        return None

    root = Task("root", noop)
    mine = _Described("mine", "SELECT 1")
    for i in range(1_000):
        root >> Task(f"t{i}", noop) >> mine
    root >> mine
    sent = dumps(mine)
    assert len(sent) < 4_000  # not the 1,000 tasks around it
    back = loads(sent)
    assert type(back) is _Described
    assert back.describe() == "mine runs SELECT 1 with 2 retries"  # slots and __dict__ both
    assert (back.upstream, back.downstream) == ((), ())
    plain = loads(dumps(Task("plain", noop, retries=1)))
    assert (plain.name, plain.options.retries, plain.upstream) == ("plain", 1, ())
