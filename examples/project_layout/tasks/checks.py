"""Validation and notification tasks."""

from __future__ import annotations

from dremioframe_async import task


@task
async def validate(extracts: list[dict[str, object]]) -> int:
    empty = [e["table"] for e in extracts if not e["rows"]]
    if empty:
        raise ValueError(f"empty extracts: {empty}")
    return sum(int(str(e["rows"])) for e in extracts)


@task(trigger_rule="one_failed")
async def notify_failure() -> str:
    return "alert sent"
