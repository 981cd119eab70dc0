"""Ready-made tasks: Dremio queries, Iceberg and reflection upkeep, sensors, and the
integration library (HTTP and Slack alerts, shell commands, email, S3, dbt, data quality).

They are :class:`~dremioframe_async.Task` objects (name first) and take every
Task option (``retries=``, ``timeout=``, ``pool=``, ``trigger_rule=`` ...).
"""

from __future__ import annotations

from ._checks import (
    AcceptedValues,
    Check,
    CheckResult,
    CustomSql,
    Expression,
    Freshness,
    NotNull,
    RowCount,
    Unique,
)
from ._clients import ClientPool
from ._common import Credential, TaskLibraryError
from ._dbt import DbtError, DbtMissing, DbtNodeResult, DbtResult, DbtTask
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
from ._email import EmailError, EmailMaybeSent, EmailSent, EmailTask, EmailTransientError
from ._http import (
    HttpConnectionError,
    HttpError,
    HttpResponse,
    HttpStatusError,
    HttpTask,
    HttpTransientError,
    SlackAlertTask,
)
from ._incremental import IncrementalExtractError, IncrementalExtractTask
from ._load import InsertSelectTask, MergeTask, merge_sql
from ._partitioned import PartitionedExtractTask
from ._process import ProcessOutput
from ._quality import (
    DataQualityConfigError,
    DataQualityFailed,
    DataQualityTask,
    QualityReport,
    load_checks,
    parse_checks,
)
from ._s3 import S3Error, S3IntegrityError, S3Object, S3Task, S3TransientError
from ._sensors import FileSensor, SensorTimeout, SqlSensor
from ._shell import ShellCommandFailed, ShellTask
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
from ._watermark import Watermark

__all__ = [
    "AcceptedValues",
    "Check",
    "CheckResult",
    "ClientPool",
    "Credential",
    "CustomSql",
    "DataQualityConfigError",
    "DataQualityFailed",
    "DataQualityTask",
    "DbtError",
    "DbtMissing",
    "DbtNodeResult",
    "DbtResult",
    "DbtTask",
    "DremioQueryTask",
    "DremioSqlTask",
    "EmailError",
    "EmailMaybeSent",
    "EmailSent",
    "EmailTask",
    "EmailTransientError",
    "ExpireSnapshotsTask",
    "Expression",
    "FileSensor",
    "Freshness",
    "HttpConnectionError",
    "HttpError",
    "HttpResponse",
    "HttpStatusError",
    "HttpTask",
    "HttpTransientError",
    "IncrementalExtractError",
    "IncrementalExtractTask",
    "InsertSelectTask",
    "MergeTask",
    "NotNull",
    "OptimizeTask",
    "PartitionedExtractTask",
    "ProcessOutput",
    "QualityReport",
    "RefreshReflectionTask",
    "RemoveOrphanFilesTask",
    "RollbackTableTask",
    "RowCount",
    "S3Error",
    "S3IntegrityError",
    "S3Object",
    "S3Task",
    "S3TransientError",
    "SensorTimeout",
    "ShellCommandFailed",
    "ShellTask",
    "SlackAlertTask",
    "SqlArgumentError",
    "SqlSensor",
    "TaskLibraryError",
    "Unique",
    "VacuumTask",
    "Watermark",
    "expire_snapshots_sql",
    "load_checks",
    "merge_sql",
    "optimize_sql",
    "parse_checks",
    "quote_identifier",
    "quote_path",
    "refresh_reflections_sql",
    "remove_orphan_files_sql",
    "rollback_sql",
    "string_literal",
]
