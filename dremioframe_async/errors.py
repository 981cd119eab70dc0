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
    │   └── PipelineFailed                         raise_for_status(); carries the task errors
    ├── DremioError (dremioframe_async.dremio)      Dremio REST client errors
    └── TaskLibraryError (dremioframe_async.tasks)  HTTP, shell, email, S3, dbt, quality tasks
        ├── HttpError ── HttpStatusError ── HttpTransientError; HttpConnectionError
        ├── ShellCommandFailed                     a non-zero exit, with the stderr tail
        ├── EmailError ── EmailTransientError
        ├── S3Error ── S3TransientError, S3IntegrityError
        ├── DbtError                               names the failed dbt nodes
        ├── DataQualityFailed                      carries the QualityReport
        └── DataQualityConfigError (also ValueError)  every bad check definition, at once

Messages are built in each class's ``__init__`` from structured arguments, so the
text is consistent and the arguments stay available as attributes.
"""

from __future__ import annotations

__all__ = ["DremioFrameError"]


class DremioFrameError(Exception):
    """Root of every exception raised on purpose by dremioframe_async."""
