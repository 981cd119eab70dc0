"""What the pipelines page and ``GET /api/pipelines`` show of each pipeline.

Every pipeline the store has runs of is listed, besides those the UI serves:
the store knows the pipeline names of its runs. A served pipeline also has its
graph, its trigger form and, when the UI runs its schedule, the next fire and
the pause switch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..store import RunInfo, RunQuery, RunStore, SchedulePauses, StateEntry, StateStore
from ._launcher import Edges, PipelineEntry, planned
from ._model import mask, run_json
from ._params import ADDED_BY_SCHEDULERS, ParamField, param_fields
from ._state import UIState

__all__ = ["PipelineView", "pipeline_json", "pipeline_views", "planned_size"]

LAST_RUNS = 5


@runtime_checkable
class _CountsRuns(Protocol):
    async def run_counts(self) -> dict[tuple[str, str], int]: ...


@dataclass(frozen=True, slots=True)
class PipelineView:
    """One pipeline: served here (``entry``) or only found in the store."""

    name: str
    entry: PipelineEntry | None
    runs: Mapping[str, int]  # by status
    last: Sequence[RunInfo]
    state: Sequence[StateEntry]
    fields: Sequence[ParamField]
    next_fire: float | None = None
    paused_since: float | None = None
    # A served pipeline's task count and edges (see ``planned``), planned on the loop: the
    # JSON of a large one is built in a worker thread, which plans nothing.
    planned: tuple[int, Callable[[], Edges]] | None = None

    @property
    def schedule(self) -> str | None:
        return self.entry.describe() if self.entry is not None else None

    @property
    def runs_schedule(self) -> bool:
        """Whether the UI runs this pipeline's schedule (and so offers to pause it)."""
        return self.entry is not None and bool(self.entry.schedules)


async def _runs_by_pipeline(store: RunStore) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    if isinstance(store, _CountsRuns):
        for (pipeline, status), n in (await store.run_counts()).items():
            found.setdefault(pipeline, {})[status] = n
    return found


async def _view(
    ui: UIState,
    name: str,
    runs: Mapping[str, int],
    paused: Mapping[str, float],
    now: float,
) -> PipelineView:
    store = ui.store
    entry = ui.pipelines.get(name)
    last = (await store.query_runs(RunQuery(pipeline=name, limit=LAST_RUNS))).runs
    state = await store.state_entries(name) if isinstance(store, StateStore) else []
    schedules = entry.schedules if entry is not None else ()
    declared = entry.params if entry is not None else None
    scheduled = next((s.params for s in schedules if isinstance(s.params, Mapping)), None)
    latest = (
        {k: v for k, v in last[0].params.items() if k not in ADDED_BY_SCHEDULERS} if last else None
    )
    fields = param_fields(declared, scheduled, latest) if entry is not None else []
    return PipelineView(
        name,
        entry,
        runs,
        last,
        state,
        fields,
        next_fire=min((next(s.fire_times(now)) for s in schedules), default=None),
        paused_since=paused.get(name),
        planned=planned(entry.pipeline) if entry is not None else None,
    )


async def pipeline_views(ui: UIState) -> list[PipelineView]:
    """The served pipelines in the order given, then the store's others by name.

    :raises StoreError: when the store cannot be reached.
    """
    store = ui.store
    runs = await _runs_by_pipeline(store)
    paused = await store.paused_schedules() if isinstance(store, SchedulePauses) else {}
    names = [*ui.pipelines, *sorted(n for n in runs if n not in ui.pipelines)]
    now = ui.launcher.clock.now()
    return [await _view(ui, name, runs.get(name, {}), paused, now) for name in names]


def _field_json(f: ParamField) -> dict[str, Any]:
    return {"name": f.name, "kind": f.kind, "default": None if f.kind == "secret" else f.default}


def planned_size(view: PipelineView) -> int:
    """How many tasks a served pipeline lists (0: none, or a graph with a problem)."""
    return view.planned[0] if view.planned is not None else 0


def pipeline_json(view: PipelineView) -> dict[str, Any]:
    """A pipeline as ``GET /api/pipelines`` gives it."""
    data: dict[str, Any] = {
        "name": view.name,
        "served": view.entry is not None,
        "schedule": view.schedule,
        "schedule_runs_here": view.runs_schedule,
        "next_fire": view.next_fire,
        "paused_since": view.paused_since,
        "runs": dict(view.runs),
        "last_runs": [run_json(r) for r in view.last],
        "params": [_field_json(f) for f in view.fields],
        "state": [{"key": e.key, "value": mask({e.key: e.value})[e.key]} for e in view.state],
    }
    if view.planned is not None:
        edges = view.planned[1]()
        data["tasks"] = [
            {"key": k, "upstream": list(up)}
            for k, up in (edges.items() if isinstance(edges, dict) else ())
        ]
        data["graph_error"] = edges if isinstance(edges, str) else None
    return data
