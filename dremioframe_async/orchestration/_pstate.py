"""Pipeline state: a small per-pipeline key-value store, written only by tasks that succeed.

A task sees it as ``context.state`` (a :class:`PipelineState`). Reads see the
store's state as the run first loaded it, plus what this run's successful
tasks wrote since. Writes are buffered per attempt: they travel on the task's
SUCCESS event and the store commits them in the same transaction as that
SUCCESS record, so a failed, timed-out or cancelled attempt changes nothing, and
a resumed run sees the state as the failed run left it.

The store is read once per run, and only when a task that takes ``context``
is about to run; values are JSON (checked when set, so a bad value fails the
attempt that set it rather than the store's batch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Protocol, runtime_checkable

import anyio

from ..errors import StoreError
from ._errors import ArgumentError

__all__ = ["PipelineState", "RunState", "StateSource", "StateUnavailable", "StateValueError"]

StateWrites = Mapping[str, str | None]
"""Encoded writes of one task instance: key -> JSON text, or None for a deletion."""


@runtime_checkable
class StateSource(Protocol):
    """A run store that keeps pipeline state (every store in ``dremioframe_async.store``)."""

    async def list_state(self, pipeline: str) -> Mapping[str, Any]:
        """Every key of ``pipeline``'s state with its value."""
        ...


class StateValueError(ArgumentError):
    """``context.state[key] = value`` got a key or value that is not JSON-storable."""

    def __init__(self, key: object, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"pipeline state key {key!r}: {problem}")


class StateUnavailable(StoreError):
    """A task wrote pipeline state in a run that has no store to keep it."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        super().__init__(
            f"pipeline {pipeline!r}: writing context.state needs a run store "
            "(run(store=...)); without one the write would be lost"
        )


def encode_value(key: object, value: Any) -> str:
    """``value`` as JSON text, or :class:`StateValueError`."""
    if not isinstance(key, str) or not key:
        raise StateValueError(key, "keys must be non-empty strings")
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StateValueError(key, f"the value is not JSON ({exc})") from exc


class RunState:
    """The pipeline state as one run sees it: loaded once, then this run's commits."""

    __slots__ = ("_lock", "_source", "_values", "pipeline")

    def __init__(self, pipeline: str, source: StateSource | None) -> None:
        self.pipeline = pipeline
        self._source = source
        self._values: dict[str, str] | None = None if source is not None else {}
        self._lock: anyio.Lock | None = None

    @property
    def loaded(self) -> bool:
        """Whether reads can be answered without the store."""
        return self._values is not None

    @property
    def writable(self) -> bool:
        """Whether a store keeps what tasks write."""
        return self._source is not None

    async def load(self) -> None:
        """Read the store's state once (concurrent callers wait for the one read)."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._values is None:
                assert self._source is not None
                stored = await self._source.list_state(self.pipeline)
                self._values = {k: encode_value(k, v) for k, v in stored.items()}

    def text(self, key: str) -> str | None:
        assert self._values is not None, "RunState.load() first"
        return self._values.get(key)

    def keys(self) -> list[str]:
        assert self._values is not None, "RunState.load() first"
        return list(self._values)

    def commit(self, writes: StateWrites) -> None:
        """Apply a successful task's writes for the rest of this run to see."""
        assert self._values is not None
        for key, text in writes.items():
            if text is None:
                self._values.pop(key, None)
            else:
                self._values[key] = text

    def view(self) -> PipelineState:
        """The ``context.state`` of one task instance."""
        return PipelineState(self)


_DELETED = None


class PipelineState(MutableMapping[str, Any]):
    """``context.state``: the pipeline's state, read and written by one task instance.

    A mapping of JSON values (every read decodes a fresh copy). ``state[key] =
    value``, ``state.set(key, value)`` and ``del state[key]`` are buffered and
    become visible to other tasks and runs only when this task succeeds: they are
    committed with its SUCCESS record. A failed attempt's writes are dropped
    when the next attempt starts.

    :raises StateValueError: (on write) a key that is not a non-empty string or
        a value that is not JSON.
    :raises StateUnavailable: (on write) the run has no store.
    """

    __slots__ = ("_pending", "_run")

    encode = staticmethod(encode_value)

    def __init__(self, run: RunState) -> None:
        self._run = run
        self._pending: dict[str, str | None] = {}

    def _text(self, key: str) -> str | None:
        if key in self._pending:
            return self._pending[key]
        return self._run.text(key)

    def __getitem__(self, key: str) -> Any:
        text = self._text(key)
        if text is None:
            raise KeyError(key)
        return json.loads(text)

    def __setitem__(self, key: str, value: Any) -> None:
        text = encode_value(key, value)
        if not self._run.writable:
            raise StateUnavailable(self._run.pipeline)
        self._pending[key] = text

    def set(self, key: str, value: Any) -> None:
        """Same as ``state[key] = value``."""
        self[key] = value

    def __delitem__(self, key: str) -> None:
        if self._text(key) is None:
            raise KeyError(key)
        if not self._run.writable:
            raise StateUnavailable(self._run.pipeline)
        self._pending[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        keys = dict.fromkeys(self._run.keys())
        keys.update(dict.fromkeys(self._pending))
        return iter([k for k in keys if self._text(k) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"<PipelineState {self._run.pipeline!r} keys={list(self)}>"

    @property
    def writes(self) -> StateWrites:
        """This attempt's buffered writes (key -> JSON text, None for a deletion)."""
        return dict(self._pending)

    def begin_attempt(self) -> None:
        """Drop what an earlier, failed attempt wrote."""
        self._pending = {}
