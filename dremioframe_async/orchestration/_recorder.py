"""What the runner needs from a run store, stated here so the engine imports no store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._events import Event

__all__ = ["PriorRun", "RunRecorder"]


@dataclass(frozen=True, slots=True)
class PriorRun:
    """What a resumed run takes over from an earlier one.

    ``results`` holds the stored results of the tasks that succeeded and whose
    results could be stored; every other task of the pipeline runs again.
    """

    run_id: str
    pipeline: str
    params: Mapping[str, Any]
    results: Mapping[str, Any]


@runtime_checkable
class RunRecorder(Protocol):
    """A sink for a run's events that can also hand back an earlier run for resuming.

    ``record`` receives events in emission order, in batches; the runner awaits
    it off the tasks' path and waits for the last batch (shielded, bounded)
    before ``run()`` returns or re-raises.
    """

    async def record(self, events: Sequence[Event]) -> None: ...

    async def load_prior_run(self, run_id: str) -> PriorRun:
        """Return the run to resume; raise ``LookupError`` when it is unknown."""
        ...
