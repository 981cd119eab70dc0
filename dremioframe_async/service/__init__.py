"""Pipelines as a service: many processes, one store.

:func:`serve` runs in one long-lived process what a team runs in production:
the schedules of its pipelines (each fire claimed once across every process on
the store), the web UI and its JSON API, and the execution of queued and
triggered runs (claimed from the store's run queue, within each pipeline's
``max_active_runs``). Any number of processes, on one host with SQLite or on
many with PostgreSQL, serve the same pipelines from one store.
``dremioframe-async serve PATH...`` is the command-line front.
"""

from __future__ import annotations

from ._serve import ServeError, serve

__all__ = ["ServeError", "serve"]
