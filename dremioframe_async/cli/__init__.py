"""The ``dremioframe-async`` command line.

::

    dremioframe-async run module:pipeline [--store URL] [--param k=v ...] [--resume RUN_ID]
    dremioframe-async runs [--pipeline NAME] [--limit N]
    dremioframe-async show RUN_ID
    dremioframe-async logs RUN_ID [TASK] [--attempt N] [--follow] [--format json]
    dremioframe-async graph module:pipeline
    dremioframe-async schedule module:pipeline (--cron EXPR | --interval SECONDS)
    dremioframe-async demo [args ...]
    dremioframe-async ui [--pipeline module:pipeline ...] [--host 127.0.0.1] [--port 8080]
    dremioframe-async bench dremio|engine [options]   (see dremioframe_async.bench)

``module:pipeline`` names a :class:`Pipeline`, or a function declared to
return one (``def build() -> Pipeline``) taking no arguments; nothing else is
ever called. ``module`` is a dotted module (importable from the current
directory) or a path to a ``.py`` file. ``run``, ``graph`` and ``schedule``
import that module, which executes its top-level code: name only code you trust.
Installed modules win over files of the same name in the current directory or
beside the ``.py`` file. The store is ``--store URL``, else
``$DREMIOFRAME_ASYNC_STORE``, else a SQLite file under ``$XDG_DATA_HOME`` (or
``~/.local/share``) ``/dremioframe_async/runs.sqlite``.

``show`` takes any unique prefix of a run id. Errors in arguments, in the
pipeline's module (an import error) or in its definition (a cycle) are one line
on stderr naming the exception type; ``--traceback`` prints the rest.

Ctrl-C (SIGINT, or SIGTERM) cancels the run: running tasks are cancelled, its
``all_done``/``always`` cleanup tasks still run (for up to the pipeline's
``cleanup_grace``), the summary table is printed and the run is recorded as
CANCELLED. A second Ctrl-C stops the cleanup too; a third exits at once.

Exit codes: 0 success, 1 the pipeline failed (or an unexpected error), 2 usage
or definition error (bad arguments, a module that cannot be imported, a
``module:pipeline`` that is not a Pipeline, an invalid graph, an unknown or
ambiguous run id, a malformed store URL, a refused resume), 3 the run finished
but its history could not be recorded (its status is printed; the store lost
some of its events), 4 the run store could not be opened or read (nothing ran),
130 interrupted.
"""

from __future__ import annotations

from ._common import PipelineImportError, UsageError, load_pipeline, parse_params
from ._main import main

__all__ = ["PipelineImportError", "UsageError", "load_pipeline", "main", "parse_params"]
