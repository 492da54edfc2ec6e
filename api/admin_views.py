"""What the admin read API returns, built once for the JSON routes and the /admin pages alike.

Every function takes a read session and returns typed models (``api.admin_schemas``); the
callers decide the transport. ``audit_access`` writes the audit entry for an admin looking at
another user's data (docs/dashboard.md).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import pagination
from api.admin_schemas import (
    ActiveJobOut,
    ActiveJobPage,
    AdminLineage,
    PreviewOut,
    PreviewStripOut,
    PreviewStrips,
    QueueDepthOut,
    TaskDetail,
    TaskOut,
    TaskPage,
    UserPage,
    UserSummaryOut,
    UserTotalsOut,
    WorkerList,
    WorkerOut,
)
from api.deps import Services, not_found
from api.routes.adapters import lineage_page
from api.routes.images import png_response
from api.schemas import AdapterVersionOut
from core.db import admin as queries
from core.db.audit import record
from core.db.models import GeneratedImage, User, utcnow
from core.db.previews import Strip, preview_strips
from core.db.session import write_transaction


def audit_access(
    services: Services, *, actor_user_id: str, subject_user_id: str, what: str | tuple[str, ...]
) -> None:
    """Record that an admin read ``what`` of another user (``admin.read``; no payloads): one entry
    per item, all in one transaction (one commit for a page that shows several)."""
    with write_transaction(services.session_factory) as session:
        for item in (what,) if isinstance(what, str) else what:
            record(
                session,
                action="admin.read",
                actor_user_id=actor_user_id,
                subject=subject_user_id,
                details={"what": item},
            )


def user_summary(row: queries.UserRow) -> UserSummaryOut:
    fields = dict(row.totals.__dict__)
    active_keys = fields.pop("active_keys")
    out = UserSummaryOut.model_validate(row.user)
    return out.model_copy(update={"totals": UserTotalsOut(**fields), "active_keys": active_keys})


def users_page(session: Session, *, limit: int, cursor: str | None) -> UserPage:
    found = queries.list_users_page(session, limit=limit + 1, after=pagination.time_and_id(cursor))
    rows, next_cursor = pagination.page(
        found, limit=limit, key=lambda row: (row.user.created_at, row.user.id)
    )
    return UserPage(users=[user_summary(row) for row in rows], next_cursor=next_cursor)


def one_user(session: Session, *, user: User) -> UserSummaryOut:
    totals = queries.user_totals(session, user_ids=[user.id])[user.id]
    return user_summary(queries.UserRow(user=user, totals=totals))


def _task_fields(row: queries.TaskRow) -> dict[str, Any]:
    job, concept, version = row.job, row.concept, row.version
    metrics = (concept.metrics if concept is not None else None) or (job.result or {}).get("metrics") or {}
    return {
        "job_id": job.id,
        "seq": job.seq,
        "task_index": concept.task_index if concept is not None else None,
        "concept_id": job.concept_id,
        "concept_name": concept.name if concept is not None else None,
        "token": concept.token if concept is not None else None,
        "method": concept.method if concept is not None else (job.payload or {}).get("method"),
        "state": job.state,
        "progress": job.progress or {},
        "queued_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "seconds": {k: float(v) for k, v in (metrics.get("seconds") or {}).items()},
        "final_loss": metrics.get("final_loss"),
        "attempts": job.attempts,
        "error": job.error,
        "images_deleted_at": concept.images_deleted_at if concept is not None else None,
        "adapter_version_id": version.id if version is not None else None,
    }


def task_page(session: Session, *, user_id: str, limit: int, cursor: str | None) -> TaskPage:
    before = pagination.integer(cursor)
    found = queries.task_history(session, user_id=user_id, limit=limit + 1, before_seq=before)
    rows, next_cursor = pagination.page(found, limit=limit, key=lambda row: (row.job.seq,))
    return TaskPage(
        user_id=user_id, tasks=[TaskOut(**_task_fields(row)) for row in rows], next_cursor=next_cursor
    )


def task_detail(row: queries.TaskRow) -> TaskDetail:
    concept = row.concept
    metrics = (concept.metrics if concept is not None else None) or {}
    curves = {
        phase: [(int(step), float(loss)) for step, loss in points]
        for phase, points in (row.job.loss_curves or {}).items()
    }
    return TaskDetail(**_task_fields(row), user_id=row.job.user_id, loss_curves=curves, metrics=metrics)


def lineage(session: Session, *, user_id: str, limit: int, cursor: str | None) -> AdminLineage:
    """A page of the user's lineage, first task to head (as ``GET /v1/adapters`` pages it)."""
    # Every version in one query: the chain walk's ``session.get`` calls then find them in the
    # identity map (which holds only referenced objects: ``loaded`` keeps them until the walk ends).
    loaded = queries.user_versions(session, user_id=user_id)
    chain = lineage_page(session, user_id=user_id, limit=limit, cursor=cursor)
    del loaded
    return AdminLineage(user_id=user_id, **dict(chain))


# The fields of AdapterVersionOut read straight off the version row.
VERSION_FIELDS = [f for f in AdapterVersionOut.model_fields if f not in ("version", "concept_name", "token")]


def recent_lineage(session: Session, *, user_id: str, limit: int) -> AdminLineage:
    """The last ``limit`` versions of the lineage, numbered by their position in the whole chain."""
    tail = queries.lineage_tail(session, user_id=user_id, limit=limit)
    versions = [
        AdapterVersionOut(
            **{name: getattr(version, name) for name in VERSION_FIELDS},
            version=tail.first_position + offset,
            concept_name=concept.name if concept is not None else None,
            token=concept.token if concept is not None else None,
        )
        for offset, (version, concept) in enumerate(tail.versions)
    ]
    return AdminLineage(user_id=user_id, head=tail.head, versions=versions)


def active_page(session: Session, *, limit: int, cursor: str | None) -> ActiveJobPage:
    found = queries.active_jobs(session, limit=limit + 1, after=pagination.time_and_id(cursor))
    rows, next_cursor = pagination.page(found, limit=limit, key=lambda row: (row.job.created_at, row.job.id))
    jobs = [
        ActiveJobOut(
            id=r.job.id,
            kind=r.job.kind,
            state=r.job.state,
            user_id=r.job.user_id,
            user_name=r.user_name,
            concept_name=r.concept_name,
            progress=r.job.progress or {},
            attempts=r.job.attempts,
            created_at=r.job.created_at,
            started_at=r.job.started_at,
            heartbeat_at=r.job.heartbeat_at,
            worker_id=r.job.lease_owner,
        )
        for r in rows
    ]
    return ActiveJobPage(jobs=jobs, next_cursor=next_cursor)


def workers(session: Session, *, limit: int, cursor: str | None) -> WorkerList:
    """A page of the worker processes seen, newest started first, with how long ago each was seen."""
    found = queries.workers_seen(session, limit=limit + 1, after=pagination.time_and_id(cursor))
    rows, next_cursor = pagination.page(found, limit=limit, key=lambda w: (w.started_at, w.id))
    now = utcnow()
    shown = [
        WorkerOut.model_validate(w).model_copy(
            update={"seconds_since_seen": round((now - w.last_seen_at).total_seconds(), 1)}
        )
        for w in rows
    ]
    return WorkerList(workers=shown, next_cursor=next_cursor)


def queue(session: Session) -> QueueDepthOut:
    return QueueDepthOut(**queries.queue_depth(session).__dict__)


def image_url(image_id: str) -> str:
    return f"/v1/admin/images/{image_id}"


def strip_out(strip: Strip) -> PreviewStripOut:
    """One concept's previews as the API and the pages show them."""
    concept = strip.concept
    return PreviewStripOut(
        concept_id=concept.id,
        concept_name=concept.name,
        token=concept.token,
        task_index=concept.task_index,
        retention=strip.latest_retention,
        previews=[
            PreviewOut(
                after_task_index=p.after_task_index,
                image_ids=list(p.image_ids),
                image_urls=[image_url(i) for i in p.image_ids],
                retention=p.retention,
                features=p.features,
                created_at=p.created_at,
            )
            for p in strip.previews
        ],
    )


def previews(session: Session, *, user_id: str, limit: int, cursor: str | None) -> PreviewStrips:
    """A page of the user's preview strips, one per learned concept in task order."""
    after = pagination.integer_and_id(cursor)
    found = preview_strips(session, user_id=user_id, limit=limit + 1, after=after)
    rows, next_cursor = pagination.page(
        found, limit=limit, key=lambda s: (s.concept.task_index, s.concept.id)
    )
    strips = [strip_out(strip) for strip in rows]
    return PreviewStrips(user_id=user_id, strips=strips, next_cursor=next_cursor)


def image_response(services: Services, *, image_id: str, actor_user_id: str) -> Response:
    """Any user's stored image (PNG) for an admin, audit-logged; 404 when missing."""
    with services.session_factory() as session:
        row = session.scalar(select(GeneratedImage).where(GeneratedImage.id == image_id))
        if row is None:
            raise not_found()
        owner, path, digest = row.user_id, row.path, row.sha256
    try:
        data = services.store.read_bytes(path)
    except (OSError, ValueError):
        raise not_found() from None
    audit_access(services, actor_user_id=actor_user_id, subject_user_id=owner, what="image")
    return png_response(data, sha256=digest, cache_control="private, max-age=3600")
