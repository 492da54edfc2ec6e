"""Repairs the job protocol needs from time to time: reconcile job state, collect orphaned files.

Run by the worker's reconciler thread (``worker.reconciler``). Lost messages and dead workers
leave jobs that nobody will run; crashes leave files that no row will ever reference
(docs/architecture.md, "Repair").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from core.db.cleanup import (
    UPLOAD_ORPHAN_GRACE_SECONDS,
    collect_orphan_uploads,
    delete_raw_uploads,
    remove_files,
)
from core.db.jobs.claim import runnable
from core.db.jobs.lifecycle import give_up
from core.db.models import (
    FINAL_JOB_STATES,
    AdapterVersion,
    GeneratedImage,
    Job,
    JobState,
    Outbox,
    Upload,
    utcnow,
)
from core.db.session import write_transaction
from core.queue.names import TASK_NAMES
from core.storage import ArtifactStore


@dataclass
class ReconcileReport:
    redispatched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)


def reconcile(
    session_factory: sessionmaker[Session],
    store: ArtifactStore,
    *,
    redispatch_after_seconds: float,
    now: datetime | None = None,
) -> ReconcileReport:
    """Repair what lost messages and dead workers leave behind.

    * a ``running`` job whose lease expired: re-sent (the claim accepts expired leases) — again
      every ``redispatch_after_seconds`` while no attempt claims it, since a re-sent message can
      be lost as well — or failed when its attempts are exhausted;
    * a ``queued`` job that could run now (no unfinished earlier train job of its user) and has
      had no message for ``redispatch_after_seconds``: re-sent;
    * a final train job whose raw uploads still exist: deleted.

    Re-sending means an ``outbox`` row; ``core.queue.outbox.flush_outbox`` sends it.
    """
    now = now or utcnow()
    report = ReconcileReport()
    cutoff = now - timedelta(seconds=redispatch_after_seconds)
    recent_message = exists().where(
        Outbox.job_id == Job.id, or_(Outbox.sent_at.is_(None), Outbox.created_at >= cutoff)
    )
    stuck_filter = (Job.state == JobState.QUEUED.value, Job.created_at < cutoff, runnable(), ~recent_message)
    expired_filter = (Job.state == JobState.RUNNING.value, Job.lease_expires_at < now)
    with session_factory() as session:  # a cheap read first: most passes find nothing to repair
        needs_repair = session.scalar(
            select(func.count()).select_from(Job).where(or_(and_(*expired_filter), and_(*stuck_filter)))
        )
    if needs_repair:
        _repair(
            session_factory,
            report=report,
            now=now,
            cutoff=cutoff,
            expired_filter=expired_filter,
            stuck_filter=stuck_filter,
        )
    with session_factory() as session:
        leftovers = session.scalars(
            select(Job.id)
            .where(Job.state.in_([state.value for state in FINAL_JOB_STATES]))
            .where(exists().where(Upload.job_id == Job.id))
        ).all()
    finished = set(report.failed) | set(leftovers)
    for job_id in sorted(finished):
        delete_raw_uploads(session_factory, store, job_id=job_id, now=now)
        report.cleaned.append(job_id)
    return report


def _repair(
    session_factory: sessionmaker[Session],
    *,
    report: ReconcileReport,
    now: datetime,
    cutoff: datetime,
    expired_filter: tuple[Any, ...],
    stuck_filter: tuple[Any, ...],
) -> None:
    with write_transaction(session_factory) as session:
        # Locked (and re-checked by PostgreSQL after a wait): a job whose attempt published
        # meanwhile is no longer expired, and is not given up over its result.
        expired = session.scalars(select(Job).where(*expired_filter).with_for_update()).all()
        for job in expired:
            if job.attempts >= job.max_attempts:
                give_up(session, job=job, now=now)
                report.failed.append(job.id)
                continue
            # A message sent since the expiry may have been lost too (a wiped broker, a killed
            # worker holding it unacknowledged): once it is older than a redispatch interval, send
            # another, as for a queued job (docs/faults.md; duplicates are fenced by the claim).
            since = max(job.lease_expires_at, cutoff)
            message_in_flight = session.scalar(
                select(func.count())
                .select_from(Outbox)
                .where(Outbox.job_id == job.id, or_(Outbox.sent_at.is_(None), Outbox.created_at >= since))
            )
            if not message_in_flight:
                session.add(Outbox(job_id=job.id, task_name=TASK_NAMES[job.kind], created_at=now))
                report.redispatched.append(job.id)
        stuck = session.scalars(select(Job).where(*stuck_filter)).all()
        for job in stuck:
            session.add(Outbox(job_id=job.id, task_name=TASK_NAMES[job.kind], created_at=now))
            report.redispatched.append(job.id)


def collect_orphans(
    session_factory: sessionmaker[Session],
    store: ArtifactStore,
    *,
    older_than_seconds: float,
    now: datetime | None = None,
) -> list[str]:
    """Delete files no row will ever reference (crash leftovers); returns their relative paths.

    * ``adapters/<user>/<version>`` without an ``adapter_versions`` row (a crash between the
      rename and the publish commit, or a publish that lost its lease);
    * ``staging/<job>`` and ``checkpoints/<job>`` of jobs that are final or gone;
    * ``images/<file>`` without an ``images`` row (a generation that did not publish), and the
      temporary files of writes killed midway in any of these folders;
    * ``uploads/<file>`` without an ``uploads`` row (an upload request killed before its commit;
      ``core.db.cleanup.collect_orphan_uploads``, after at most ``UPLOAD_ORPHAN_GRACE_SECONDS``).

    Only entries older than ``older_than_seconds`` (by mtime) are touched, so work in flight is safe.
    """
    now = now or utcnow()
    cutoff = now.timestamp() - older_than_seconds
    candidates = {  # temporary files too: a process killed inside ``write_bytes`` leaves one
        folder: store.old_entries(folder, depth=depth, older_than=cutoff, include_temp=True)
        for folder, depth in (("adapters", 2), ("staging", 1), ("checkpoints", 1), ("images", 1))
    }
    orphans: list[str] = []
    with session_factory() as session:
        versions = set(session.scalars(select(AdapterVersion.path)))
        images = set(session.scalars(select(GeneratedImage.path)))
        orphans += [p for p in candidates["adapters"] if p not in versions]
        orphans += [p for p in candidates["images"] if p not in images]
        for relative in candidates["staging"] + candidates["checkpoints"]:
            job = session.get(Job, relative.rsplit("/", 1)[-1])
            if job is None or job.is_final:
                orphans.append(relative)
    remove_files(store, orphans)
    upload_age = min(older_than_seconds, UPLOAD_ORPHAN_GRACE_SECONDS)
    return orphans + collect_orphan_uploads(session_factory, store, older_than_seconds=upload_age, now=now)
