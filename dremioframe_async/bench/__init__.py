"""Throughput benchmarking: concurrency sweeps of any async callable, and charts.

``await sweep(work, concurrency=[1, 4, 16, 64], duration=10.0)`` runs ``work`` at
each concurrency in turn and returns a :class:`Sweep` of frozen :class:`Step`
figures (queries/s, rows/s, MB/s, latency percentiles, per-phase latency,
errors by type, measured concurrency) with the machine's CPU count and load
average; ``sweep.knee`` is the last step that still scaled. ``dump_sweeps`` /
``load_sweeps`` write and read them as JSON, ``sweep_chart`` draws them as SVG.

``rest_work(client, statements)`` and ``flight_work(client, statements)`` are the
Dremio queries ``dremioframe-async bench dremio`` measures; ``embedded_dremio()``
is the FakeDremio it uses without ``--url``. ``bench engine`` builds on
:mod:`dremioframe_async.bench.shapes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._cli import add_bench_command
from ._engine import EngineReport, EngineRow, measure_engine
from ._results import (
    Latency,
    Machine,
    Outcome,
    Step,
    Sweep,
    dump_sweeps,
    find_knee,
    load_sweeps,
)
from ._svg import bar_chart, sweep_chart
from ._sweep import Progress, Work, sweep
from ._through import through_engine

if TYPE_CHECKING:
    from ._dremio import embedded_dremio, flight_work, rest_work

__all__ = [
    "EngineReport",
    "EngineRow",
    "Latency",
    "Machine",
    "Outcome",
    "Progress",
    "Step",
    "Sweep",
    "Work",
    "add_bench_command",
    "bar_chart",
    "dump_sweeps",
    "embedded_dremio",
    "find_knee",
    "flight_work",
    "load_sweeps",
    "measure_engine",
    "rest_work",
    "sweep",
    "sweep_chart",
    "through_engine",
]

_DREMIO = ("embedded_dremio", "flight_work", "rest_work")


def __getattr__(name: str) -> Any:
    # The Dremio work needs aiohttp and pyarrow; import it only when asked for.
    if name in _DREMIO:
        from . import _dremio

        return getattr(_dremio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
