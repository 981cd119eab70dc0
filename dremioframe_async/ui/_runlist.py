"""The runs list: its filters, one row per run, and pages of runs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..store import RunPage, RunStatus
from ._html import Markup, el, header_row
from ._model import mask
from ._pages import Urls, badge, counts_line, run_took
from ._times import stamp

__all__ = ["RunsFilter", "runs_page"]


@dataclass(frozen=True, slots=True)
class RunsFilter:
    """The runs list's filters as given: an exact pipeline (its links), a part of a
    pipeline's name, a status, a start range (dates, UTC), a backfill, a page size."""

    pipeline: str = ""
    contains: str = ""
    status: str = ""
    since: str = ""
    until: str = ""
    backfill: str = ""
    size: int = 50

    def kept(self) -> dict[str, str]:
        """The filters a page link carries along."""
        chosen = {
            "pipeline": self.pipeline,
            "pipeline_contains": self.contains,
            "status": self.status,
            "since": self.since,
            "until": self.until,
            "backfill": self.backfill,
            "limit": str(self.size) if self.size != 50 else "",
        }
        return {k: v for k, v in chosen.items() if v}


def _filters(urls: Urls, pipelines: Sequence[str], shown: RunsFilter) -> Markup:
    options = [el("option", {"value": ""}, "any status")] + [
        el("option", {"value": s.value, "selected": s.value == shown.status}, s.value)
        for s in RunStatus
    ]
    names = el(
        "datalist", {"id": "pipeline-names"}, [el("option", {"value": n}) for n in pipelines]
    )

    def day(name: str, label: str, value: str) -> Markup:
        attrs = {"type": "date", "name": name, "value": value, "aria-label": label}
        return el("label", {"class": "day"}, label, " ", el("input", attrs))

    return el(
        "form",
        {"class": "filters", "method": "get", "action": urls.runs()},
        el(
            "input",
            {
                "name": "pipeline_contains",
                "value": shown.contains,
                "placeholder": "pipeline contains",
                "list": "pipeline-names",
                "aria-label": "pipeline contains",
            },
        ),
        names,
        el("select", {"name": "status", "aria-label": "status"}, options),
        day("since", "from", shown.since),
        day("until", "to", shown.until),
        # Filters given by a link (one pipeline, one backfill) stay until cleared.
        [
            el("input", {"type": "hidden", "name": k, "value": v})
            for k, v in (("pipeline", shown.pipeline), ("backfill", shown.backfill))
            if v
        ],
        el("button", {"type": "submit"}, "Filter"),
    )


def _chosen(urls: Urls, shown: RunsFilter) -> Markup | None:
    """What a link chose (one pipeline, one backfill), with a way back to all runs."""
    parts = []
    if shown.pipeline:
        parts.append(f"pipeline {shown.pipeline} ")
    if shown.backfill:
        parts.append(f"backfill {shown.backfill} ")
    if not parts:
        return None
    rest = {k: v for k, v in shown.kept().items() if k not in ("pipeline", "backfill")}
    return el("p", {"class": "backfill"}, parts, el("a", {"href": urls.runs(**rest)}, "(all runs)"))


def _params_preview(params: Mapping[str, object], limit: int = 60) -> Markup | str:
    if not params:
        return ""
    text = json.dumps(mask(dict(params)), sort_keys=True, default=str)
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    return el("code", {"title": text}, short)


def runs_page(
    urls: Urls,
    page: RunPage,
    pipelines: Sequence[str],
    shown: RunsFilter,
    number: int = 1,
) -> Markup:
    """The runs list: filters, one row per run, and newer/older links with the page
    ``number`` (counted along the links: the cursors themselves carry no position).

    With ``shown.backfill``, only that backfill's runs: one group, named above the list.
    """
    by_pipeline: dict[str, str] = {}

    def pipeline_link(name: str) -> Markup:
        if name not in by_pipeline:
            by_pipeline[name] = urls.runs(pipeline=name)
        return el("a", {"href": by_pipeline[name]}, name)

    rows = [
        el(
            "tr",
            {"data-run": r.run_id},
            el("td", None, el("a", {"href": urls.run(r.run_id)}, r.run_id[:12])),
            el("td", None, pipeline_link(r.pipeline)),
            el("td", None, badge(r.status.value)),
            el("td", None, stamp(r.started)),
            el("td", None, run_took(r)),
            el("td", None, counts_line(r.counts)),
            el("td", {"class": "params"}, _params_preview(r.params)),
        )
        for r in page.runs
    ]
    keep = shown.kept()
    size = shown.size
    links = el(
        "p",
        {"class": "pager"},
        el(
            "a",
            {"href": urls.runs(**keep, after=page.newer, page=str(number - 1)), "rel": "prev"},
            "← newer",
        )
        if page.newer
        else None,
        f" page {number} of {max(1, -(-page.total // size))} · "
        f"{page.total} run{'s' if page.total != 1 else ''} ",
        el(
            "a",
            {"href": urls.runs(**keep, before=page.older, page=str(number + 1)), "rel": "next"},
            "older →",
        )
        if page.older
        else None,
    )
    head = header_row("Run", "Pipeline", "Status", "Started", "Duration", "Tasks", "Params")
    table = el("table", {"class": "runs"}, el("thead", None, head), el("tbody", None, rows))
    running = any(r.status is RunStatus.RUNNING for r in page.runs)
    return el(
        "main",
        # Every 5 s while a run is RUNNING, else every 15 s: new runs appear either way.
        {"id": "runs", "data-refresh": "5" if running else "15"},
        el("h1", None, "Runs"),
        _filters(urls, pipelines, shown),
        _chosen(urls, shown),
        el(
            "div",
            {"id": "runs-list"},
            table if rows else el("p", {"class": "muted"}, "no runs match"),
            links,
        ),
    )
