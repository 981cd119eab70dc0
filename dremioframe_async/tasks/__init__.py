"""Ready-made tasks on Dremio: queries, Iceberg and reflection upkeep, sensors.

They are :class:`~dremioframe_async.Task` objects (name first) and take every
Task option (``retries=``, ``timeout=``, ``pool=``, ``trigger_rule=`` ...).
"""

from __future__ import annotations

from ._dremio import (
    DremioQueryTask,
    DremioSqlTask,
    ExpireSnapshotsTask,
    OptimizeTask,
    RefreshReflectionTask,
    RemoveOrphanFilesTask,
    RollbackTableTask,
    VacuumTask,
)
from ._sensors import FileSensor, SensorTimeout, SqlSensor
from ._sql import (
    SqlArgumentError,
    expire_snapshots_sql,
    optimize_sql,
    quote_identifier,
    quote_path,
    refresh_reflections_sql,
    remove_orphan_files_sql,
    rollback_sql,
    string_literal,
)

__all__ = [
    "DremioQueryTask",
    "DremioSqlTask",
    "ExpireSnapshotsTask",
    "FileSensor",
    "OptimizeTask",
    "RefreshReflectionTask",
    "RemoveOrphanFilesTask",
    "RollbackTableTask",
    "SensorTimeout",
    "SqlArgumentError",
    "SqlSensor",
    "VacuumTask",
    "expire_snapshots_sql",
    "optimize_sql",
    "quote_identifier",
    "quote_path",
    "refresh_reflections_sql",
    "remove_orphan_files_sql",
    "rollback_sql",
    "string_literal",
]
