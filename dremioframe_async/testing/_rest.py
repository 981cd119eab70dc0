"""FakeDremio's REST API: its routes, the middleware and handlers, and how a job runs.

The middleware plays what the knobs injected (holds, faults, latency), checks
the credentials, and records every request; the handlers serve logins, jobs,
results pages and the catalog. A job's SQL runs when the job is first looked at
after its latency has passed, so the server owns no background tasks.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import pyarrow as pa
from aiohttp import web

from ._catalog import CatalogView
from ._json import dremio_schema, json_ready, page_json
from ._login import session_json
from ._model import CannedResponse, FakeJob, Fault, Hold, RecordedRequest
from ._oauth import OAuthServer
from ._sql import SqlEngine
from ._urlpath import remove_dot_segments

__all__ = ["RestApi", "SlowJobs"]

logger = logging.getLogger("dremioframe_async.testing")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_LIMIT = 500
_SECRET_FIELDS = ("password", "client_secret", "subject_token")


def _error(status: int, message: str, more_info: str = "", **headers: str) -> web.Response:
    body = {"errorMessage": message, "moreInfo": more_info or message}
    return web.json_response(body, status=status, headers=headers or None)


class SlowJobs(CannedResponse):
    """A latency override only: the SQL still runs normally."""


class RestApi:
    """The REST side of :class:`FakeDremio`, which sets the state declared here."""

    requests: list[RecordedRequest]
    jobs: dict[str, FakeJob]
    token: str
    username: str
    password: str
    project_id: str
    request_latency: float
    oauth: OAuthServer
    _engine: SqlEngine
    _catalog: CatalogView
    _started_ms: int
    _sessions: set[str]
    _canned: list[CannedResponse]
    _faults: list[Fault]
    _holds: list[Hold]
    _short_pages: list[Fault]
    _extra_rows: list[tuple[str, int]]
    _late_cancels: int
    _job_locks: dict[str, anyio.Lock]

    def _issue_token(self) -> str:
        """A new session token (``FakeDremio``'s: logins, Flight and OAuth share them)."""
        raise NotImplementedError

    def _latency_for(self, sql: str) -> tuple[CannedResponse | None, float, float]:
        """The canned answer, latency and queue wait of a new job (``FakeDremio``'s)."""
        raise NotImplementedError

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/apiv2/login", self._login)
        app.router.add_post("/oauth/token", self.oauth.token)
        for prefix in ("/api/v3", "/v0/projects/{project}"):
            app.router.add_post(prefix + "/sql", self._submit)
            app.router.add_get(prefix + "/job/{job}", self._job_status)
            app.router.add_get(prefix + "/job/{job}/results", self._results)
            app.router.add_post(prefix + "/job/{job}/cancel", self._cancel)
            app.router.add_get(prefix + "/catalog", self._catalog_root)
            app.router.add_post(prefix + "/catalog", self._catalog_create)
            app.router.add_get(prefix + "/catalog/by-path/{tail:.*}", self._catalog_by_path)
            app.router.add_get(prefix + "/catalog/{id}", self._catalog_by_id)
            app.router.add_delete(prefix + "/catalog/{id}", self._catalog_delete)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resolved = remove_dot_segments(request.rel_url.raw_path)
        if resolved != request.rel_url.raw_path:
            # Like the web servers and proxies in front of Dremio: a bare "." or ".."
            # segment is resolved, so it can lead to another endpoint.
            location = request.rel_url.with_path(resolved, encoded=True)
            self.requests.append(RecordedRequest(request.method, request.path, {}, None, 308))
            return web.Response(status=308, headers={"Location": str(location)})
        body = await self._body(request)
        if self.request_latency:
            await anyio.sleep(self.request_latency)
        hold = next((h for h in self._holds if h.take(request.method, request.path)), None)
        if hold is not None:
            await hold.wait()
        fault = self._fault_for(request)
        response = self._fault_response(request, fault) or self._auth_failure(request)
        if response is None:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = _error(exc.status, exc.reason)
            if fault is not None and fault.lose_reply and request.transport is not None:
                request.transport.close()  # handled, but the answer never leaves
        record = RecordedRequest(
            request.method, request.path, dict(request.query), body, response.status
        )
        self.requests.append(record)
        logger.debug("%s %s -> %d", request.method, request.path, response.status)
        return response

    async def _body(self, request: web.Request) -> Any:
        if not request.can_read_body:
            return None
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None
        if isinstance(body, dict):  # secrets stay out of the log
            body = {k: "***" if k in _SECRET_FIELDS else v for k, v in body.items()}
        return body

    def _fault_for(self, request: web.Request) -> Fault | None:
        return next((f for f in self._faults if f.take(request.method, request.path)), None)

    def _fault_response(
        self, request: web.Request, fault: Fault | None
    ) -> web.StreamResponse | None:
        if fault is None or fault.lose_reply:
            return None
        if fault.disconnect:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=499)  # never reaches the client
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        return _error(fault.status, fault.message, **headers)

    def _auth_failure(self, request: web.Request) -> web.Response | None:
        if request.path in ("/apiv2/login", "/oauth/token"):
            return None
        project = request.match_info.get("project")
        if project is not None and project != self.project_id:
            return _error(404, f"Project {project} not found")
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").removeprefix("_dremio")
        if token and (token == self.token or token in self._sessions):
            return None
        return _error(401, "Unauthorized", "A valid token is required")

    async def _login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("userName") != self.username or body.get("password") != self.password:
            return _error(401, "Invalid username or password")
        token = self._issue_token()
        return web.json_response(session_json(self.username, token, self._started_ms))

    async def _submit(self, request: web.Request) -> web.Response:
        body = await request.json()
        sql = body.get("sql") if isinstance(body, dict) else None
        if not isinstance(sql, str) or not sql.strip():
            return _error(400, 'Missing or empty "sql"')
        _, latency, queued = self._latency_for(sql)
        job = FakeJob(str(uuid.uuid4()), sql, tuple(body.get("context") or ()), latency)
        job.queued = queued
        job.extra_rows = next((n for sub, n in self._extra_rows if sub in sql.lower()), 0)
        self.jobs[job.id] = job
        return web.json_response({"id": job.id})

    def _job_of(self, request: web.Request) -> FakeJob:
        job = self.jobs.get(request.match_info["job"])
        if job is None:
            raise web.HTTPNotFound(reason=f"Job {request.match_info['job']} not found")
        return job

    async def _job_status(self, request: web.Request) -> web.Response:
        job = self._job_of(request)
        await self._advance(job)
        return web.json_response(job.status_json())

    async def _results(self, request: web.Request) -> web.StreamResponse:
        job = self._job_of(request)
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(400, "offset and limit must be integers")
        if limit > _MAX_LIMIT or limit < 0 or offset < 0:
            return _error(400, f"Invalid limit {limit}: the maximum is {_MAX_LIMIT}")
        await self._advance(job)
        if job.state != "COMPLETED" or job.ready is None:
            return _error(400, f"Job {job.id} is {job.state}: results are not available")
        cut = next((f for f in self._short_pages if f.take(request.method, request.path)), None)
        if cut is not None:  # a fault knob: rows go missing from this page
            available = max(0, min(limit, job.ready.num_rows - offset))
            limit = 0 if cut.short_by is None else max(0, available - cut.short_by)
        text = page_json(job.ready, job.schema, offset, limit, job.nested, job.reported_rows)
        return web.Response(text=text, content_type="application/json")

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self._job_of(request)
        if self._late_cancels and job.state not in ("COMPLETED", "FAILED", "CANCELED"):
            self._late_cancels -= 1
            async with self._job_locks.setdefault(job.id, anyio.Lock()):
                if job.state not in ("COMPLETED", "FAILED", "CANCELED"):
                    await self._run(job)
        if job.state in ("COMPLETED", "FAILED", "CANCELED"):
            return _error(400, f"Job {job.id} has already ended ({job.state})")
        job.finish("CANCELED", reason="Query cancelled by user")
        return web.Response(status=204)

    async def _catalog_root(self, request: web.Request) -> web.Response:
        return web.json_response({"data": self._catalog.root()})

    async def _catalog_by_path(self, request: web.Request) -> web.Response:
        raw = request.rel_url.raw_path.split("/catalog/by-path/", 1)[1]
        entity = self._catalog.by_path(raw)
        if entity is None:
            return _error(404, f"Could not find entity with path [{raw}]")
        return web.json_response(entity)

    async def _catalog_by_id(self, request: web.Request) -> web.Response:
        entity = self._catalog.by_id(request.match_info["id"])
        if entity is None:
            return _error(404, f"Could not find entity with id [{request.match_info['id']}]")
        return web.json_response(entity)

    async def _catalog_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        status, entity = self._catalog.create(body if isinstance(body, dict) else {})
        if status == 409:
            return _error(409, f"The entity at [{body.get('name') or body.get('path')}] exists")
        if entity is None:
            return _error(400, "Only spaces ({name}) and folders ({path}) can be created here")
        return web.json_response(entity)

    async def _catalog_delete(self, request: web.Request) -> web.Response:
        if not self._catalog.delete(request.match_info["id"]):
            return _error(404, f"Could not delete entity with id [{request.match_info['id']}]")
        return web.Response(status=204)

    # -- jobs ---------------------------------------------------------------------------------

    async def _advance(self, job: FakeJob) -> None:
        job.progress()
        if job.state in ("COMPLETED", "FAILED", "CANCELED") or not job.due:
            return
        lock = self._job_locks.setdefault(job.id, anyio.Lock())
        async with lock:  # concurrent polls of one job run its SQL once
            if job.state not in ("COMPLETED", "FAILED", "CANCELED"):
                await self._run(job)

    async def _run(self, job: FakeJob) -> None:
        canned = next(
            (c for c in self._canned if c.matches(job.sql) and not isinstance(c, SlowJobs)), None
        )
        if canned is not None and canned.error is not None:
            job.finish("FAILED", error=canned.error)
            return
        try:
            if canned is not None and canned.table is not None:
                table = canned.table
            else:
                table = await anyio.to_thread.run_sync(self._engine.execute, job.sql)
            ready = await anyio.to_thread.run_sync(json_ready, table)
        except Exception as exc:  # the SQL failed: Dremio reports that as a FAILED job
            job.finish("FAILED", error=_first_line(str(exc)))
            return
        if job.state == "CANCELED":  # cancelled while the SQL ran
            return
        job.result, job.ready, job.schema = table, ready, dremio_schema(table.schema)
        job.nested = any(pa.types.is_nested(f.type) for f in table.schema)
        job.finish("COMPLETED")


def _first_line(text: str) -> str:
    lines: Sequence[str] = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text
