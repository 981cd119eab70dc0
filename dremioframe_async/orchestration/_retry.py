"""Retry policy: tenacity strategies built once per set of task options."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any

import tenacity

from ._options import NON_RETRYABLE, TaskOptions

__all__ = ["make_retrying"]


def _retryable(retry_on: tuple[type[BaseException], ...] | None) -> Callable[[BaseException], bool]:
    if retry_on is not None:
        return lambda exc: isinstance(exc, retry_on)
    return lambda exc: isinstance(exc, Exception) and not isinstance(exc, NON_RETRYABLE)


@functools.lru_cache(maxsize=256)
def _strategies(options: TaskOptions) -> tuple[Any, Any, Any]:
    wait: Any = tenacity.wait_exponential(
        multiplier=options.retry_delay,
        exp_base=options.retry_backoff,
        max=options.max_retry_delay if options.max_retry_delay is not None else math.inf,
    )
    if options.retry_jitter:
        wait = wait + tenacity.wait_random(0, options.retry_jitter)
    stop = tenacity.stop_after_attempt(options.retries + 1)
    retry = tenacity.retry_if_exception(_retryable(options.retry_on))
    return stop, wait, retry


def make_retrying(
    options: TaskOptions,
    sleep: Callable[[float], Awaitable[None]],
    before_sleep: Callable[[tenacity.RetryCallState], Any],
) -> tenacity.AsyncRetrying:
    """A fresh ``AsyncRetrying`` (they keep per-call state) for one task instance."""
    stop, wait, retry = _strategies(options)
    return tenacity.AsyncRetrying(
        stop=stop, wait=wait, retry=retry, sleep=sleep, before_sleep=before_sleep, reraise=True
    )
