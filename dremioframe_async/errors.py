"""The project's one exception root.

Every error this package raises on purpose derives from :class:`DremioFrameError`,
so ``except DremioFrameError`` catches all of them and nothing else::

    DremioFrameError
    ├── orchestration errors (dremioframe_async.orchestration)
    │   ├── ArgumentError (also TypeError, ValueError)  bad arguments to Pipeline / run()
    │   ├── TaskDefinitionError (also TypeError)   bad arguments to @task / Task
    │   ├── PipelineDefinitionError (also ValueError)  every graph problem found, at once
    │   │   └── CycleError                         names the cycle: a -> b -> a
    │   ├── ExpandError (also TypeError)           expand() over a non-iterable result
    │   ├── ResourceError                          a run's resource could not be opened or closed
    │   ├── UndeclaredResourceError (also KeyError)  context.resources[name] not declared
    │   └── PipelineFailed                         raise_for_status(); carries the task errors
    └── DremioError (dremioframe_async.dremio)      Dremio client errors
        ├── DremioConfigError (also ValueError)    bad URL, credentials or TLS option
        ├── DremioBackendError (also RuntimeError)  used outside asyncio
        ├── DremioConnectionError                  unreachable or no answer within max_time
        ├── DremioTLSError                         the server's certificate was refused
        ├── DremioSubmitUncertain                  a statement may have run; not re-sent
        ├── DremioAPIError                         a non-2xx answer (400, 401/403, 404, 429, 5xx)
        ├── DremioJobError                         FAILED (transient or not), CANCELED, timeout
        └── DremioResultIncomplete                 rows delivered != the job's row count

    (``dremioframe_async.dremio._errors`` draws the Dremio part in full.)

Messages are built in each class's ``__init__`` from structured arguments, so the
text is consistent and the arguments stay available as attributes.
"""

from __future__ import annotations

__all__ = ["DremioFrameError"]


class DremioFrameError(Exception):
    """Root of every exception raised on purpose by dremioframe_async."""
