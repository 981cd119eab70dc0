"""Retry policy: tenacity strategies built once per set of task options.

An exception may carry ``retry_after`` (seconds, a float): a server's
``Retry-After`` answer. The next attempt then waits at least that long, bounded
by ``max_retry_after`` (5 minutes by default) and by ``max_retry_delay`` when the
task sets one, so a task never hammers a server that asked it to slow down, and
never sleeps for as long as a server says either.

A task's ``deadline`` stops the retries: no retry starts whose wait would end
past it.

An exception whose ``never_retry`` attribute is True is never retried, whatever
``retry_on`` says: it reports an action that may have taken effect and must not
be repeated (a data-changing SQL statement whose outcome was lost, say).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any

import tenacity

from ._options import NON_RETRYABLE, TaskOptions

__all__ = ["make_retrying"]


def _forbids_retry(exc: BaseException) -> bool:
    return getattr(exc, "never_retry", False) is True


def _retryable(retry_on: tuple[type[BaseException], ...] | None) -> Callable[[BaseException], bool]:
    if retry_on is not None:
        return lambda exc: isinstance(exc, retry_on) and not _forbids_retry(exc)
    return lambda exc: (
        isinstance(exc, Exception)
        and not isinstance(exc, NON_RETRYABLE)
        and not _forbids_retry(exc)
    )


def _server_asked(retry_state: tenacity.RetryCallState) -> float:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None and outcome.failed else None
    asked = getattr(exc, "retry_after", None)
    if isinstance(asked, int | float) and not isinstance(asked, bool) and math.isfinite(asked):
        return max(0.0, float(asked))
    return 0.0


class _WaitHonouringRetryAfter(tenacity.wait.wait_base):
    def __init__(self, base: Any, cap: float) -> None:
        self.base, self.cap = base, cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        asked = min(_server_asked(retry_state), self.cap)
        return max(float(self.base(retry_state)), asked)


class _StopBeforeDeadline(tenacity.stop.stop_base):
    """Stop when the next attempt would start at or past the deadline."""

    def __init__(self, deadline: float, elapsed: Callable[[], float]) -> None:
        self.deadline, self.elapsed = deadline, elapsed

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.elapsed() + (retry_state.upcoming_sleep or 0.0) >= self.deadline


@functools.lru_cache(maxsize=256)
def _strategies(options: TaskOptions) -> tuple[Any, Any, Any]:
    wait: Any = tenacity.wait_exponential(
        multiplier=options.retry_delay,
        exp_base=options.retry_backoff,
        max=options.max_retry_delay if options.max_retry_delay is not None else math.inf,
    )
    if options.retry_jitter:
        wait = wait + tenacity.wait_random(0, options.retry_jitter)
    cap = options.max_retry_after
    if options.max_retry_delay is not None:
        cap = min(cap, options.max_retry_delay)
    wait = _WaitHonouringRetryAfter(wait, cap)
    stop = tenacity.stop_after_attempt(options.retries + 1)
    retry = tenacity.retry_if_exception(_retryable(options.retry_on))
    return stop, wait, retry


def make_retrying(
    options: TaskOptions,
    sleep: Callable[[float], Awaitable[None]],
    before_sleep: Callable[[tenacity.RetryCallState], Any],
    elapsed: Callable[[], float] | None = None,
) -> tenacity.AsyncRetrying:
    """A fresh ``AsyncRetrying`` (they keep per-call state) for one task instance.

    ``elapsed`` gives the seconds the task has used since its first attempt
    began; with a ``deadline`` it decides when to stop retrying.
    """
    stop, wait, retry = _strategies(options)
    if options.deadline is not None and elapsed is not None:
        stop = stop | _StopBeforeDeadline(options.deadline, elapsed)
    return tenacity.AsyncRetrying(
        stop=stop, wait=wait, retry=retry, sleep=sleep, before_sleep=before_sleep, reraise=True
    )
