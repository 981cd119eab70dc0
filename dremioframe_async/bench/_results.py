"""What a sweep measures: frozen value objects, the knee, and their JSON form."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

__all__ = [
    "KNEE_GROWTH",
    "KNEE_P95_FACTOR",
    "Latency",
    "Machine",
    "Outcome",
    "Step",
    "Sweep",
    "find_knee",
    "percentile",
]

KNEE_GROWTH = 1.10
"""A step past the knee must raise throughput by at least this factor over the one before."""
KNEE_P95_FACTOR = 2.0
"""...while its p95 latency stays within this factor of the first step's."""
FORMAT = "dremioframe_async.bench/1"
SAMPLE_TABLE = "bench.sample"
"""The table the embedded FakeDremio serves to ``bench dremio``."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one call of the benchmarked work reports (all optional).

    ``rows`` and ``bytes`` feed rows/s and MB/s; ``phases`` maps a phase name
    (``submit``, ``queue``, ``execute``, ``fetch``) to its seconds.
    """

    rows: int = 0
    bytes: int = 0
    phases: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Latency:
    """Latency percentiles of a set of calls, in seconds (nearest-rank)."""

    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Latency:
        """Percentiles of ``samples`` (all NaN when there are none)."""
        ordered = sorted(samples)
        return cls(
            percentile(ordered, 50),
            percentile(ordered, 95),
            percentile(ordered, 99),
            ordered[-1] if ordered else math.nan,
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of sorted ``ordered`` (NaN when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a sweep: ``concurrency`` callers running the work back to back.

    ``queries`` counts successful calls, ``errors`` failed ones by exception type,
    and ``error_examples`` holds the first message of each type; a step with any
    error is ``flagged``. Rates are over ``seconds``, the step's
    measured wall time (monotonic clock, warm-up excluded). ``measured_concurrency``
    is the time-averaged number of calls in flight; ``peak_concurrency`` the most
    at once. ``phases`` holds a :class:`Latency` per phase the work reported.
    """

    concurrency: int
    queries: int
    seconds: float
    queries_per_s: float
    rows_per_s: float
    mb_per_s: float
    latency: Latency
    phases: Mapping[str, Latency]
    errors: Mapping[str, int]
    measured_concurrency: float
    peak_concurrency: int
    rows: int = 0
    bytes: int = 0
    error_examples: Mapping[str, str] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """Whether any call failed in this step."""
        return bool(self.errors)

    @property
    def error_count(self) -> int:
        """How many calls failed."""
        return sum(self.errors.values())


@dataclass(frozen=True, slots=True)
class Machine:
    """Where the figures were measured: they are only comparable on the same machine."""

    cpu_count: int
    load_average: tuple[float, float, float]
    python: str
    platform: str

    @classmethod
    def current(cls) -> Machine:
        """This machine, now (load average is zeros where the OS has none)."""
        try:
            load = os.getloadavg()
        except OSError:  # pragma: no cover - not on Linux/macOS
            load = (0.0, 0.0, 0.0)
        return cls(
            os.cpu_count() or 1,
            (round(load[0], 2), round(load[1], 2), round(load[2], 2)),
            sys.version.split()[0],
            platform.platform(),
        )


@dataclass(frozen=True, slots=True)
class Sweep:
    """A concurrency sweep: its steps in order, the machine, and the knee.

    ``label`` names what was measured (``rest``, ``flight``, a function name);
    ``machine_after`` is the machine's load when the sweep ended.
    """

    label: str
    steps: tuple[Step, ...]
    machine: Machine
    machine_after: Machine
    warmup: float = 0.0
    duration: float | None = None
    queries: int | None = None

    @property
    def knee(self) -> Step | None:
        """The step at the knee (see :func:`find_knee`)."""
        return find_knee(self.steps)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_dict`` reads it back). Each step also carries
        ``flagged``, and the sweep its ``knee`` concurrency, for readers of the raw JSON."""
        data = {"format": FORMAT, **asdict(self)}
        for raw, step in zip(data["steps"], self.steps, strict=True):
            raw["flagged"] = step.flagged
        knee = self.knee
        data["knee"] = None if knee is None else knee.concurrency
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sweep:
        """Read a dict written by :meth:`to_dict`.

        :raises ValueError: the data is not a sweep in this format.
        """
        if data.get("format") != FORMAT:
            raise ValueError(f"not a benchmark sweep (format {data.get('format')!r})")
        try:
            return cls(
                label=str(data["label"]),
                steps=tuple(_step(s) for s in data["steps"]),
                machine=_machine(data["machine"]),
                machine_after=_machine(data["machine_after"]),
                warmup=float(data["warmup"]),
                duration=data["duration"],
                queries=data["queries"],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed benchmark sweep: {exc!r}") from exc


def dump_sweeps(sweeps: Sequence[Sweep]) -> str:
    """Sweeps as JSON text (NaN percentiles of a step without successes become null)."""
    return json.dumps([_nan_to_none(s.to_dict()) for s in sweeps], indent=2) + "\n"


def load_sweeps(text: str) -> list[Sweep]:
    """Read JSON written by :func:`dump_sweeps` back into :class:`Sweep` objects.

    :raises ValueError: the text is not such JSON.
    """
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of sweeps")
    return [Sweep.from_dict(item) for item in data]


def find_knee(steps: Sequence[Step]) -> Step | None:
    """The knee of a sweep: walking up from the first step, the last step whose
    throughput grew by at least 10% over the step before while its p95 stayed
    within 2x of the first step's. A step with errors ends the walk (a knee is
    never a failing step). The first step when no later one qualifies; None for
    no steps or a failing first step.
    """
    if not steps or steps[0].flagged:
        return None
    knee, base = steps[0], steps[0].latency.p95
    for before, step in pairwise(steps):
        grew = step.queries_per_s >= KNEE_GROWTH * before.queries_per_s
        if step.flagged or not grew or not step.latency.p95 <= KNEE_P95_FACTOR * base:
            break
        knee = step
    return knee


def _latency(data: Mapping[str, Any]) -> Latency:
    return Latency(*(_float(data[k]) for k in ("p50", "p95", "p99", "max")))


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _step(data: Mapping[str, Any]) -> Step:
    return Step(
        concurrency=int(data["concurrency"]),
        queries=int(data["queries"]),
        seconds=float(data["seconds"]),
        queries_per_s=float(data["queries_per_s"]),
        rows_per_s=float(data["rows_per_s"]),
        mb_per_s=float(data["mb_per_s"]),
        latency=_latency(data["latency"]),
        phases={k: _latency(v) for k, v in data["phases"].items()},
        errors={str(k): int(v) for k, v in data["errors"].items()},
        measured_concurrency=float(data["measured_concurrency"]),
        peak_concurrency=int(data["peak_concurrency"]),
        rows=int(data["rows"]),
        bytes=int(data["bytes"]),
        error_examples={str(k): str(v) for k, v in data.get("error_examples", {}).items()},
    )


def _machine(data: Mapping[str, Any]) -> Machine:
    load = tuple(float(x) for x in data["load_average"])
    if len(load) != 3:
        raise TypeError("load_average needs three values")
    return Machine(
        int(data["cpu_count"]), (load[0], load[1], load[2]), data["python"], data["platform"]
    )


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value
