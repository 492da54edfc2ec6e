"""The admin read API (``/v1/admin/...``, admin role): one user's totals, task history, lineage,
task detail with loss curves and preview strips; running and queued jobs of all users, workers
seen and the system's health and queue depth (docs/dashboard.md).

Reading another user's data writes an ``admin.read`` entry to the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import admin_views, contract
from api.admin_schemas import (
    ActiveJobPage,
    AdminLineage,
    PreviewStrips,
    QueueDepthOut,
    SystemOut,
    TaskDetail,
    TaskPage,
    UserSummaryOut,
    WorkerList,
)
from api.deps import AdminDep, Services, ServicesDep, SessionDep, not_found
from api.pagination import MAX_PAGE, Cursor, Limit
from api.routes.health import check_broker, check_database
from core.db import admin as queries
from core.db.models import User

router = APIRouter(prefix="/v1/admin", tags=["admin"])
NOT_FOUND = contract.NOT_FOUND
DEFAULT_PAGE = 50


def _user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise not_found()
    return user


@router.get(
    "/users/{user_id}", response_model=UserSummaryOut, responses=NOT_FOUND, summary="One user's totals"
)
def get_user(user_id: str, admin: AdminDep, session: SessionDep) -> UserSummaryOut:
    return admin_views.one_user(session, user=_user(session, user_id))


def _audited(
    services: Services, session: Session, *, admin: User, user_id: str, what: str, build: Any
) -> Any:
    """``build()`` for an existing user, then the ``admin.read`` audit entry (404 before any read)."""
    _user(session, user_id)
    out = build()
    session.commit()  # end the read transaction before the audit write
    admin_views.audit_access(services, actor_user_id=admin.id, subject_user_id=user_id, what=what)
    return out


def _per_user_list(what: str, *, model: type, summary: str, build: Callable[..., Any], page: int) -> None:
    """``GET /v1/admin/users/{user_id}/<what>``: a page of ``build(session, user_id=..., limit=...,
    cursor=...)`` (``page`` rows by default), audit-logged."""

    def endpoint(
        user_id: str,
        admin: AdminDep,
        session: SessionDep,
        services: ServicesDep,
        limit: Limit = page,
        cursor: Cursor = None,
    ) -> Any:
        def run() -> Any:
            return build(session, user_id=user_id, limit=limit, cursor=cursor)

        return _audited(services, session, admin=admin, user_id=user_id, what=what, build=run)

    endpoint.__name__ = f"user_{what}"
    responses = {**NOT_FOUND, **contract.PAGE}
    router.get(f"/users/{{user_id}}/{what}", response_model=model, responses=responses, summary=summary)(
        endpoint
    )


_per_user_list(
    "tasks",
    model=TaskPage,
    summary="One user's task history, newest first (paginated; audit-logged)",
    build=admin_views.task_page,
    page=DEFAULT_PAGE,
)
_per_user_list(
    "lineage",
    model=AdminLineage,
    summary="One user's adapter lineage, first task to head (paginated; audit-logged)",
    build=admin_views.lineage,
    page=MAX_PAGE,
)
_per_user_list(
    "previews",
    model=PreviewStrips,
    summary="Preview strips and retention score per learned concept, in task order (paginated; audit-logged)",
    build=admin_views.previews,
    page=DEFAULT_PAGE,
)


@router.get(
    "/tasks/{job_id}",
    response_model=TaskDetail,
    responses=NOT_FOUND,
    summary="One task with its loss curves and metrics (audit-logged)",
)
def get_task(job_id: str, admin: AdminDep, session: SessionDep, services: ServicesDep) -> TaskDetail:
    row = queries.task(session, job_id=job_id)
    if row is None:
        raise not_found()
    out = admin_views.task_detail(row)
    session.commit()
    admin_views.audit_access(services, actor_user_id=admin.id, subject_user_id=out.user_id, what="task")
    return out


@router.get(
    "/images/{image_id}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **NOT_FOUND},
    summary="Any user's generated or preview image (audit-logged)",
)
def get_image(image_id: str, admin: AdminDep, services: ServicesDep) -> Response:
    return admin_views.image_response(services, image_id=image_id, actor_user_id=admin.id)


def _list(path: str, *, name: str, model: type, summary: str, build: Callable[..., Any]) -> None:
    """``GET /v1/admin<path>``: a page of ``build(session, limit=..., cursor=...)`` across users."""

    def endpoint(
        admin: AdminDep, session: SessionDep, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
    ) -> Any:
        return build(session, limit=limit, cursor=cursor)

    endpoint.__name__ = name
    router.get(path, response_model=model, responses=contract.PAGE, summary=summary)(endpoint)


_list(
    "/jobs",
    name="active_jobs",
    model=ActiveJobPage,
    summary="Running and queued jobs of every user (paginated)",
    build=admin_views.active_page,
)
_list(
    "/workers",
    name="list_workers",
    model=WorkerList,
    summary="Worker processes seen, newest started first (paginated)",
    build=admin_views.workers,
)


def _queue(services: Services) -> QueueDepthOut:
    with services.session_factory() as session:
        return admin_views.queue(session)


@router.get("/system", response_model=SystemOut, summary="Database and broker health, queue depth")
async def system(admin: AdminDep, services: ServicesDep) -> SystemOut:
    """Health checks never raise (each says ``error: <type>``); the queue is counted in SQL."""
    database = await check_database(services)
    broker = await check_broker(services)
    queue = await run_in_threadpool(_queue, services) if database == "ok" else None
    return SystemOut(database=database, broker=broker, queue=queue)
