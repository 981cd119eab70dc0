"""``serve()``: schedules, the UI and its API, and run execution, in one process.

Its parts, each a task of one task group:

* the UI application, whose launcher queues the fires of each
  :class:`Schedule` (``schedule.queue_fires``; none while the schedule is paused
  in the store) and claims queued runs of the served pipelines and runs them
  (``ui._launcher``);
* a watcher that resumes, once, the INTERRUPTED runs of pipelines declared
  ``Pipeline(resume_interrupted=True)``.

Stopping (the caller's cancellation, which the command line makes of SIGTERM
and Ctrl-C) drains: nothing new is claimed, running runs get ``drain_grace``
seconds to finish, then they are cancelled gracefully, so their cleanup tasks
run; ``stop_cleanup`` (a second signal) ends the grace at once and stops those
cleanup tasks too. Queued runs stay queued
for the other processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import anyio
from aiohttp import web

from ..errors import DremioFrameError
from ..orchestration import Pipeline
from ..schedule import Schedule
from ..store import RunQuery, RunStatus, RunStore, StoreError
from ..ui import ActionRefused, PipelineEntry, ui_app
from ..ui._app import run_launcher
from ..ui._launcher import RunLauncher
from ..ui._security import Auth, check_bind
from ..ui._serve import app_runner

__all__ = ["ServeError", "serve"]

log = logging.getLogger("dremioframe_async.service")

# How often the INTERRUPTED runs of resume_interrupted pipelines are looked for.
RESUME_SCAN = 2.0


class ServeError(DremioFrameError, ValueError):
    """``serve()`` was given nothing to serve, or two pipelines with one name."""


def _collect(items: Iterable[Pipeline | Schedule]) -> tuple[dict[str, Pipeline], list[Schedule]]:
    pipelines: dict[str, Pipeline] = {}
    schedules: list[Schedule] = []
    for item in items:
        pipeline = item.pipeline if isinstance(item, Schedule) else item
        if not isinstance(pipeline, Pipeline):
            raise ServeError(f"serve() takes Pipeline and Schedule objects, got {item!r}")
        known = pipelines.setdefault(pipeline.name, pipeline)
        if known is not pipeline:
            raise ServeError(f"two different pipelines are named {pipeline.name!r}")
        if isinstance(item, Schedule):
            schedules.append(item)
    if not pipelines:
        raise ServeError("nothing to serve: no pipeline was given")
    return pipelines, schedules


async def serve(
    items: Iterable[Pipeline | Schedule],
    store: RunStore,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_runs: int | None = None,
    drain_grace: float = 30.0,
    auth: Auth | Sequence[Auth] | None = None,
    stop_cleanup: anyio.Event | None = None,
    on_ready: Callable[[str], object] | None = None,
) -> None:
    """Serve ``items`` (pipelines, and schedules of pipelines) from ``store`` until cancelled.

    :param max_runs: at most this many runs at once in this process (None: no limit).
    :param drain_grace: on stopping, seconds running runs get to finish before
        they are cancelled (gracefully: their cleanup tasks still run).
    :param auth: the UI's and API's authentication (without it, loopback only).
    :param stop_cleanup: once set while draining, the grace ends and cleanup tasks
        are cancelled too (the command line sets it on a second SIGTERM or Ctrl-C).
    :param on_ready: called with the UI's URL once it listens (``port=0``: any free port).
    :raises ServeError: (a ``ValueError``) for nothing to serve, two pipelines of one
        name, ``max_runs`` under 1 or a negative or NaN ``drain_grace``.
    :raises UnsafeBind: (a ``ValueError``) for a non-loopback host without auth.
    """
    pipelines, schedules = _collect(items)
    if max_runs is not None and max_runs < 1:
        raise ServeError(f"max_runs must be at least 1, got {max_runs!r}")
    if not drain_grace >= 0:  # NaN too: found only at the first SIGTERM otherwise
        raise ServeError(f"drain_grace must be 0 or more seconds, got {drain_grace!r}")
    auths: tuple[Auth, ...] = (auth,) if isinstance(auth, Auth) else tuple(auth or ())
    check_bind(host, auths)
    # The UI runs the schedules (its launcher queues their fires, once it claims runs),
    # so its pages show each one's next fire and can pause it.
    entries = [
        PipelineEntry(p, schedule=tuple(s for s in schedules if s.pipeline is p) or None)
        for p in pipelines.values()
    ]
    app = ui_app(store, entries, auths, max_runs=max_runs)
    launcher = run_launcher(app)
    # Nothing is claimed before the port is bound: a serve that cannot start (a port
    # in use) must leave the queue to the others, not take a run and die with it.
    launcher.holding = True
    runner = app_runner(app)  # the UI's headers even on requests aiohttp refuses
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        launcher.release()
        if on_ready is not None:
            bound = runner.addresses[0][1] if runner.addresses else port
            on_ready(f"http://{f'[{host}]' if ':' in host else host}:{bound}/")
        try:
            await _resume_interrupted(launcher, pipelines, store)
        finally:
            with anyio.CancelScope(shield=True):
                await launcher.drain(drain_grace, stop_cleanup)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await runner.cleanup()


async def _resume_interrupted(
    launcher: RunLauncher, pipelines: dict[str, Pipeline], store: RunStore
) -> None:
    """Resume, once, each INTERRUPTED run of a pipeline declared ``resume_interrupted``.

    A run that is itself a resume is left alone, so a run that keeps dying is
    resumed once, not forever; so is a run that was asked to cancel. Of several
    processes trying, the store's resume claim lets one through.
    """
    names = [name for name, p in pipelines.items() if p.resume_interrupted]
    if not names:
        await anyio.sleep_forever()
    while True:
        await anyio.sleep(RESUME_SCAN)
        for name in names:
            try:
                page = await store.query_runs(
                    RunQuery(pipeline=name, status=RunStatus.INTERRUPTED, limit=50)
                )
            except StoreError as exc:
                log.warning("cannot look for interrupted runs: %s", exc)
                continue
            for run in page.runs:
                # A run someone asked to cancel stays interrupted: its owner died
                # before it could act on the request, which still stands.
                if run.resumed_by is None and run.resumed_from is None and not run.cancel_requests:
                    try:
                        new = await launcher.trigger(name, None, resume=run.run_id)
                    except ActionRefused as exc:  # another process resumes it
                        log.info("not resuming run %s: %s", run.run_id, exc)
                    else:
                        log.info("resuming interrupted run %s as %s", run.run_id, new)
