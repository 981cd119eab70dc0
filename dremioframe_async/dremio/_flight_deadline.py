"""How long a Flight read may wait: the settings that bound REST, applied to gRPC.

- A unary call (Handshake, GetFlightInfo) gets a gRPC deadline of at most
  ``request_timeout``, never past the read's retry budget (``RetryPolicy.max_time``,
  counted from the start of the read, retries and back-off included) nor past the
  caller's ``timeout``.
- DoGet's gRPC deadline is the caller's ``timeout`` alone: one stream may rightly
  last longer than one request.
- While a stream runs, each wait for the server (opening DoGet, every next batch)
  is bounded by ``request_timeout``: the worker thread records when it starts
  waiting in gRPC (:class:`Waiting`), and the consumer's side gives up and
  cancels the call once that wait passes the bound. A server that stops
  answering without closing its connection (a hung process, a dead peer behind
  a proxy) is noticed by nothing else: gRPC itself would wait forever.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ._errors import DremioConnectionError, DremioError, DremioJobTimeout
from ._flight_errors import FLIGHT_JOB

__all__ = ["Deadline", "Waiting"]

# gRPC's clock and ours differ by a little: a deadline reported within this many
# seconds of one of ours is taken to be that one.
_SLACK = 0.05


@dataclass(slots=True)
class Deadline:
    """The limits of one read, fixed when it starts."""

    timeout: float | None
    request_timeout: float
    max_time: float
    started: float = field(default_factory=time.monotonic)

    def unary(self, call: str) -> float:
        """The gRPC timeout for one Handshake or GetFlightInfo call.

        :raises DremioJobTimeout: the caller's ``timeout`` has passed.
        :raises DremioConnectionError: the retry budget is used up (``sent=False``:
            the call is not made).
        """
        now = time.monotonic()
        job = self._job_left(now)
        budget = self.started + self.max_time - now
        if budget <= 0:
            raise DremioConnectionError(
                "FLIGHT", call, f"the retry budget (max_time={self.max_time:g} s) is used up",
                sent=False,
            )  # fmt: skip
        return min(self.request_timeout, budget, math.inf if job is None else job)

    def stream(self) -> float | None:
        """DoGet's gRPC timeout: what is left of the caller's ``timeout`` (None: none).

        :raises DremioJobTimeout: the caller's ``timeout`` has passed.
        """
        return self._job_left(time.monotonic())

    def may_back_off(self, delay: float) -> bool:
        """Whether waiting ``delay`` seconds before a retry still ends inside the budget."""
        end = time.monotonic() + delay
        job_end = math.inf if self.timeout is None else self.started + self.timeout
        return end < min(self.started + self.max_time, job_end)

    def expired(self, call: str) -> DremioError:
        """The error for a gRPC deadline that passed during ``call``: which limit it was."""
        now = time.monotonic() + _SLACK
        if self.timeout is not None and now >= self.started + self.timeout:
            return DremioJobTimeout(FLIGHT_JOB, self.timeout)
        if call != "DoGet" and now >= self.started + self.max_time:
            limit = f"the retry budget (max_time={self.max_time:g} s)"
        else:
            limit = f"request_timeout={self.request_timeout:g} s"
        return DremioConnectionError("FLIGHT", call, f"no answer within {limit}")

    def stalled(self, call: str) -> DremioConnectionError:
        """The error for a stream whose server sent nothing for ``request_timeout``."""
        reason = f"no answer within request_timeout={self.request_timeout:g} s"
        return DremioConnectionError("FLIGHT", call, reason)

    def _job_left(self, now: float) -> float | None:
        if self.timeout is None:
            return None
        left = self.started + self.timeout - now
        if left <= 0:
            raise DremioJobTimeout(FLIGHT_JOB, self.timeout)
        return left


@dataclass(slots=True)
class Waiting:
    """When the worker thread began waiting in gRPC for the server (None: it is not).

    Written by the worker, read by the event loop: a float or None assigned
    whole, so no lock is needed.
    """

    since: float | None = None
    call: str = "DoGet"

    def begin(self, call: str) -> None:
        self.call, self.since = call, time.monotonic()

    def end(self) -> None:
        self.since = None

    def patience(self, limit: float) -> float:
        """Seconds until the current wait passes ``limit`` (``limit`` when none runs)."""
        since = self.since
        if since is None:
            return limit
        return max(since + limit - time.monotonic(), 0.0)

    def over(self, limit: float) -> bool:
        """Whether the worker has been waiting for the server longer than ``limit``."""
        since = self.since
        return since is not None and time.monotonic() - since >= limit
