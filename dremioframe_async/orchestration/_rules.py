"""Trigger rules as a pure function of a snapshot of upstream state counts.

``decide`` is called every time an upstream task of a waiting task finishes. It
returns RUN as soon as the rule is satisfied (so ``one_*`` rules fire early),
WAIT while the outcome still depends on unfinished upstream tasks, and a final
"not run" state once the rule can no longer be satisfied: UPSTREAM_FAILED when
a failure upstream is the cause, SKIPPED otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from ._states import TaskState, TriggerRule

__all__ = [
    "Decision",
    "UpstreamCounts",
    "Verdict",
    "decide",
    "may_start_early",
    "only_successes_matter",
    "passes_without_upstream",
    "reevaluated_on_resume",
    "runs_on_cancel",
]


class Verdict(Enum):
    RUN = "run"
    WAIT = "wait"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"

    def state(self) -> TaskState:
        """The final state of a task that this verdict keeps from running."""
        return TaskState.SKIPPED if self is Verdict.SKIP else TaskState.UPSTREAM_FAILED


@dataclass(frozen=True, slots=True)
class UpstreamCounts:
    """How the upstream tasks of one task have ended so far.

    ``failed`` counts FAILED and CANCELLED upstream tasks; ``upstream_failed``
    those that were not run because of a failure further up.
    """

    total: int
    success: int = 0
    failed: int = 0
    upstream_failed: int = 0
    skipped: int = 0

    @property
    def done(self) -> int:
        return self.success + self.failed + self.upstream_failed + self.skipped

    @property
    def pending(self) -> int:
        return self.total - self.done

    @property
    def failures(self) -> int:
        return self.failed + self.upstream_failed


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""


_RUN: Final = Decision(Verdict.RUN)
_WAIT: Final = Decision(Verdict.WAIT)


def decide(rule: TriggerRule, c: UpstreamCounts) -> Decision:
    """Decide what a task with trigger ``rule`` does given upstream counts ``c``."""
    if c.total == 0 or rule is TriggerRule.ALWAYS:
        return _RUN
    return _RULES[rule](c)


# Rules that can start a task before all of its upstream tasks have finished.
_EARLY_RULES: Final = frozenset(
    {TriggerRule.ALWAYS, TriggerRule.ONE_SUCCESS, TriggerRule.ONE_FAILED, TriggerRule.ONE_DONE}
)


def may_start_early(rule: TriggerRule) -> bool:
    """Whether ``rule`` can run a task while some of its upstream tasks are unfinished."""
    return rule in _EARLY_RULES


# Cleanup rules: their tasks still run in a cancelled run, once every upstream task ended.
_CLEANUP_RULES: Final = frozenset({TriggerRule.ALL_DONE, TriggerRule.ALWAYS})
# Decided again in a resumed run rather than reusing an old result: cleanup and
# alerts react to how this run's tasks end.
_REEVALUATED_ON_RESUME: Final = frozenset(
    {*_CLEANUP_RULES, TriggerRule.ONE_SUCCESS, TriggerRule.ONE_FAILED, TriggerRule.ONE_DONE}
)


def runs_on_cancel(rule: TriggerRule) -> bool:
    """Whether a task with ``rule`` is cleanup: it still runs when the run is cancelled."""
    return rule in _CLEANUP_RULES


def reevaluated_on_resume(rule: TriggerRule) -> bool:
    """Whether a resumed run decides a task with ``rule`` afresh instead of reusing its result."""
    return rule in _REEVALUATED_ON_RESUME


def passes_without_upstream(rule: TriggerRule) -> bool:
    """Whether ``rule`` runs its task without waiting for any upstream task (``always``)."""
    return rule is TriggerRule.ALWAYS


def only_successes_matter(rule: TriggerRule) -> bool:
    """Whether, after an upstream SUCCESS, counting successes alone decides ``rule``.

    True for ``all_success``: any earlier failure or skip upstream has already
    settled the task, so an upstream success means RUN once all succeeded, else
    WAIT. The runner uses it to skip building a snapshot in the common case.
    """
    return rule is TriggerRule.ALL_SUCCESS


def _not_run(verdict: Verdict, rule: TriggerRule, c: UpstreamCounts) -> Decision:
    why = (
        f"{c.success} succeeded, {c.failed} failed, {c.upstream_failed} upstream failed, "
        f"{c.skipped} skipped of {c.total} upstream"
    )
    return Decision(verdict, f"trigger rule {rule.value} not met: {why}")


def _all_success(c: UpstreamCounts) -> Decision:
    if c.failures:
        return _not_run(Verdict.UPSTREAM_FAILED, TriggerRule.ALL_SUCCESS, c)
    if c.skipped:
        return _not_run(Verdict.SKIP, TriggerRule.ALL_SUCCESS, c)
    return _RUN if c.pending == 0 else _WAIT


def _all_failed(c: UpstreamCounts) -> Decision:
    if c.success or c.skipped:
        return _not_run(Verdict.SKIP, TriggerRule.ALL_FAILED, c)
    return _RUN if c.pending == 0 else _WAIT


def _all_done(c: UpstreamCounts) -> Decision:
    return _RUN if c.pending == 0 else _WAIT


def _all_skipped(c: UpstreamCounts) -> Decision:
    if c.success or c.failures:
        return _not_run(Verdict.SKIP, TriggerRule.ALL_SKIPPED, c)
    return _RUN if c.pending == 0 else _WAIT


def _one_success(c: UpstreamCounts) -> Decision:
    if c.success:
        return _RUN
    if c.pending:
        return _WAIT
    verdict = Verdict.UPSTREAM_FAILED if c.failures else Verdict.SKIP
    return _not_run(verdict, TriggerRule.ONE_SUCCESS, c)


def _one_failed(c: UpstreamCounts) -> Decision:
    if c.failures:
        return _RUN
    return _WAIT if c.pending else _not_run(Verdict.SKIP, TriggerRule.ONE_FAILED, c)


def _one_done(c: UpstreamCounts) -> Decision:
    if c.success or c.failed:
        return _RUN
    return _WAIT if c.pending else _not_run(Verdict.SKIP, TriggerRule.ONE_DONE, c)


def _none_failed(c: UpstreamCounts) -> Decision:
    if c.failures:
        return _not_run(Verdict.UPSTREAM_FAILED, TriggerRule.NONE_FAILED, c)
    return _RUN if c.pending == 0 else _WAIT


def _none_failed_min_one_success(c: UpstreamCounts) -> Decision:
    rule = TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
    if c.failures:
        return _not_run(Verdict.UPSTREAM_FAILED, rule, c)
    if c.pending:
        return _WAIT
    return _RUN if c.success else _not_run(Verdict.SKIP, rule, c)


def _none_skipped(c: UpstreamCounts) -> Decision:
    if c.skipped:
        return _not_run(Verdict.SKIP, TriggerRule.NONE_SKIPPED, c)
    return _RUN if c.pending == 0 else _WAIT


_RULES: Final = {
    TriggerRule.ALL_SUCCESS: _all_success,
    TriggerRule.ALL_FAILED: _all_failed,
    TriggerRule.ALL_DONE: _all_done,
    TriggerRule.ALL_SKIPPED: _all_skipped,
    TriggerRule.ONE_SUCCESS: _one_success,
    TriggerRule.ONE_FAILED: _one_failed,
    TriggerRule.ONE_DONE: _one_done,
    TriggerRule.NONE_FAILED: _none_failed,
    TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS: _none_failed_min_one_success,
    TriggerRule.NONE_SKIPPED: _none_skipped,
}
