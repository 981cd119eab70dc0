"""Times as the pages show them: UTC with "3 min ago" beside it, and a running
task's or run's elapsed time. The script (``static/ui.js``) keeps both current
between reloads, from the server's clock (``<meta name="server-time">``)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from ._html import Markup

__all__ = ["ago", "elapsed", "parse_time", "stamp", "took", "when"]


def when(t: float | None) -> str:
    """Epoch seconds as UTC text."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def took(seconds: float | None) -> str:
    """A duration as text."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def ago(seconds: float) -> str:
    """How long ago, in the largest whole unit (``3 min ago``); a time to come reads
    ``in 3 min``."""
    future, seconds = seconds < 0, abs(seconds)
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            n = int(seconds // size)
            span = f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''}"
            return f"in {span}" if future else f"{span} ago"
    if seconds < 10:
        return "in a few s" if future else "just now"
    return f"in {int(seconds)} s" if future else f"{int(seconds)} s ago"


def parse_time(text: str, *, end: bool = False) -> float:
    """Epoch seconds from a number, an ISO date (UTC; with ``end``, the end of that
    day) or an ISO date and time (UTC unless it says otherwise).

    :raises ValueError: for anything else.
    """
    bad = ValueError(f"not a date (YYYY-MM-DD), a time or epoch seconds: {text!r}")
    if len(text) == 8 and text.isdigit():  # 1970's epoch seconds, or a date?
        raise ValueError(f"ambiguous: write the date as {text[:4]}-{text[4:6]}-{text[6:]}")
    if "-" not in text.lstrip("+-"):  # epoch seconds
        try:
            seconds = float(text)
        except ValueError:
            raise bad from None
        if not math.isfinite(seconds):  # nan matches nothing, or everything in PostgreSQL
            raise bad
        return seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and len(text) == 10:  # a bare date: up to the end of that day
        moment += timedelta(days=1)
    return moment.timestamp()


def stamp(t: float | None, now: float | None = None) -> Markup | str:
    """UTC time and, beside it, how long ago (kept current by the script)."""
    if t is None:
        return "-"
    now = time.time() if now is None else now
    moment = datetime.fromtimestamp(t, UTC)
    # Built as text (every part is digits and fixed words): the runs page has one per
    # row, and the element builder would cost a third of the page.
    return Markup(
        f'<time datetime="{moment.isoformat()}">{moment:%Y-%m-%d %H:%M:%S} UTC</time> '
        f'<span class="ago" data-t="{t:.3f}">({ago(now - t)})</span>'
    )


def elapsed(
    started: float | None, finished: float | None, running: bool, now: float | None = None
) -> Markup | str:
    """A finished span's duration, or a running one's time so far (ticking in the page)."""
    if not running or started is None or finished is not None:
        return took(None if started is None or finished is None else finished - started)
    now = time.time() if now is None else now
    return Markup(
        f'<span class="elapsed" data-since="{started:.3f}">running {took(now - started)}</span>'
    )
