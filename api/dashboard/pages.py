"""The ``/admin`` pages (GET): users, one user's history, one task, live jobs and images.

Each page checks the session first (``page_admin``), then reads through ``api.admin_views``
(the same code as the JSON admin API); pages that show another user's data write the same
``admin.read`` audit entries.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api import admin_views
from api.admin_schemas import PreviewStrips, SystemOut
from api.dashboard.auth import PageAdminDep
from api.dashboard.render import render
from api.deps import Services, ServicesDep, not_found
from api.pagination import Cursor
from api.routes.health import check_broker, check_database
from core.db import admin as queries
from core.db.models import User, utcnow

router = APIRouter(prefix="/admin", include_in_schema=False)
USERS_PER_PAGE = 50
TASKS_PER_PAGE = 100
# The lineage graph shows the last LINEAGE_VERSIONS versions, the preview grid the last
# PREVIEW_TASKS tasks and at most PREVIEW_STRIPS concepts (the JSON API has them all).
LINEAGE_VERSIONS = 30
PREVIEW_TASKS = 24
PREVIEW_STRIPS = 48
LIVE_JOBS = 200
LIVE_WORKERS = 200
KEEPALIVE_SECONDS = 15.0
RECENT_WORKER = timedelta(minutes=5)


def users_context(services: Services, *, cursor: str | None, system: SystemOut) -> dict[str, Any]:
    """What the users page shows (also rendered after a create or rotate, with the new key)."""
    with services.session_factory() as session:
        page = admin_views.users_page(session, limit=USERS_PER_PAGE, cursor=cursor)
        workers_recent = queries.workers_seen_since(session, since=utcnow() - RECENT_WORKER)
    return {"nav": "users", "page": page, "system": system, "workers_recent": workers_recent}


async def system_status(services: Services) -> SystemOut:
    database = await check_database(services)
    broker = await check_broker(services)
    queue = None
    if database == "ok":

        def count() -> Any:
            with services.session_factory() as session:
                return admin_views.queue(session)

        queue = await run_in_threadpool(count)
    return SystemOut(database=database, broker=broker, queue=queue)


@router.get("", response_class=HTMLResponse)
async def users_page(
    request: Request, admin: PageAdminDep, services: ServicesDep, cursor: Cursor = None
) -> Response:
    system = await system_status(services)
    context = await run_in_threadpool(users_context, services, cursor=cursor, system=system)
    return render(request, "admin/users.html", admin=admin, **context)


def _user_context(services: Services, *, user_id: str, cursor: str | None) -> dict[str, Any] | None:
    with services.session_factory() as session:
        user = session.get(User, user_id)
        if user is None:
            return None
        summary = admin_views.one_user(session, user=user)
        tasks = admin_views.task_page(session, user_id=user_id, limit=TASKS_PER_PAGE, cursor=cursor)
        lineage = admin_views.recent_lineage(session, user_id=user_id, limit=LINEAGE_VERSIONS)
        window = queries.preview_window(
            session, user_id=user_id, tasks=PREVIEW_TASKS, concepts=PREVIEW_STRIPS
        )
        previews = PreviewStrips(user_id=user_id, strips=[admin_views.strip_out(s) for s in window.strips])
    columns = range(window.first_task, window.last_task + 1) if window.last_task else range(0)
    grid = []
    for strip in previews.strips:
        by_task = {p.after_task_index: p for p in strip.previews}
        grid.append((strip, [by_task.get(n) for n in columns]))
    return {
        "user": summary,
        "tasks": tasks,
        "lineage": lineage,
        "positions": {v.id: i for i, v in enumerate(lineage.versions)},
        "previews": previews,
        "grid": grid,
        "columns": columns,
        "earlier_tasks": max(0, window.first_task - 1),
    }


@router.get("/users/{user_id}", response_class=HTMLResponse)
def user_page(
    user_id: str, request: Request, admin: PageAdminDep, services: ServicesDep, cursor: Cursor = None
) -> Response:
    context = _user_context(services, user_id=user_id, cursor=cursor)
    if context is None:
        raise not_found()
    admin_views.audit_access(
        services, actor_user_id=admin.user_id, subject_user_id=user_id, what=("tasks", "lineage", "previews")
    )
    return render(request, "admin/user.html", admin=admin, nav="users", **context)


@router.get("/tasks/{job_id}", response_class=HTMLResponse)
def task_page(job_id: str, request: Request, admin: PageAdminDep, services: ServicesDep) -> Response:
    with services.session_factory() as session:
        row = queries.task(session, job_id=job_id)
        if row is None:
            raise not_found()
        task = admin_views.task_detail(row)
        owner = session.get(User, task.user_id)
        owner_name = owner.name if owner else ""
    admin_views.audit_access(services, actor_user_id=admin.user_id, subject_user_id=task.user_id, what="task")
    return render(request, "admin/task.html", admin=admin, nav="users", task=task, owner_name=owner_name)


@router.get("/images/{image_id}")
def image(image_id: str, admin: PageAdminDep, services: ServicesDep) -> Response:
    return admin_views.image_response(services, image_id=image_id, actor_user_id=admin.user_id)


def _live(services: Services) -> dict[str, Any]:
    with services.session_factory() as session:
        return admin_views.active_page(session, limit=LIVE_JOBS, cursor=None).model_dump(mode="json")


@router.get("/live", response_class=HTMLResponse)
def live_page(request: Request, admin: PageAdminDep, services: ServicesDep) -> Response:
    with services.session_factory() as session:
        page = admin_views.active_page(session, limit=LIVE_JOBS, cursor=None)
        workers = admin_views.workers(session, limit=LIVE_WORKERS, cursor=None)
    return render(request, "admin/live.html", admin=admin, nav="live", page=page, workers=workers)


@router.get("/live/events")
async def live_events(request: Request, admin: PageAdminDep, services: ServicesDep) -> StreamingResponse:
    """Server-sent events: ``jobs`` (the ActiveJobPage JSON) whenever a running or queued job changes."""
    poll = services.settings.events_poll_seconds

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        last_write = time.monotonic()
        while not await request.is_disconnected():
            snapshot = await run_in_threadpool(_live, services)
            if snapshot != last:
                yield f"event: jobs\ndata: {json.dumps(snapshot)}\n\n"
                last, last_write = snapshot, time.monotonic()
            elif time.monotonic() - last_write > KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                last_write = time.monotonic()
            await asyncio.sleep(poll)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
