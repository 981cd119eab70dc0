"""Process metrics: a small registry the engine, the Dremio client and the dispatcher feed.

Off until something turns it on (:func:`enable_metrics`; a UI or ``serve``
process does): while off, each hook is one attribute check. On, it keeps
counters, gauges and histograms in memory and renders them as Prometheus text
(``GET /metrics``), and, when OpenTelemetry's API is installed and a meter
provider is given or configured globally, records each value through
OpenTelemetry metrics too. Names start with ``dremioframe_``, carry their unit
(``_seconds``, ``_bytes``, ``_total``) and a ``pipeline`` label where one applies.
Task labels are task names, never mapped-instance keys, so a fan-out adds no
label values. A pipeline's first ``TASK_LABELS`` task names each get their own;
its tasks past those are counted together, as ``task="(other tasks)"``. So with
pipelines: the first ``PIPELINE_LABELS`` names seen, then ``"(other pipelines)"``.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any

__all__ = [
    "OTHER_PIPELINES",
    "OTHER_TASKS",
    "PIPELINE_LABELS",
    "REGISTRY",
    "TASK_LABELS",
    "Registry",
    "enable_metrics",
]

Labels = tuple[str, ...]
# Each task name is a series of every task metric for the life of the process, and
# lines in every scrape (rendered on the event loop). A pipeline of 100,000 distinctly
# named tasks, or one that puts a date in its task names, would grow both without end.
TASK_LABELS = 1_000  # task names a pipeline's task metrics carry, the first seen
OTHER_TASKS = "(other tasks)"  # the label of its tasks past those
# So with pipeline names (a service that names each day's pipeline after the day).
PIPELINE_LABELS = 200
OTHER_PIPELINES = "(other pipelines)"
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self.lock = threading.Lock()
        self.otel: Any = None  # the OpenTelemetry instrument, when one records too

    def _attrs(self, labels: Labels) -> dict[str, str]:
        return dict(zip(self.label_names, labels, strict=True))

    def header(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"

    def samples(self) -> Iterator[str]:  # pragma: no cover - every kind overrides it
        return iter(())


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        super().__init__(name, help_text, labels)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        with self.lock:
            self.values[labels] = self.values.get(labels, 0.0) + amount
        if self.otel is not None:
            self.otel.add(amount, self._attrs(labels))

    def samples(self) -> Iterator[str]:
        with self.lock:
            items = sorted(self.values.items())
        for labels, value in items:
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


class Gauge(_Metric):
    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str],
        read: Callable[[], Iterable[tuple[Labels, float]]] | None = None,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.values: dict[Labels, float] = {}
        self.read = read  # a gauge computed when it is read (pool occupancy)

    def add(self, labels: Labels, amount: float) -> None:
        with self.lock:
            self.values[labels] = self.values.get(labels, 0.0) + amount
        if self.otel is not None:
            self.otel.add(amount, self._attrs(labels))

    def current(self) -> list[tuple[Labels, float]]:
        if self.read is not None:
            return sorted(self.read())
        with self.lock:
            return sorted(self.values.items())

    def samples(self) -> Iterator[str]:
        for labels, value in self.current():
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        super().__init__(name, help_text, labels)
        # Per labels: the count in each bucket and past the last, then sum and count.
        self.values: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        # One bucket per observation (made cumulative when rendered): a bisect, not a loop.
        i = bisect_left(_BUCKETS, value)
        with self.lock:
            row = self.values.get(labels)
            if row is None:
                row = self.values[labels] = [0.0] * (len(_BUCKETS) + 3)
            row[i] += 1
            row[-2] += value
            row[-1] += 1
        if self.otel is not None:
            self.otel.record(value, self._attrs(labels))

    def samples(self) -> Iterator[str]:
        with self.lock:
            items = sorted((k, list(v)) for k, v in self.values.items())
        names = self.label_names
        for labels, row in items:
            cumulative = list(accumulate(row[: len(_BUCKETS) + 1]))
            for bound, count in zip((*_BUCKETS, math.inf), cumulative, strict=True):
                le = 'le="' + _number(bound) + '"'
                yield f"{self.name}_bucket{_labels(names, labels, le)} {_number(count)}"
            yield f"{self.name}_sum{_labels(names, labels)} {_number(row[-2])}"
            yield f"{self.name}_count{_labels(names, labels)} {_number(row[-1])}"


class _FirstSeen:
    """Label values: the first names seen, up to a limit, are their own; the rest ``other``."""

    def __init__(self, other: str) -> None:
        self.other = other
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def label(self, name: str, limit: int) -> str:
        names = self._names
        # A set only grows: a known name, or any other once it is full, needs no lock.
        if name in names:
            return name
        if len(names) >= limit:
            return self.other
        with self._lock:
            if name not in names:
                if len(names) >= limit:
                    return self.other
                names.add(name)
        return name


class Registry:
    """The process's metrics; ``enabled`` is what every hook checks first."""

    def __init__(self) -> None:
        self.enabled = False
        self.live_limiters: dict[int, tuple[str, Any, dict[str, Any]]] = {}
        self._pipelines = _FirstSeen(OTHER_PIPELINES)
        self._task_names: dict[str, _FirstSeen] = {}  # per pipeline label, its tasks'
        self._names_lock = threading.Lock()
        p, t = ("pipeline",), ("pipeline", "task")
        self.runs_total = Counter(
            "dremioframe_runs_finished_total",
            "Runs this process finished, by status.",
            (*p, "status"),
        )
        self.runs_running = Gauge("dremioframe_runs_running", "Runs going in this process.", p)
        self.attempt_seconds = Histogram(
            "dremioframe_task_attempt_duration_seconds",
            "Task attempts this process ran, by how they ended.",
            (*t, "state"),
        )
        self.retries = Counter(
            "dremioframe_task_retries_total", "Task attempts after a task's first.", t
        )
        self.tasks_running = Gauge(
            "dremioframe_tasks_running", "Task attempts running in this process now.", p
        )
        self.slots_in_use = Gauge(
            "dremioframe_concurrency_slots_in_use",
            "max_concurrency slots taken, over this process's running runs.",
            p,
            lambda: self._occupancy(None),
        )
        self.pool_in_use = Gauge(
            "dremioframe_pool_slots_in_use",
            "Pool slots taken, over this process's running runs.",
            (*p, "pool"),
            lambda: self._occupancy("pools"),
        )
        v = ("via",)
        self.queries = Counter(
            "dremioframe_dremio_queries_total", "Dremio queries, by outcome.", (*v, "outcome")
        )
        self.rows = Counter("dremioframe_dremio_rows_total", "Rows Dremio queries returned.", v)
        self.bytes = Counter(
            "dremioframe_dremio_bytes_total", "Arrow bytes Dremio queries returned.", v
        )
        self.query_seconds = Histogram(
            "dremioframe_dremio_query_duration_seconds", "Dremio query latency.", (*v, "outcome")
        )
        self.store_seconds = Histogram(
            "dremioframe_store_write_duration_seconds",
            "Writes of run events to the run store.",
            ("store", "outcome"),
        )

    def pipeline_label(self, pipeline: str) -> str:
        """The ``pipeline`` label of ``pipeline``: its name, unless ``PIPELINE_LABELS``
        others were seen first (``OTHER_PIPELINES``)."""
        return self._pipelines.label(pipeline, PIPELINE_LABELS)

    def task_label(self, pipeline: str, name: str) -> str:
        """The ``task`` label of task ``name`` of the pipeline labelled ``pipeline``: the
        name itself, unless that pipeline's tasks already took ``TASK_LABELS`` others
        (``OTHER_TASKS``)."""
        names = self._task_names.get(pipeline)
        if names is None:
            with self._names_lock:
                names = self._task_names.setdefault(pipeline, _FirstSeen(OTHER_TASKS))
        return names.label(name, TASK_LABELS)

    def metrics(self) -> list[_Metric]:
        return [v for v in vars(self).values() if isinstance(v, _Metric)]

    def _occupancy(self, which: str | None) -> list[tuple[Labels, float]]:
        used: dict[Labels, float] = {}
        for pipeline, run_limiter, pools in list(self.live_limiters.values()):
            if which is None:
                if run_limiter is not None:
                    key: Labels = (pipeline,)
                    used[key] = used.get(key, 0.0) + run_limiter.borrowed_tokens
                continue
            for pool, limiter in pools.items():
                key = (pipeline, pool)
                used[key] = used.get(key, 0.0) + limiter.borrowed_tokens
        return list(used.items())

    def lines(self) -> Iterator[str]:
        """Every metric's lines of Prometheus text (format 0.0.4), one at a time."""
        for metric in self.metrics():
            yield from metric.header()
            yield from metric.samples()

    def render(self, extra: Iterable[str] = ()) -> str:
        """Everything as Prometheus text (format 0.0.4), ``extra`` lines first."""
        return "\n".join([*extra, *self.lines()]) + "\n"


REGISTRY = Registry()


def enable_metrics(meter_provider: Any = None) -> Registry:
    """Start collecting this process's metrics (idempotent); returns the registry.

    With OpenTelemetry's API installed, values are also recorded through
    ``meter_provider`` (or the global meter provider, when one is set).
    """
    REGISTRY.enabled = True
    _bind_otel(REGISTRY, meter_provider)
    return REGISTRY


def _bind_otel(registry: Registry, provider: Any) -> None:
    try:
        from opentelemetry import metrics
    except ImportError:
        return
    if provider is None:
        provider = metrics.get_meter_provider()
        if type(provider).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider"):
            return  # nothing configured: Prometheus text only
    meter = provider.get_meter("dremioframe_async")
    for metric in registry.metrics():
        if metric.otel is not None:
            continue
        if isinstance(metric, Counter):
            metric.otel = meter.create_counter(metric.name, description=metric.help)
        elif isinstance(metric, Histogram):
            unit = "s" if metric.name.endswith("_seconds") else ""
            metric.otel = meter.create_histogram(metric.name, unit=unit, description=metric.help)
        elif isinstance(metric, Gauge) and metric.read is None:
            metric.otel = meter.create_up_down_counter(metric.name, description=metric.help)
        elif isinstance(metric, Gauge):  # read when collected: pool occupancy
            metric.otel = meter.create_observable_gauge(
                metric.name, callbacks=[_observe(metric, metrics)], description=metric.help
            )


def _observe(gauge: Gauge, metrics: Any) -> Callable[[Any], Iterable[Any]]:
    """An OpenTelemetry callback reporting ``gauge``'s current values."""

    def callback(options: Any) -> Iterable[Any]:
        return [
            metrics.Observation(value, dict(zip(gauge.label_names, labels, strict=True)))
            for labels, value in gauge.current()
        ]

    return callback
