"""Adding and removing a capture handler must not cost a record in flight a handler.

``Logger.removeHandler`` deletes from the list another thread may be walking, and
that walk then skips the handler after the removed one. Each test holds one
thread's record in the middle of the walk (a gate handler), removes a handler
before it, and checks that the handler after the gate still got the record.
"""

from __future__ import annotations

import logging
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

from dremioframe_async.executors import _remote
from dremioframe_async.orchestration import _logs

WAIT = 10.0


class Gate(logging.Handler):
    """Holds the record saying ``message`` until ``let_go`` is set."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message
        self.holding = threading.Event()
        self.let_go = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.message:
            self.holding.set()
            assert self.let_go.wait(WAIT)


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_worker_task_ending_does_not_cost_another_task_its_line() -> None:
    """Two tasks on one worker's threads: B's capture goes while A's line is in flight."""
    root = logging.getLogger()
    gate = Gate("from a")
    b_started, a_may_log = threading.Event(), threading.Event()
    capture = (100, 1 << 16, logging.NOTSET)

    def task_b() -> str:
        b_started.set()
        assert gate.holding.wait(WAIT)  # ends while A's record waits at the gate
        return "b"

    def task_a() -> str:
        assert a_may_log.wait(WAIT)
        logging.getLogger("tests.worker").warning("from a")
        return "a"

    with ThreadPoolExecutor(2) as pool:
        b = pool.submit(_remote._run, task_b, (), {}, capture)  # its capture is added first
        assert b_started.wait(WAIT)
        root.addHandler(gate)  # then the gate, then A's capture: [.., B's, gate, A's]
        try:
            a = pool.submit(_remote._run, task_a, (), {}, capture)
            a_may_log.set()
            b_outcome = b.result(WAIT)  # B's capture removed while A is at the gate
            gate.let_go.set()
            a_outcome = a.result(WAIT)
        finally:
            gate.let_go.set()
            root.removeHandler(gate)
    assert b_outcome[0] == "ok"
    assert pickle.loads(b_outcome[1]) == "b"
    assert b_outcome[2] == ([], 0)  # A's line is not B's
    lines, dropped = a_outcome[2]
    assert [line[3] for line in lines] == ["from a"]
    assert dropped == 0


def test_the_engine_capture_leaving_does_not_cost_the_users_handler_a_line() -> None:
    """The last capturing run ends while an application thread's record is in flight."""
    root = logging.getLogger()
    gate, kept = Gate("app line"), Kept()
    _logs._install()
    installed = True
    root.addHandler(gate)  # after the capture handler: [.., capture, gate, user's]
    root.addHandler(kept)
    try:
        with ThreadPoolExecutor(1) as pool:
            app = pool.submit(logging.getLogger("tests.app").warning, "app line")
            assert gate.holding.wait(WAIT)
            _logs._uninstall()  # the capture handler goes, before the gate
            installed = False
            gate.let_go.set()
            app.result(WAIT)
    finally:
        gate.let_go.set()
        if installed:
            _logs._uninstall()
        root.removeHandler(gate)
        root.removeHandler(kept)
    assert kept.messages == ["app line"]
    assert _logs._HANDLER not in root.handlers


def test_remove_handler_leaves_the_others_in_order() -> None:
    logger = logging.getLogger("tests.remove_handler")
    one, two, three = Kept(), Kept(), Kept()
    for h in (one, two, three):
        logger.addHandler(h)
    try:
        _logs.remove_handler(logger, two)
        _logs.remove_handler(logger, two)  # not there any more: nothing happens
        assert logger.handlers == [one, three]
    finally:
        for h in (one, three):
            logger.removeHandler(h)
