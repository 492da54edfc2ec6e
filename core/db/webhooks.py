"""A user's webhook, and the outbox write of its events (docs/webhooks.md).

``emit`` adds a ``webhook_deliveries`` row **in the caller's transaction** — the one that makes
the state change it reports (a job queued, claimed, final; raw images deleted) — so an event is
sent if and only if its change committed; the relay (``core.webhooks.relay``) sends it later,
the way ``core.queue.outbox`` sends job messages (docs/architecture.md, "The job protocol").
Nothing is written for a user without a webhook, or for an event the webhook does not subscribe to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db.models import Job, Webhook, WebhookDelivery, new_id, utcnow
from core.webhooks import events as ev
from core.webhooks.signing import new_salt, secret_check, secret_for


@dataclass(frozen=True)
class Configured:
    webhook: Webhook
    created: bool
    secret: str | None  # shown once: when the webhook was created


def get_webhook(session: Session, *, user_id: str) -> Webhook | None:
    return session.scalar(select(Webhook).where(Webhook.user_id == user_id))


def _new_secret(webhook: Webhook, *, pepper: bytes) -> str:
    webhook.secret_salt = new_salt()
    secret = secret_for(pepper=pepper, salt=webhook.secret_salt)
    webhook.secret_check = secret_check(secret)
    return secret


def configure(session: Session, *, user_id: str, url: str, events: list[str], pepper: bytes) -> Configured:
    """Create the user's webhook (with a new secret) or change its URL and events (same secret)."""
    webhook = get_webhook(session, user_id=user_id)
    created = webhook is None
    secret = None
    if webhook is None:
        webhook = Webhook(user_id=user_id)
        secret = _new_secret(webhook, pepper=pepper)
        session.add(webhook)
    webhook.url = url
    webhook.events = sorted(set(events), key=ev.EVENTS.index)
    webhook.updated_at = utcnow()
    session.flush()
    return Configured(webhook=webhook, created=created, secret=secret)


def rotate_secret(session: Session, *, user_id: str, pepper: bytes) -> tuple[Webhook, str] | None:
    """A new secret for the user's webhook (the old one stops signing at once); None without one."""
    webhook = get_webhook(session, user_id=user_id)
    if webhook is None:
        return None
    secret = _new_secret(webhook, pepper=pepper)
    webhook.updated_at = utcnow()
    session.flush()
    return webhook, secret


def remove(session: Session, *, user_id: str) -> bool:
    """Delete the user's webhook and (by cascade) its deliveries; False when there was none."""
    return bool(session.execute(delete(Webhook).where(Webhook.user_id == user_id)).rowcount)


def emit(
    session: Session,
    *,
    user_id: str,
    event: str,
    data: dict[str, Any],
    job_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Queue ``event`` for the user's webhook in the caller's transaction (see the module docstring)."""
    hook = session.execute(select(Webhook.id, Webhook.events).where(Webhook.user_id == user_id)).first()
    if hook is None or event not in hook.events:
        return
    now = now or utcnow()
    delivery_id = new_id()
    session.add(
        WebhookDelivery(
            id=delivery_id,
            webhook_id=hook.id,
            user_id=user_id,
            job_id=job_id,
            event=event,
            body=ev.body(delivery_id=delivery_id, event=event, created_at=now, data=data),
            next_attempt_at=now,
            created_at=now,
        )
    )


def emit_job(session: Session, *, job: Job, event: str, now: datetime | None = None) -> None:
    """Queue a ``job.*`` event about ``job`` as it is now (its state, attempt, progress, result)."""
    data = ev.job_data(
        job_id=job.id,
        kind=job.kind,
        state=job.state,
        attempt=job.attempts,
        concept_id=job.concept_id,
        progress=job.progress if event == ev.JOB_PROGRESS else None,
        result=job.result if event == ev.JOB_SUCCEEDED else None,
    )
    emit(session, user_id=job.user_id, event=event, data=data, job_id=job.id, now=now)


def emit_progress(session: Session, *, job_id: str, progress: dict[str, Any], now: datetime) -> None:
    """A ``job.progress`` event when the heartbeat's ``progress`` starts a new phase of the attempt.

    Only for a webhook that subscribes to it: the phase is compared with the last progress event
    of the job, so a job sends one per phase (and attempt), not one per heartbeat.
    """
    row = session.execute(
        select(Job.attempts, Webhook.events)
        .join(Webhook, Webhook.user_id == Job.user_id)
        .where(Job.id == job_id)
    ).first()
    if row is None or ev.JOB_PROGRESS not in row.events:
        return
    last = session.scalar(
        select(WebhookDelivery.body)
        .where(WebhookDelivery.job_id == job_id, WebhookDelivery.event == ev.JOB_PROGRESS)
        .order_by(WebhookDelivery.created_at.desc())
        .limit(1)
    )
    if last is not None:
        told = json.loads(last)["data"]["job"]
        if (told["attempt"], told["progress"]["phase"]) == (row.attempts, progress.get("phase")):
            return
    job = session.get(Job, job_id, populate_existing=True)
    if job is not None:
        emit_job(session, job=job, event=ev.JOB_PROGRESS, now=now)


def emit_images_deleted(
    session: Session, *, job_id: str, concept_id: str | None, files: int, now: datetime
) -> None:
    """The ``images.deleted`` event, in the transaction that forgets a job's raw uploads."""
    user_id = session.scalar(select(Job.user_id).where(Job.id == job_id))
    if user_id is not None:
        data = {"job_id": job_id, "concept_id": concept_id, "files": files}
        emit(session, user_id=user_id, event=ev.IMAGES_DELETED, data=data, job_id=job_id, now=now)
