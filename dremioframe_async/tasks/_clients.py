"""Run-scoped clients for the integration tasks: one HTTP pool, S3 client or SMTP login per run.

``HttpTask``, ``SlackAlertTask``, ``S3Task`` and ``EmailTask`` reach their
server through a run resource, the way the Dremio tasks do:

- nothing given: the run's resource of the task's kind (``"http"``, ``"s3"``,
  ``"smtp"``); when the run declares none, a :class:`ClientPool` of the run,
  shared by every such task;
- a resource name (``session="api"``, ``client="files"``): that resource of the
  run, a :class:`ClientPool` or the library's own client;
- an open client (an ``aiohttp.ClientSession``, an aiobotocore S3 client): used
  as it is, its owner closes it.

A :class:`ClientPool` opens nothing when the run starts: a task asks it for the
client of its settings (the settings may come from ``run(context={...})``) and
the first ask opens it, once, for every task of the run that has the same
settings. It closes them all when the run ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from typing import Any

import anyio

from ..orchestration import RunContext, Task

__all__ = ["ClientPool", "client_resource_options", "run_client"]

Opener = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


class ClientPool:
    """The clients of one kind for one run: one per distinct settings, opened on first use.

    A run resource (``Pipeline(resources={"s3": ClientPool})``, or the default
    the tasks declare themselves). ``opened`` counts the clients it has opened.
    """

    def __init__(self) -> None:
        self.opened = 0
        self._clients: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, anyio.Lock] = {}
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def get(self, key: Hashable, opener: Opener) -> Any:
        """The client for ``key``, opened with ``opener()`` the first time it is asked for."""
        found = self._clients.get(key)
        if found is not None:
            return found
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:  # tasks asking at once wait for one opening
            if key not in self._clients:
                self._clients[key] = await self._stack.enter_async_context(opener())
                self.opened += 1
        return self._clients[key]

    def __repr__(self) -> str:
        return f"<ClientPool: {self.opened} client(s) open>"


def client_resource_options(
    task: Task, source: object, default_name: str, options: dict[str, Any]
) -> dict[str, Any]:
    """``options`` with the run resource ``source`` stands for added to ``resources``.

    ``None`` stands for ``default_name`` (with a :class:`ClientPool` as the
    default factory), a string for that resource; anything else is an open
    client and needs no resource.
    """
    if source is None:
        name = default_name
        # The task types calling this are subclasses of Task, which keep a __dict__.
        task.default_resources = {name: ClientPool}  # type: ignore[misc]
    elif isinstance(source, str):
        name = source
    else:
        return options
    given = options.get("resources", ())
    names = (given,) if isinstance(given, str) else tuple(given)
    return {**options, "resources": (*names, name)}


@contextlib.asynccontextmanager
async def run_client(
    source: object,
    default_name: str,
    context: RunContext | None,
    key: Hashable,
    opener: Opener,
) -> AsyncIterator[Any]:
    """The client a task uses in this run (see the module's docstring for where it comes from).

    Outside a run's resources (no context) the task opens its own for the attempt.
    """
    if source is not None and not isinstance(source, str):
        yield source
        return
    resources: Mapping[str, Any] | None = getattr(context, "resources", None)
    name = default_name if source is None else source
    if resources is None or name not in resources:
        async with opener() as client:
            yield client
        return
    value = resources[name]
    yield await value.get(key, opener) if isinstance(value, ClientPool) else value
