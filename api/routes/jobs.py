"""``/v1/jobs``: the user's jobs (paginated), a job's state and progress, a server-sent event
stream of it, and cancel."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import contract, pagination
from api.deps import Services, ServicesDep, SessionDep, UserDep, not_found
from api.pagination import DEFAULT_PAGE, Cursor, Limit
from api.schemas import JobKindName, JobList, JobOut, JobStateName
from core.db import lists
from core.db.cleanup import delete_raw_uploads
from core.db.jobs import request_cancel
from core.db.models import Job, JobKind, JobState

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
KEEPALIVE_SECONDS = 15.0
EVENT_ID_CHARS = 16


def owned_job(session: Session, *, job_id: str, user_id: str) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, Job.user_id == user_id))
    if job is None:
        raise not_found()
    return job


@router.get(
    "", response_model=JobList, responses=contract.PAGE, summary="Your jobs, newest first (paginated)"
)
def list_jobs(
    user: UserDep,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
    kind: JobKindName | None = None,
    state: JobStateName | None = None,
) -> JobList:
    rows = lists.jobs(
        session,
        user_id=user.id,
        limit=limit + 1,
        before_seq=pagination.integer(cursor),
        kind=kind,
        state=state,
    )
    shown, next_cursor = pagination.page(rows, limit=limit, key=lambda job: (job.seq,))
    return JobList(jobs=[JobOut.model_validate(job) for job in shown], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut, responses=contract.NOT_FOUND)
def get_job(job_id: str, user: UserDep, session: SessionDep) -> JobOut:
    return JobOut.model_validate(owned_job(session, job_id=job_id, user_id=user.id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses=contract.NOT_FOUND,
    summary="Cancel a queued job, or ask a running one to stop at the next step",
)
def cancel(job_id: str, user: UserDep, session: SessionDep, services: ServicesDep) -> JobOut:
    owned_job(session, job_id=job_id, user_id=user.id)
    session.commit()  # end the read transaction before the write transaction below
    job = request_cancel(services.session_factory, job_id=job_id)
    if job.state == JobState.CANCELLED.value and job.kind == JobKind.TRAIN.value:
        # A queued job is final now: its raw images go at once (a running one's go when it stops).
        delete_raw_uploads(services.session_factory, services.store, job_id=job_id)
    return JobOut.model_validate(job)


def _job_snapshot(services: Services, *, job_id: str, user_id: str) -> dict[str, Any] | None:
    with services.session_factory() as session:
        job = session.scalar(select(Job).where(Job.id == job_id, Job.user_id == user_id))
        return None if job is None else JobOut.model_validate(job).model_dump(mode="json")


def event_id(snapshot: dict[str, Any]) -> str:
    """The SSE id of a job snapshot: a digest of its JSON (docs/api.md, "Job events").

    A job's state only moves forward, so a snapshot whose id differs from the last one a client
    received is newer than it; a reconnecting client's ``Last-Event-ID`` says which it has.
    """
    canonical = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:EVENT_ID_CHARS]


@router.get(
    "/{job_id}/events",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "events `job` (JobOut JSON, with an `id:`), then `end`",
        },
        **contract.NOT_FOUND,
    },
    summary="Server-sent events: the job's state and progress until it is final (resumable)",
)
async def job_events(
    job_id: str,
    request: Request,
    user: UserDep,
    services: ServicesDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=64,
            description="the id of the last event received: the stream resumes after it",
        ),
    ] = None,
) -> StreamingResponse:
    first = await run_in_threadpool(_job_snapshot, services, job_id=job_id, user_id=user.id)
    if first is None:
        raise not_found()
    poll = services.settings.events_poll_seconds

    async def stream() -> AsyncIterator[str]:
        snapshot: dict[str, Any] | None = first
        last_sent = last_event_id  # a reconnecting client has this snapshot already
        last_write = time.monotonic()
        while True:
            if snapshot is None:  # the job (or its user) was deleted
                yield "event: end\ndata: {}\n\n"
                return
            ident = event_id(snapshot)
            if ident != last_sent:
                yield f"id: {ident}\nevent: job\ndata: {json.dumps(snapshot)}\n\n"
                last_sent, last_write = ident, time.monotonic()
            if snapshot["state"] in ("succeeded", "failed", "cancelled"):
                yield f"event: end\ndata: {json.dumps({'state': snapshot['state']})}\n\n"
                return
            if time.monotonic() - last_write > KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                last_write = time.monotonic()
            await asyncio.sleep(poll)
            if await request.is_disconnected():
                return
            snapshot = await run_in_threadpool(_job_snapshot, services, job_id=job_id, user_id=user.id)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
