"""DataQualityTask: checks run on Dremio, from Python or from YAML files, into one report.

The YAML format follows the original dremioframe's dq runner: a file holds a
list of tests (or a mapping with a ``tests`` list); each test names a ``table``
and lists ``checks``, each a mapping with a ``type``::

    tests:
      - name: sales
        table: lake.sales
        checks:
          - {type: not_null, column: id}
          - {type: unique, column: id}              # or columns: [a, b]
          - {type: accepted_values, column: status, values: [NEW, PAID]}   # alias: values_in
          - {type: row_count, min: 1, max: 1000000}
          - {type: freshness, column: updated_at, max_age: 1d}             # s, m, h, d or seconds
          - {type: expression, expression: "amount >= 0"}
          - {type: custom_sql, sql: "SELECT * FROM lake.sales WHERE ..."}
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio

from ..dremio import RETRYABLE_ERRORS, DremioClient, DremioError
from ..orchestration import RunContext
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
from ._common import TaskLibraryError
from ._dremio import ClientSource, ClientTask, client_options, client_scope, dremio_retry_options

__all__ = [
    "DataQualityConfigError",
    "DataQualityFailed",
    "DataQualityTask",
    "QualityReport",
    "load_checks",
    "parse_checks",
]

logger = logging.getLogger("dremioframe_async.tasks.quality")


class DataQualityConfigError(TaskLibraryError, ValueError):
    """Check definitions that cannot be used; lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("bad data-quality checks:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Every check's result, in the order the checks were given."""

    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def summary(self) -> str:
        ok = len(self.results) - len(self.failed)
        lines = [f"{ok}/{len(self.results)} checks passed"]
        lines += [f"  {r.describe()}" for r in self.failed]
        return "\n".join(lines)


class DataQualityFailed(TaskLibraryError):
    """At least one check failed (``on_failure="fail"``); ``report`` has them all."""

    def __init__(self, task: str, report: QualityReport) -> None:
        self.task, self.report = task, report
        super().__init__(f"data quality {task!r}: {report.summary()}")


# -- YAML -------------------------------------------------------------------------------


def _one_check(table: Any, spec: Mapping[str, Any]) -> Check:
    kind, name, where = spec.get("type"), spec.get("name"), spec.get("where")
    if kind == "not_null":
        return NotNull(table, spec["column"], where, name)
    if kind == "unique":
        return Unique(table, spec.get("columns", spec.get("column")), where, name)
    if kind in ("accepted_values", "values_in"):
        return AcceptedValues(table, spec["column"], list(spec["values"]), where, name)
    if kind == "row_count":
        return RowCount(table, spec.get("min"), spec.get("max"), where, name)
    if kind == "freshness":
        return Freshness(table, spec["column"], spec["max_age"], where, name)
    if kind == "expression":
        return Expression(table, spec["expression"], where, name)
    if kind == "custom_sql":
        return CustomSql(spec["sql"], name)
    raise ValueError(
        f"unknown check type {kind!r}; valid: not_null, unique, accepted_values, "
        "row_count, freshness, expression, custom_sql"
    )


def _validated(check: Check) -> Check:
    check.sql(1)  # builds the query once: bad identifiers and missing bounds show now
    return check


def parse_checks(document: Any, source: str = "<checks>") -> list[Check]:
    """Checks from a parsed YAML/JSON document (a list of tests or ``{"tests": [...]}``).

    :raises DataQualityConfigError: with every problem found, each naming where it is.
    """
    tests = document.get("tests") if isinstance(document, Mapping) else document
    if not isinstance(tests, list):
        raise DataQualityConfigError([f"{source}: expected a list of tests or a 'tests' list"])
    checks: list[Check] = []
    problems: list[str] = []
    for i, test in enumerate(tests):
        where = f"{source}: test {test.get('name', i) if isinstance(test, Mapping) else i}"
        specs = test.get("checks") if isinstance(test, Mapping) else None
        if not isinstance(specs, list):
            problems.append(f"{where}: needs a 'checks' list")
            continue
        for j, spec in enumerate(specs):
            try:
                if not isinstance(spec, Mapping):
                    raise ValueError("a check is a mapping with a 'type'")
                checks.append(_validated(_one_check(test.get("table"), spec)))
            except KeyError as exc:
                problems.append(f"{where}, check {j}: missing {exc.args[0]!r}")
            except (ValueError, TypeError) as exc:
                problems.append(f"{where}, check {j}: {exc}")
    if problems:
        raise DataQualityConfigError(problems)
    return checks


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - the quality extra is missing
        raise TaskLibraryError(
            "YAML checks need PyYAML: pip install 'dremioframe_async[quality]'"
        ) from exc
    return yaml


def load_checks(directory: str | os.PathLike[str]) -> list[Check]:
    """Every check in the ``*.yaml``/``*.yml`` files of ``directory``, files in name order.

    Blocking (reads files): from async code call it through ``anyio.to_thread``.

    :raises FileNotFoundError: no such directory.
    :raises DataQualityConfigError: unreadable YAML or bad checks, all problems at once.
    """
    yaml = _yaml()
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"no data-quality directory {str(root)!r}")
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml"))
    checks: list[Check] = []
    problems: list[str] = []
    for path in files:
        try:
            checks += parse_checks(yaml.safe_load(path.read_text("utf-8")), path.name)
        except DataQualityConfigError as exc:
            problems += exc.problems
        except yaml.YAMLError as exc:
            problems.append(f"{path.name}: not valid YAML: {exc}")
    if problems:
        raise DataQualityConfigError(problems)
    return checks


# -- the task ---------------------------------------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DataQualityTask(ClientTask):
    """Run data-quality checks on Dremio and return a :class:`QualityReport`.

    Give ``checks`` (check objects) and/or ``directory`` (YAML files, read when
    the task runs). Each check is one query; up to ``max_concurrency`` run at
    once through ``client``, which works as for
    :class:`~dremioframe_async.tasks.DremioQueryTask`: by default the run's
    ``"dremio"`` resource, else one client per run from the ``DREMIO_*``
    environment. A check
    whose query Dremio rejects (a missing column, bad SQL) is reported as
    failed with the error; a connection failure fails the task (and is retried
    when ``retries`` is set). With ``on_failure="warn"`` failures are logged
    and the report returned. ``now`` (UTC) is the clock freshness checks use.

    :raises DataQualityFailed: a check failed and ``on_failure="fail"``.
    :raises DataQualityConfigError: bad checks (at construction, or for YAML, at run time).
    """

    def __init__(
        self,
        name: str,
        *,
        client: ClientSource = None,
        checks: Iterable[Check] = (),
        directory: str | os.PathLike[str] | None = None,
        on_failure: Literal["fail", "warn"] = "fail",
        sample_size: int = 5,
        max_concurrency: int = 4,
        now: Callable[[], dt.datetime] = _utc_now,
        **options: Any,
    ) -> None:
        self.checks = [_validated(c) for c in checks]
        if not self.checks and directory is None:
            raise DataQualityConfigError(["give checks=[...] and/or directory=..."])
        if on_failure not in ("fail", "warn"):
            raise DataQualityConfigError([f"on_failure must be 'fail' or 'warn': {on_failure!r}"])
        if sample_size < 1 or max_concurrency < 1:
            raise DataQualityConfigError(["sample_size and max_concurrency must be >= 1"])
        self.client, self.directory, self.on_failure = client, directory, on_failure
        self.sample_size, self.max_concurrency, self.now = sample_size, max_concurrency, now
        # Retried by default: what the Dremio tasks retry (connection, 429, 5xx, transient
        # job failures, timeouts); never a failed check or a rejected query.
        options = client_options(self, client, dremio_retry_options(options))
        super().__init__(name, self._execute, **options)

    async def _execute(self, context: RunContext) -> QualityReport:
        checks = list(self.checks)
        if self.directory is not None:
            checks += await anyio.to_thread.run_sync(load_checks, self.directory)
        async with client_scope(self, context) as client:
            report = await self._run_all(client, checks)
        if not report.passed:
            if self.on_failure == "fail":
                raise DataQualityFailed(self.name, report)
            logger.warning("data quality %r: %s", self.name, report.summary())
        return report

    async def _run_all(self, client: DremioClient, checks: list[Check]) -> QualityReport:
        results: list[CheckResult | None] = [None] * len(checks)
        limiter = anyio.CapacityLimiter(self.max_concurrency)
        broken: list[Exception] = []

        async def run(i: int, check: Check) -> None:
            async with limiter:
                try:
                    results[i] = await self._run_one(client, check)
                except Exception as exc:  # surfaced as itself below, not in an ExceptionGroup
                    broken.append(exc)
                    tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for i, check in enumerate(checks):
                tg.start_soon(run, i, check)
        if broken:
            raise broken[0]
        return QualityReport(tuple(r for r in results if r is not None))

    async def _run_one(self, client: DremioClient, check: Check) -> CheckResult:
        sql = check.sql(self.sample_size)
        try:
            table = await client.query(sql)
        except RETRYABLE_ERRORS:  # the connection, not the data: fail the attempt, maybe retry
            raise
        except DremioError as exc:
            return CheckResult(check.label, check.kind, False, 0, (), None, sql, str(exc))
        rows: list[dict[str, Any]] = table.to_pylist()
        return check.evaluate(rows, sql, self.now())
