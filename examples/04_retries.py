"""Retries with exponential backoff; waiting between attempts holds no concurrency slot."""

from __future__ import annotations

import anyio

from dremioframe_async import Pipeline, TaskRetrying, task

attempts = 0


@task(retries=3, retry_delay=0.05, retry_backoff=2.0, retry_jitter=0.01, retry_on=ConnectionError)
async def call_flaky_api() -> str:
    global attempts
    attempts += 1
    if attempts < 3:
        raise ConnectionError(f"transient failure #{attempts}")
    return "payload"


def show_retry(event: object) -> None:
    if isinstance(event, TaskRetrying):
        print(
            f"  {event.key}: attempt {event.attempt} failed ({event.error}); "
            f"next in {event.delay:.3f}s"
        )


async def main() -> None:
    result = await Pipeline("retries").add_task(call_flaky_api()).run(on_event=show_retry)
    print(result["call_flaky_api"], "after", result.tasks["call_flaky_api"].attempts, "attempts")


if __name__ == "__main__":
    anyio.run(main)
