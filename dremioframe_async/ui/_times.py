"""Times as the pages show them: UTC with "3 min ago" beside it, and a running
task's or run's elapsed time. The script (``static/ui.js``) keeps both current
between reloads, from the server's clock (``<meta name="server-time">``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ._html import Markup

__all__ = ["ago", "elapsed", "stamp", "took", "when"]


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
    """How long ago, in the largest whole unit (``3 min ago``)."""
    if seconds < 0:
        return "in the future"
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''} ago"
    return "just now" if seconds < 10 else f"{int(seconds)} s ago"


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
