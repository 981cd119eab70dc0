"""An alert task (one_failed) and a cleanup task (all_done) around a failing branch."""

from __future__ import annotations

import anyio

from dremioframe_async import Pipeline, TaskState, task


@task
async def load_users() -> str:
    return "users loaded"


@task
async def load_orders() -> str:
    raise RuntimeError("orders source is down")


@task(trigger_rule="one_failed")
async def alert(context=None) -> str:
    # Fires as soon as one upstream fails, without waiting for the other branch.
    return "paged the on-call engineer"


@task(trigger_rule="all_done")
async def cleanup() -> str:
    return "temporary files removed"


@task
async def publish() -> str:
    return "never runs: an upstream failed"


async def main() -> None:
    users, orders = load_users(), load_orders()
    a, c, p = alert(), cleanup(), publish()
    for up in (users, orders):
        up >> a
        up >> c
        up >> p
    result = await Pipeline("alerting").add_task(users).run()
    for key, state in result.states.items():
        print(f"{key:12} {state.value}")
    assert result.states["publish"] is TaskState.UPSTREAM_FAILED
    print("run status:", result.status)  # FAILED, even though the alert ran


if __name__ == "__main__":
    anyio.run(main)
