"""The daily extraction pipeline."""

from __future__ import annotations

from dremioframe_async import Pipeline

from ..tasks.checks import notify_failure, validate
from ..tasks.sources import extract

TABLES = ("customers", "orders", "payments")


def build() -> Pipeline:
    extracts = [extract(t) for t in TABLES]
    total = validate(extracts)
    alert = notify_failure()
    total >> alert
    return Pipeline("daily", max_concurrency=8, pools={"source": 2}).add_task(total)
