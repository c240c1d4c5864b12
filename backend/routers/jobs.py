"""Fine-tune jobs: create (201 + id), list, get with progress, cancel, an SSE progress stream, the log.

Execution is the worker's (see ``backend.services.jobs`` and ``worker/``); without a worker a job
stays queued. Reads also recover a job whose worker died (re-queued or failed, never "running" forever).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from core.errors import ErrorCode, ServiceError

from ..deps import CtxDep, PrincipalDep, SessionDep, project_or_404
from ..schemas.common import ERROR_RESPONSES, IdPath, Offset, Page
from ..schemas.jobs import JobCreate, JobPublic, JobState

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)
log = logging.getLogger("sasformer.api")
SSE_POLL_S = 0.5  # how often the event stream reads the job row
SSE_KEEP_ALIVE_S = 15  # a ": keep-alive" comment this often, so proxies keep an idle stream open
SSE_SHUTDOWN_GRACE_S = 2.0  # on shutdown, time for a stream to send its last event and end
SSE_SEP = "\n"  # line ending of the stream (sse-starlette's default is CRLF; clients written for LF keep working)



def _json_data(ref: str) -> dict[str, Any]:
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": {"$ref": ref}}


# One event of the stream (OpenAPI 3.1: the schema of a text/event-stream response describes each event)
SSE_EVENT_SCHEMA: dict[str, Any] = {"oneOf": [
    {"type": "object", "required": ["event", "data"], "properties": {
        "event": {"const": "progress"}, "id": {"type": "string"},
        "data": _json_data("#/components/schemas/JobPublic")}},
    {"type": "object", "required": ["event", "data"], "properties": {
        "event": {"const": "timeout"}, "data": {"const": "{}"}}},
    {"type": "object", "required": ["event", "data"], "properties": {
        "event": {"const": "error"}, "data": _json_data("#/components/schemas/ErrorBody")}},
]}


@router.post("/projects/{project_id}/jobs", status_code=201, response_model=JobPublic)
def create_job(project_id: IdPath, body: JobCreate, session: SessionDep, ctx: CtxDep, who: PrincipalDep,
               response: Response) -> JobPublic:
    """Queue a fine-tune of the project's model on its labels; 409 if nothing is labelled yet."""
    job = ctx.jobs.start(session, project_or_404(session, project_id), body, who.name)
    response.headers["Location"] = f"/jobs/{job.id}"
    return ctx.jobs.public(session, job)


@router.get("/projects/{project_id}/jobs", response_model=Page[JobPublic])
def list_jobs(project_id: IdPath, session: SessionDep, ctx: CtxDep, state: JobState | None = None,
              offset: Offset = 0, limit: int = Query(50, ge=1, le=500)) -> Page[JobPublic]:
    project_or_404(session, project_id)
    rows, total = ctx.jobs.page(session, project_id, state, offset, limit)
    return Page(items=[ctx.jobs.public(session, j) for j in rows], total=total, offset=offset, limit=limit)


@router.get("/jobs/{job_id}", response_model=JobPublic)
def get_job(job_id: IdPath, session: SessionDep, ctx: CtxDep) -> JobPublic:
    return ctx.jobs.public(session, ctx.jobs.read(session, job_id))


@router.delete("/jobs/{job_id}", response_model=JobPublic, responses={202: {"model": JobPublic}})
def cancel_job(job_id: IdPath, session: SessionDep, ctx: CtxDep, response: Response) -> JobPublic:
    """A queued job is cancelled at once (200); a running one is asked to stop (202) and ends 'cancelled'."""
    job = ctx.jobs.get(session, job_id)
    done = ctx.jobs.cancel(session, job)
    response.status_code = 200 if done else 202
    session.flush()
    return ctx.jobs.public(session, job)


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse, responses={200: {
    "description": "`event: progress` (data: the job as JobPublic JSON, id: its `updated_at`) on every change, "
                   "then the stream ends after a terminal state; `event: timeout` (data `{}`) when `timeout` "
                   "passes first; `event: error` (data `{detail, code}`) if the job is deleted meanwhile or the "
                   "server shuts down; `: keep-alive` comments every 15 s",
    "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}}})
def job_events(job_id: IdPath, session: SessionDep, ctx: CtxDep,
               timeout: float = Query(600, gt=0, le=3600, description="close the stream after this many seconds"),
               ) -> EventSourceResponse:
    """Server-sent events: ``event: progress`` with the job (JobPublic JSON) on every change; the stream
    ends after the event of a terminal state (or ``timeout``); ``: keep-alive`` comments in between."""
    ctx.jobs.get(session, job_id)  # 404 before the stream starts

    def snapshot() -> tuple[str, bool]:
        return ctx.jobs.snapshot(ctx.sessions, job_id)

    shutdown = anyio.Event()  # set by sse-starlette when the server begins to shut down

    async def events() -> AsyncIterator[ServerSentEvent]:
        # every path ends by returning, so the response always ends with a complete chunked body
        last = None
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, terminal = await anyio.to_thread.run_sync(snapshot)
            except ServiceError as e:  # the job (or its project) was deleted while the stream was open
                yield _event("error", json.dumps({"detail": e.detail, "code": e.code.value}))
                return
            except Exception:
                log.exception("event stream of job %s failed", job_id)
                yield _event("error", json.dumps({"detail": "internal server error; see the server log"}))
                return
            if data != last:
                yield _event("progress", data, id=json.loads(data)["updated_at"])
                last = data
            if terminal:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with anyio.move_on_after(min(SSE_POLL_S, left)):
                await shutdown.wait()
            if shutdown.is_set():
                yield _event("error", json.dumps({"detail": "the server is shutting down; reconnect to follow the job",
                                                  "code": ErrorCode.UNAVAILABLE.value}))
                return
        yield _event("timeout", "{}")

    return EventSourceResponse(events(), headers={"Cache-Control": "no-cache"}, sep=SSE_SEP, ping=SSE_KEEP_ALIVE_S,
                               ping_message_factory=lambda: ServerSentEvent(comment="keep-alive", sep=SSE_SEP),
                               shutdown_event=shutdown, shutdown_grace_period=SSE_SHUTDOWN_GRACE_S)


def _event(name: str, data: str, id: str | None = None) -> ServerSentEvent:
    return ServerSentEvent(data, event=name, id=id, sep=SSE_SEP)


@router.get("/jobs/{job_id}/log", response_class=FileResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
def job_log(job_id: IdPath, session: SessionDep, ctx: CtxDep) -> FileResponse:
    """The job's JSONL log: one JSON object per line (claim, data, train/val progress, end, result)."""
    return FileResponse(ctx.jobs.log_path(session, job_id), media_type="application/x-ndjson")
