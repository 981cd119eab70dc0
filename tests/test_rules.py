"""Trigger rules as a truth table over upstream-state counts."""

from __future__ import annotations

import pytest

from dremioframe_async.orchestration import TriggerRule, UpstreamCounts, Verdict, decide

R, W, S, U = Verdict.RUN, Verdict.WAIT, Verdict.SKIP, Verdict.UPSTREAM_FAILED

# Snapshots of three upstream tasks: (success, failed, upstream_failed, skipped).
SNAPSHOTS = {
    "none_done": (0, 0, 0, 0),
    "one_success_pending": (1, 0, 0, 0),
    "one_failed_pending": (0, 1, 0, 0),
    "one_upfailed_pending": (0, 0, 1, 0),
    "one_skipped_pending": (0, 0, 0, 1),
    "all_success": (3, 0, 0, 0),
    "all_failed": (0, 3, 0, 0),
    "all_skipped": (0, 0, 0, 3),
    "success_and_skipped": (2, 0, 0, 1),
    "success_and_failed": (2, 1, 0, 0),
    "failed_and_skipped": (0, 2, 0, 1),
    "upfailed_and_skipped": (0, 0, 1, 2),
    "mixed_all": (1, 1, 0, 1),
}

# rule -> expected verdict for each snapshot, in SNAPSHOTS order.
TABLE = {
    TriggerRule.ALL_SUCCESS: [W, W, U, U, S, R, U, S, S, U, U, U, U],
    TriggerRule.ALL_FAILED: [W, S, W, W, S, S, R, S, S, S, S, S, S],
    TriggerRule.ALL_DONE: [W, W, W, W, W, R, R, R, R, R, R, R, R],
    TriggerRule.ALL_SKIPPED: [W, S, S, S, W, S, S, R, S, S, S, S, S],
    TriggerRule.ONE_SUCCESS: [W, R, W, W, W, R, U, S, R, R, U, U, R],
    TriggerRule.ONE_FAILED: [W, W, R, R, W, S, R, S, S, R, R, R, R],
    TriggerRule.ONE_DONE: [W, R, R, W, W, R, R, S, R, R, R, S, R],
    TriggerRule.NONE_FAILED: [W, W, U, U, W, R, U, R, R, U, U, U, U],
    TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS: [W, W, U, U, W, R, U, S, R, U, U, U, U],
    TriggerRule.NONE_SKIPPED: [W, W, W, W, S, R, R, S, S, R, S, S, S],
    TriggerRule.ALWAYS: [R] * 13,
}

CASES = [
    pytest.param(rule, counts, expected, id=f"{rule.value}-{name}")
    for rule, row in TABLE.items()
    for (name, counts), expected in zip(SNAPSHOTS.items(), row, strict=True)
]


def test_table_covers_every_rule() -> None:
    assert set(TABLE) == set(TriggerRule)


@pytest.mark.parametrize(("rule", "counts", "expected"), CASES)
def test_truth_table(rule: TriggerRule, counts: tuple[int, ...], expected: Verdict) -> None:
    decision = decide(rule, UpstreamCounts(3, *counts))
    assert decision.verdict is expected
    if expected in (S, U):
        assert rule.value in decision.reason


@pytest.mark.parametrize("rule", list(TriggerRule), ids=lambda r: r.value)
def test_tasks_without_upstream_always_run(rule: TriggerRule) -> None:
    assert decide(rule, UpstreamCounts(0)).verdict is R


def test_not_run_verdicts_map_to_states() -> None:
    assert Verdict.SKIP.state().value == "SKIPPED"
    assert Verdict.UPSTREAM_FAILED.state().value == "UPSTREAM_FAILED"


@pytest.mark.parametrize("rule", list(TriggerRule), ids=[r.value for r in TriggerRule])
def test_rule_families_are_stated_once(rule: TriggerRule) -> None:
    from dremioframe_async.orchestration._rules import (
        may_start_early,
        only_successes_matter,
        passes_without_upstream,
        reevaluated_on_resume,
        runs_on_cancel,
    )

    cleanup = {TriggerRule.ALL_DONE, TriggerRule.ALWAYS}
    early = {TriggerRule.ALWAYS, TriggerRule.ONE_SUCCESS, TriggerRule.ONE_FAILED}
    early.add(TriggerRule.ONE_DONE)
    assert runs_on_cancel(rule) is (rule in cleanup)
    assert may_start_early(rule) is (rule in early)
    assert reevaluated_on_resume(rule) is (rule in cleanup | early)
    # a rule that passes without upstream tasks must be what decide() says with none ended
    passes = decide(rule, UpstreamCounts(3)).verdict is Verdict.RUN
    assert passes_without_upstream(rule) is passes
    if only_successes_matter(rule):
        # the runner's shortcut must agree with decide() whenever nothing failed or skipped
        for total in range(1, 4):
            for success in range(total + 1):
                verdict = decide(rule, UpstreamCounts(total, success=success)).verdict
                assert verdict is (Verdict.RUN if success == total else Verdict.WAIT)
