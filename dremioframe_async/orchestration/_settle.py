"""Settling task instances and propagating their final states downstream.

Readiness is bookkeeping, not waiting: each task instance keeps counts of how
its upstream tasks ended, and when an upstream task finishes the run updates
its downstream tasks' counts and evaluates their trigger rules right there. A
task whose rule is met goes on the ready queue; a rule that can no longer be
met settles the task (and, in turn, its downstream tasks) at once. A task with
more downstream tasks than ``TELL_SLICE`` tells the rest later, a slice at a
time (``spill``, worked through by the runners), so a wide fan-out never holds
the loop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ._logs import CAPTURE_LOCK
from ._node import ChildNode, Node, Settlement
from ._rules import (
    Verdict,
    decide,
    only_successes_matter,
    reevaluated_on_resume,
    runs_on_cancel,
)
from ._run_core import TELL_SLICE, RunCore
from ._states import FINAL_STATES, TaskState

__all__ = ["Settling"]

_S = TaskState
_BAD = frozenset({_S.FAILED, _S.UPSTREAM_FAILED, _S.CANCELLED})  # a run with one is FAILED


class Settling(RunCore):
    """Final states, and the trigger rules of the tasks downstream of them."""

    def _settle(
        self,
        node: Node,
        state: TaskState,
        *,
        result: Any = None,
        error: BaseException | None = None,
        reason: str = "",
    ) -> None:
        """Give ``node`` its final state and let everything downstream react."""
        self._drain([Settlement(node, state, result, error, reason)])

    def _drain(self, work: list[Settlement]) -> None:
        # A work list rather than recursion: long chains settle without deep stacks.
        keep, ends = self.keep, self.times.ends
        # With task records (a store is the only reader), each final state is emitted
        # here as a ``TaskRecord`` (as ``_state_event`` would make it), without a call.
        records = self.emit if self.task_records else None
        run_id, times = self.run_id, self.times
        if records is not None:  # read once per batch of settlements, not once per task
            upstream_keys, pipeline = self.plan.upstream_keys, self.plan.pipeline
        # Plain tasks' log capture (see ``_logs``): an attempt ends where its node settles.
        capture = self.observe.capture if self.observe is not None else None
        lazy = capture.lazy if capture is not None else None
        busy = CAPTURE_LOCK.locked
        while work:
            n, st, res, err, why = work.pop()
            # Its result and error before its state: a task in a thread that reads the
            # state (``self.results``, through its context) then finds them there.
            if st is _S.SUCCESS:
                n.result = res  # ``self.results`` reads it there, if the run keeps it
            if err is not None:  # rare: kept in the node's __dict__, not in a slot each
                n.error = err
            n.state, n.reason = st, why
            if lazy is not None and (lazy or busy()):
                # Its lines, before its state. Also when a thread holds the capture
                # lock: it may be making this task's log (``RunLogs.end`` waits).
                capture.end(n)  # type: ignore[union-attr]
            now = time.time()
            if type(n) is ChildNode:
                n.finished = now
            else:
                ends[n.i] = now  # a plan task's, by its position
            writes = None
            if st is _S.SUCCESS:
                if n.pstate is not None:
                    writes = n.pstate.writes  # they travel on its record
                    self.state.commit(writes)
            elif st in _BAD:
                self.n_bad += 1  # counted here: the run's status reads no node at its end
            self.remaining -= 1
            if records is not None:
                upstream = upstream_keys[n.i] if n.parent is None else ()
                records(
                    (
                        run_id,
                        n.key,
                        st,
                        now,
                        n.attempts,
                        n.error,
                        res if st is _S.SUCCESS else None,
                        why,
                        upstream,
                        writes,
                        pipeline,
                        times.started(n),
                    )
                )
            elif self.emit is not None:
                self._state_event(n)
            if keep is not None and not keep[n.i] and n.parent is None:
                n.result = None  # on its event (for the store) but kept by nobody
            if self.closing:
                continue
            if n.parent is not None:
                self._child_done(n.parent, st, work)
                continue
            downs = self.plan.downstream[n.i]
            if len(downs) > TELL_SLICE and not self.cancelling:
                self.spill.append((n, st, TELL_SLICE))  # the rest, from a runner (_tell_more)
                downs = downs[:TELL_SLICE]
            self._tell(downs, st, work)

    def _tell(self, downs: Sequence[int], state: TaskState, work: list[Settlement]) -> None:
        """Tell the ``downs`` tasks that an upstream task ended ``state``."""
        nodes = self.nodes
        if state is not _S.SUCCESS or self.cancelling:
            for d in downs:
                self._upstream_done(nodes[d], state, work)
            return
        for d in downs:  # ``_upstream_done`` inlined for the common case
            node = nodes[d]
            node.n_success += 1
            if node.queued or node.state in FINAL_STATES:
                continue
            if only_successes_matter(node.task.options.trigger_rule):
                if node.n_success == len(node.upstream):
                    self._enqueue(node, work)
            else:
                self._react(node, state, work)

    def _upstream_done(self, d: Node, state: TaskState, work: list[Settlement]) -> None:
        d.count(state)
        if d.queued or d.state in FINAL_STATES:
            return
        self._react(d, state, work)

    def _react(self, d: Node, state: TaskState, work: list[Settlement]) -> None:
        """Decide ``d``, whose upstream ``state`` is counted, unless it is queued or settled."""
        rule = d.task.options.trigger_rule
        if self.cancelling:
            self._decide_cancelled(d, work)
            return
        if state is _S.SUCCESS and only_successes_matter(rule):
            # The common case, decided without a snapshot of the counts.
            if d.n_success == len(d.upstream):
                self._enqueue(d, work)
            return
        decision = decide(rule, d.counts())
        if decision.verdict is Verdict.RUN:
            self._enqueue(d, work)
        elif decision.verdict is not Verdict.WAIT:
            d.queued = True  # decided: another path to ``d`` must not settle it again
            work.append(Settlement(d, decision.verdict.state(), reason=decision.reason))

    def _decide_cancelled(self, d: Node, work: list[Settlement]) -> None:
        """In a cancelled run: cleanup runs once all upstream tasks ended, nothing else."""
        if d.counts().pending:
            return  # decided once its upstream tasks end, so cleanup keeps the graph's order
        if runs_on_cancel(d.task.options.trigger_rule):
            self._enqueue(d, work)
        else:
            d.queued = True
            work.append(Settlement(d, _S.CANCELLED, reason=self._why_cancelled()))

    def _child_done(self, parent: Node, state: TaskState, work: list[Settlement]) -> None:
        if state is not _S.SUCCESS:  # counted as they end: no scan of every instance at the end
            parent.children_bad += 1
            if state is _S.CANCELLED:
                parent.children_cancelled += 1
        parent.left -= 1
        if parent.left:
            return
        children = parent.children
        # The last instance has ended: the parent lets go of them, so that a finished
        # run's nodes hold no cycle and are freed as soon as its result is dropped (its
        # nodes may have been made frozen, uncounted by the cyclic collector: ``_gc``).
        parent.children = ()
        if parent.children_cancelled:
            work.append(Settlement(parent, _S.CANCELLED, reason=self._why_cancelled()))
            return
        if parent.children_bad:
            failed = [c for c in children if c.state is not _S.SUCCESS]
            first = failed[0]
            why = f"{len(failed)} of {len(children)} instances did not succeed"
            work.append(Settlement(parent, _S.FAILED, error=first.error, reason=why))
        else:
            work.append(Settlement(parent, _S.SUCCESS, [c.result for c in children]))
        if self.observe is not None and self.observe.tracing is not None:
            self.observe.tracing.mapped_done(parent, work[-1].state)

    def _enqueue(self, node: Node, work: list[Settlement]) -> None:
        node.queued = True
        if (
            self.prior is not None
            and node.parent is None
            and node.key in self.prior.results
            and not reevaluated_on_resume(node.task.options.trigger_rule)
        ):
            why = self.prior.reuse_reason
            work.append(Settlement(node, _S.SUCCESS, self.prior.results[node.key], reason=why))
        else:
            self.ready.append(node)

    def _tell_more(self) -> None:
        """Tell the next slice of a settled task's downstream tasks that it ended."""
        n, st, told = self.spill[0]
        downs = self.plan.downstream[n.i]
        end = told + TELL_SLICE
        if end >= len(downs):
            self.spill.popleft()
        else:
            self.spill[0] = (n, st, end)
        work: list[Settlement] = []
        self._tell(downs[told:end], st, work)
        self._drain(work)
        self._maybe_spawn()

    def _tell_all(self) -> None:
        """Tell every spilled downstream task at once (the run is being cancelled)."""
        while self.spill:
            self._tell_more()

    def _maybe_spawn(self) -> None:
        """Start runners for the tasks made ready: the runner pool's (``Run``)."""
        raise NotImplementedError
