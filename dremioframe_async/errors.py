"""The project's one exception root.

Every error this package raises on purpose derives from :class:`DremioFrameError`,
so ``except DremioFrameError`` catches all of them and nothing else::

    DremioFrameError
    ├── orchestration errors (dremioframe_async.orchestration)
    │   ├── ArgumentError (also TypeError, ValueError)  bad arguments to Pipeline / run()
    │   │   ├── TaskOptionError                    a bad TaskOptions(...) field
    │   │   └── StateValueError                    context.state got a key or value not JSON
    │   ├── TaskDefinitionError (also TypeError, ValueError)  bad arguments to @task / Task
    │   ├── PipelineDefinitionError (also ValueError)  every graph problem found, at once
    │   │   └── CycleError                         names the cycle: a -> b -> a
    │   ├── ExpandError (also TypeError)           a mapped value that cannot be mapped over
    │   ├── MapLengthError (also ValueError)       more mapped instances than max_map_length
    │   ├── AttemptTimeout (also TimeoutError)     an attempt passed its timeout or deadline
    │   ├── ResourceError                          a run's resource could not be opened or closed
    │   ├── UndeclaredResourceError (also KeyError)  context.resources[name] not declared
    │   ├── PipelineFailed                         raise_for_status(); carries the task errors
    │   ├── RunNotAwaited (also AttributeError, TypeError)  pipeline.run() used without await
    │   └── ResumeRefused (ArgumentError)          resuming that run now would be unsafe
    ├── StoreError (dremioframe_async.store)       run history: reading, writing, opening
    │   ├── RunNotFound (also LookupError)         no run with that id in the store
    │   ├── StoreSchemaError                       the database was written by a newer version
    │   ├── StoreUnavailable                       a store cannot be opened or used (names it)
    │   ├── HistoryIncomplete                      a run's events could not all be recorded
    │   ├── StateUnavailable                       context.state written in a run without a store
    │   └── StoreConfigError (also ValueError)     bad store arguments
    │       └── StoreURLError                      open_store() got a URL it cannot open
    ├── ScheduleError (also ValueError)  (dremioframe_async.schedule)  bad interval, cron, overlap
    ├── BackfillError (also ValueError)  (dremioframe_async.backfill)  bad range, duration, cron
    ├── ServeError (also ValueError)  (dremioframe_async.service)  nothing to serve, a name twice
    ├── task library errors (dremioframe_async.tasks)
    │   ├── SensorTimeout (also TimeoutError)      a sensor's condition did not hold in time
    │   ├── SqlArgumentError (also ValueError)     a SQL builder got an argument it cannot use
    │   └── TaskLibraryError                       HTTP, shell, email, S3, dbt, quality tasks
    │       ├── HttpError ── HttpStatusError ── HttpTransientError; HttpConnectionError
    │       │   (private subclasses _HttpNotSent, _HttpMaybeSent: was the request sent?)
    │       ├── ShellCommandFailed                     a non-zero exit, with the stderr tail
    │       ├── EmailError ── EmailTransientError, EmailMaybeSent (lost during DATA)
    │       │   (private DataLost: the SMTP link's signal, always mapped to EmailMaybeSent)
    │       ├── S3Error ── S3TransientError, S3IntegrityError
    │       ├── DbtError                               names the failed dbt nodes
    │       ├── DbtMissing                             dbt cannot be found; how to install it
    │       ├── IncrementalExtractError                folder and stored watermark disagree
    │       ├── DataQualityFailed                      carries the QualityReport
    │       └── DataQualityConfigError (also ValueError)  every bad check definition, at once
    ├── command line (dremioframe_async.cli)
    │   └── UsageError                             bad arguments; exit code 2
    │       └── PipelineImportError                the named module raised on import
    ├── web UI (dremioframe_async.ui)
    │   ├── ActionRefused                          a trigger, cancel or resume that cannot be done
    │   ├── TooManyFailures                        a client failed to sign in too often (429)
    │   └── UnsafeBind (also ValueError)           a public bind without auth
    ├── executor errors (dremioframe_async.executors)
    │   ├── ExecutorError                          an executor cannot start or keep a task
    │   │   ├── TaskPickleError (also TypeError)   names the task and what cannot be pickled
    │   │   ├── WorkerLostError                    the worker running an attempt died
    │   │   └── RemoteTaskError                    a worker's exception that cannot be pickled back
    │   └── ResultSizeWarning (also UserWarning)   a large result came back (a warning)
    ├── MissingExtra (also ImportError)            an optional dependency is not installed
    └── DremioError (dremioframe_async.dremio)      Dremio client errors
        ├── DremioConfigError (also ValueError)    bad URL, credentials or TLS option
        ├── DremioBackendError (also RuntimeError)  used outside asyncio
        ├── DremioConnectionError                  unreachable or no answer within max_time
        ├── DremioTLSError                         the server's certificate was refused
        ├── DremioSubmitUncertain                  a statement may have run; not re-sent
        ├── DremioStatementUncertain               a write's job was lost track of; not re-sent
        ├── DremioAPIError                         a non-2xx answer (400, 401/403, 404, 429, 5xx)
        ├── DremioJobError                         FAILED (transient or not), CANCELED, timeout
        ├── DremioResultIncomplete                 rows delivered != the job's row count
        └── PartitionCountMismatch                 a partitioned read's parts != COUNT(*)

    (``dremioframe_async.dremio._errors`` draws the Dremio part in full.)

Messages are built in each class's ``__init__`` from structured arguments, so the
text is consistent and the arguments stay available as attributes.
"""

from __future__ import annotations

__all__ = ["DremioFrameError", "MissingExtra", "StoreError"]


class DremioFrameError(Exception):
    """Root of every exception raised on purpose by dremioframe_async."""


class MissingExtra(DremioFrameError, ImportError):
    """A feature needs an optional dependency that is not installed; says which extra."""

    def __init__(self, feature: str, module: str, extra: str) -> None:
        self.feature, self.module, self.extra = feature, module, extra
        super().__init__(
            f"{feature} needs {module}: pip install 'dremioframe_async[{extra}]'", name=module
        )


class StoreError(DremioFrameError):
    """Root of the run-history errors (defined here so the engine can report one too)."""
