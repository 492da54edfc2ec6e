"""The SQL job protocol: claim, heartbeat, publish, fail, cancel, reconcile (DESIGN.md §6).

Celery delivers a job id *at least once*; this module makes the effects happen *once*
(research/reliability.md §1.4):

* **claim** is one conditional ``UPDATE``: the job is ``queued`` (or ``running`` with an
  expired lease), not cancelled, below its attempt cap, and — for training — every earlier
  train job of the same user (lower ``seq``) is final. It sets the lease, bumps the fencing
  token and the attempt count. Zero rows updated means a duplicate, a late delivery or a
  job that must wait for its predecessor; the caller learns which from ``Claim.outcome``.
* **heartbeat** extends the lease and stores progress, only while the fencing token is
  still the caller's, and reports ``cancel_requested``.
* **publish** is one transaction guarded by the fencing token: adapter + Fisher rows
  (unique per job), compare-and-swap of the user's head pointer from the parent to the
  new version, concept ``ready``, job ``succeeded``.
* **reconcile** finds jobs whose message was lost (expired lease, claimable but not
  dispatched recently) and adds outbox rows for them; it fails jobs past their attempt cap.

Every function takes a ``session_factory`` and runs its own short transaction, so the
worker never holds a database transaction open while it trains. No torch here.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from core.db.audit import record
from core.db.models import (
    FINAL_JOB_STATES,
    TASK_NAMES,
    AdapterVersion,
    Concept,
    ConceptStatus,
    FisherState,
    GeneratedImage,
    Generation,
    Job,
    JobKind,
    JobState,
    Outbox,
    Upload,
    User,
    utcnow,
)
from core.db.session import write_transaction
from core.storage import ArtifactStore, StorageError, manifest_sha256

ACTIVE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)
# What a claimed job reads until the engine reports its first phase (loading images and state).
STARTING_PROGRESS = {"phase": "starting", "step": 0, "total": 0, "loss": None}


class LeaseLostError(RuntimeError):
    """The caller's fencing token is no longer the job's: another attempt owns it, or it ended."""


class LineageConflictError(RuntimeError):
    """The user's head adapter is not the parent this task trained from (never expected)."""


class ClaimOutcome(enum.StrEnum):
    CLAIMED = "claimed"  # run it
    WAIT = "wait"  # an earlier train job of the user is not final yet: try again later
    SKIP = "skip"  # duplicate, late, final, cancelled or leased by a live attempt: do nothing


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    reason: str
    job_id: str
    fencing_token: int = 0
    attempt: int = 0
    user_id: str | None = None
    kind: str | None = None
    concept_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    # Set when the claim itself finished the job (cancelled while queued, attempts exhausted):
    # the caller must delete the job's raw uploads.
    finalized: bool = False


def _earlier_unfinished_train_job() -> Any:
    earlier = aliased(Job)
    return exists().where(
        earlier.user_id == Job.user_id,
        earlier.kind == JobKind.TRAIN.value,
        earlier.seq < Job.seq,
        earlier.state.in_(ACTIVE_STATES),
    )


def claim_job(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    worker_id: str,
    lease_seconds: float,
    now: datetime | None = None,
) -> Claim:
    """Try to take the job for one attempt; see ``ClaimOutcome`` for what the caller does next."""
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        claimable = and_(
            Job.id == job_id,
            Job.cancel_requested.is_(False),
            Job.attempts < Job.max_attempts,
            or_(
                Job.state == JobState.QUEUED.value,
                and_(Job.state == JobState.RUNNING.value, Job.lease_expires_at < now),
            ),
            or_(Job.kind != JobKind.TRAIN.value, ~_earlier_unfinished_train_job()),
        )
        result = session.execute(
            update(Job)
            .where(claimable)
            .values(
                state=JobState.RUNNING.value,
                lease_owner=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                heartbeat_at=now,
                fencing_token=Job.fencing_token + 1,
                attempts=Job.attempts + 1,
                started_at=func.coalesce(Job.started_at, now),
                error=None,
                progress=STARTING_PROGRESS,
            )
            .execution_options(synchronize_session=False)
        )
        job = session.get(Job, job_id, populate_existing=True)
        if job is None:
            return Claim(ClaimOutcome.SKIP, "no such job", job_id)
        if result.rowcount == 1:
            if job.concept_id and job.kind == JobKind.TRAIN.value:
                session.execute(
                    update(Concept)
                    .where(Concept.id == job.concept_id)
                    .values(status=ConceptStatus.TRAINING.value)
                )
            return Claim(
                ClaimOutcome.CLAIMED,
                "claimed",
                job_id,
                fencing_token=job.fencing_token,
                attempt=job.attempts,
                user_id=job.user_id,
                kind=job.kind,
                concept_id=job.concept_id,
                payload=dict(job.payload or {}),
            )
        return _refusal(session, job=job, now=now)


def finished_progress(progress: dict[str, Any] | None) -> dict[str, Any]:
    """Phase "done" with the last phase's counter at its total (a finished job never reads 19/24:
    the worker writes progress at most once per interval, so the last write may lag the last step)."""
    last = dict(progress or {})
    total = int(last.get("total") or 0)
    return {**last, "phase": "done", "step": total, "total": total}


def _refusal(session: Session, *, job: Job, now: datetime) -> Claim:
    """Why a claim did not take the job; finishes jobs that can never run again."""
    base = {"job_id": job.id, "user_id": job.user_id, "kind": job.kind, "concept_id": job.concept_id}
    if job.is_final:
        return Claim(ClaimOutcome.SKIP, f"job is already {job.state}", **base)
    lease_live = job.state == JobState.RUNNING.value and (
        job.lease_expires_at is not None and job.lease_expires_at >= now
    )
    if lease_live:
        return Claim(ClaimOutcome.SKIP, "another attempt holds a live lease", **base)
    if job.cancel_requested:
        _finish(session, job=job, state=JobState.CANCELLED, error="cancelled", now=now)
        return Claim(ClaimOutcome.SKIP, "cancelled", finalized=True, **base)
    if job.attempts >= job.max_attempts:
        _finish(
            session,
            job=job,
            state=JobState.FAILED,
            error=f"gave up after {job.attempts} attempts (the worker stopped each time)",
            now=now,
        )
        return Claim(ClaimOutcome.SKIP, "attempts exhausted", finalized=True, **base)
    return Claim(ClaimOutcome.WAIT, "an earlier task of this user is not finished", **base)


def _finish(session: Session, *, job: Job, state: JobState, error: str | None, now: datetime) -> None:
    job.state = state.value
    job.error = error
    job.finished_at = now
    job.lease_owner = None
    job.lease_expires_at = None
    if job.concept_id and job.kind == JobKind.TRAIN.value:
        concept_status = ConceptStatus.CANCELLED if state is JobState.CANCELLED else ConceptStatus.FAILED
        session.execute(
            update(Concept).where(Concept.id == job.concept_id).values(status=concept_status.value)
        )
    record(session, action=f"job.{state.value}", subject=job.id, details={"kind": job.kind})
    _dispatch_next_train_job(session, user_id=job.user_id, after_seq=job.seq, kind=job.kind)
    session.flush()


def _dispatch_next_train_job(session: Session, *, user_id: str, after_seq: int, kind: str) -> None:
    """Queue a message for the user's next train job, now that this one is final."""
    if kind != JobKind.TRAIN.value:
        return
    next_id = session.scalar(
        select(Job.id)
        .where(
            Job.user_id == user_id,
            Job.kind == JobKind.TRAIN.value,
            Job.seq > after_seq,
            Job.state == JobState.QUEUED.value,
        )
        .order_by(Job.seq)
        .limit(1)
    )
    if next_id is not None:
        session.add(Outbox(job_id=next_id, task_name=TASK_NAMES[JobKind.TRAIN.value]))


# ---- while running --------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    alive: bool  # False: the lease is lost (another attempt owns the job, or it ended)
    cancel_requested: bool


def heartbeat(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    fencing_token: int,
    lease_seconds: float,
    progress: dict[str, Any] | None = None,
    loss_curves: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Heartbeat:
    """Extend the lease (and store ``progress``, ``loss_curves``) while ``fencing_token`` is the job's."""
    now = now or utcnow()
    values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_seconds), "heartbeat_at": now}
    if progress is not None:
        values["progress"] = progress
    if loss_curves is not None:
        values["loss_curves"] = loss_curves
    with session_factory.begin() as session:
        updated = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.fencing_token == fencing_token,
                Job.state == JobState.RUNNING.value,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        cancel = bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
    return Heartbeat(alive=updated == 1, cancel_requested=cancel)


def lineage(session: Session, *, head_id: str | None) -> list[AdapterVersion]:
    """The adapter versions from the first task to ``head_id`` (oldest first)."""
    chain: list[AdapterVersion] = []
    seen: set[str] = set()
    current = head_id
    while current is not None:
        if current in seen:
            raise LineageConflictError("the adapter lineage has a cycle")
        seen.add(current)
        version = session.get(AdapterVersion, current)
        if version is None:
            raise LineageConflictError("the adapter lineage references a missing version")
        chain.append(version)
        current = version.parent_id
    chain.reverse()
    return chain


def user_lineage(session: Session, *, user_id: str) -> list[AdapterVersion]:
    """The lineage of the user's current head adapter (empty before the first task)."""
    head = session.scalar(select(User.current_adapter_version_id).where(User.id == user_id))
    return lineage(session, head_id=head)


# ---- finishing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publication:
    version_id: str
    parent_id: str | None
    task_index: int
    path: str
    files: dict[str, dict[str, Any]]
    method: str
    metrics: dict[str, Any]
    fisher_file: str | None = "fisher.safetensors"
    # The task's final downsampled loss curves (``worker.curves``); None keeps what heartbeats wrote.
    loss_curves: dict[str, Any] | None = None


def publish_training(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    fencing_token: int,
    publication: Publication,
    now: datetime | None = None,
) -> AdapterVersion:
    """Make a trained task visible, in one transaction (the version directory already exists).

    Raises ``LeaseLostError`` if the fencing token is stale (nothing is written) and
    ``LineageConflictError`` if the user's head moved (nothing is written).
    """
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        job = session.scalar(
            select(Job).where(Job.id == job_id).with_for_update().execution_options(populate_existing=True)
        )
        if job is None or job.fencing_token != fencing_token or job.state != JobState.RUNNING.value:
            raise LeaseLostError("the job is no longer owned by this attempt")
        user = session.scalar(select(User).where(User.id == job.user_id).with_for_update())
        if user is None:
            raise LeaseLostError("the user no longer exists")
        if user.current_adapter_version_id != publication.parent_id:
            raise LineageConflictError("the user's head adapter moved while the task trained")
        if user.next_task_index != publication.task_index:
            raise LineageConflictError(
                f"task index {publication.task_index} does not follow the user's {user.next_task_index - 1}"
            )
        size = sum(int(meta["bytes"]) for meta in publication.files.values())
        version = AdapterVersion(
            id=publication.version_id,
            user_id=job.user_id,
            concept_id=job.concept_id,
            job_id=job.id,
            parent_id=publication.parent_id,
            task_index=publication.task_index,
            method=publication.method,
            path=publication.path,
            files=publication.files,
            sha256=manifest_sha256(publication.files),
            size_bytes=size,
            created_at=now,
        )
        session.add(version)
        session.flush()
        if publication.fisher_file and publication.fisher_file in publication.files:
            meta = publication.files[publication.fisher_file]
            session.add(
                FisherState(
                    user_id=job.user_id,
                    adapter_version_id=version.id,
                    job_id=job.id,
                    path=f"{publication.path}/{publication.fisher_file}",
                    sha256=meta["sha256"],
                    bytes=int(meta["bytes"]),
                    created_at=now,
                )
            )
        parent_matches = (
            User.current_adapter_version_id.is_(None)
            if publication.parent_id is None
            else User.current_adapter_version_id == publication.parent_id
        )
        swapped = session.execute(
            update(User)
            .where(User.id == job.user_id, parent_matches)
            .values(current_adapter_version_id=version.id, next_task_index=User.next_task_index + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if swapped != 1:
            raise LineageConflictError("the user's head adapter moved while the task trained")
        if job.concept_id:
            session.execute(
                update(Concept)
                .where(Concept.id == job.concept_id)
                .values(
                    status=ConceptStatus.READY.value,
                    task_index=publication.task_index,
                    metrics=publication.metrics,
                )
            )
        job.state = JobState.SUCCEEDED.value
        job.finished_at = now
        job.lease_owner = None
        job.lease_expires_at = None
        job.result = {
            "adapter_version_id": version.id,
            "task_index": publication.task_index,
            "metrics": publication.metrics,
        }
        job.progress = finished_progress(job.progress)
        if publication.loss_curves is not None:
            job.loss_curves = publication.loss_curves
        record(
            session,
            action="adapter.publish",
            subject=version.id,
            details={"job_id": job.id, "task_index": publication.task_index},
        )
        _dispatch_next_train_job(session, user_id=job.user_id, after_seq=job.seq, kind=job.kind)
        session.flush()
        return version


def publish_generation(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    fencing_token: int,
    generation_id: str,
    images: list[dict[str, Any]],
    now: datetime | None = None,
) -> list[str]:
    """Image rows + job ``succeeded`` in one transaction; returns the image ids.

    ``images``: ``[{"path", "sha256", "width", "height"}]``, files already written.
    """
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        job = session.get(Job, job_id, populate_existing=True, with_for_update=True)
        if job is None or job.fencing_token != fencing_token or job.state != JobState.RUNNING.value:
            raise LeaseLostError("the job is no longer owned by this attempt")
        rows = [GeneratedImage(user_id=job.user_id, generation_id=generation_id, **image) for image in images]
        session.add_all(rows)
        session.flush()
        image_ids = [row.id for row in rows]
        job.state = JobState.SUCCEEDED.value
        job.finished_at = now
        job.lease_owner = None
        job.lease_expires_at = None
        job.result = {"generation_id": generation_id, "image_ids": image_ids}
        job.progress = finished_progress(job.progress)
        return image_ids


def ensure_generation(session_factory: sessionmaker[Session], *, job_id: str) -> Generation:
    """The job's ``generations`` row (the API writes it with the job; rebuilt from the payload if not)."""
    with write_transaction(session_factory) as session:
        generation = session.scalar(select(Generation).where(Generation.job_id == job_id))
        if generation is not None:
            return generation
        job = session.get(Job, job_id)
        if job is None:
            raise LeaseLostError("the job no longer exists")
        payload = dict(job.payload or {})
        prompt = str(payload.pop("prompt", ""))
        payload.pop("generation_id", None)
        generation = Generation(user_id=job.user_id, job_id=job_id, prompt=prompt, params=payload)
        session.add(generation)
        session.flush()
        return generation


def fail_job(
    session_factory: sessionmaker[Session],
    *,
    job_id: str,
    fencing_token: int,
    error: str,
    final: bool,
    now: datetime | None = None,
) -> bool:
    """End this attempt with ``error``; returns True when the job is now finally ``failed``.

    A non-final failure puts the job back to ``queued`` (the next delivery retries it) unless
    its attempts are exhausted, which makes it final.
    """
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        job = session.get(Job, job_id, populate_existing=True)
        if job is None or job.fencing_token != fencing_token or job.state != JobState.RUNNING.value:
            return False
        if final or job.attempts >= job.max_attempts:
            _finish(session, job=job, state=JobState.FAILED, error=error, now=now)
            return True
        job.state = JobState.QUEUED.value
        job.error = error
        job.lease_owner = None
        job.lease_expires_at = None
        session.add(Outbox(job_id=job.id, task_name=TASK_NAMES[job.kind]))
        return False


def mark_cancelled(
    session_factory: sessionmaker[Session], *, job_id: str, fencing_token: int, now: datetime | None = None
) -> bool:
    """A running attempt stopped on ``cancel_requested``: the job is ``cancelled`` (final)."""
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        job = session.get(Job, job_id, populate_existing=True)
        if job is None or job.fencing_token != fencing_token or job.state != JobState.RUNNING.value:
            return False
        _finish(session, job=job, state=JobState.CANCELLED, error="cancelled", now=now)
        return True


def request_cancel(
    session_factory: sessionmaker[Session], *, job_id: str, now: datetime | None = None
) -> Job:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next step."""
    now = now or utcnow()
    with write_transaction(session_factory) as session:
        job = session.get(Job, job_id, populate_existing=True)
        if job is None:
            raise LookupError("no such job")
        if job.is_final:
            return job
        job.cancel_requested = True
        if job.state == JobState.QUEUED.value:
            _finish(session, job=job, state=JobState.CANCELLED, error="cancelled", now=now)
        session.flush()
        return job


# ---- raw upload deletion --------------------------------------------------------------------


def delete_raw_uploads(
    session_factory: sessionmaker[Session],
    store: ArtifactStore,
    *,
    job_id: str,
    now: datetime | None = None,
) -> int:
    """Delete a final train job's raw images: files, then rows; stamp the concept. Idempotent.

    Also removes the job's checkpoints and staging output. Returns the number of uploads removed.
    """
    now = now or utcnow()
    with session_factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            return 0
        if not job.is_final:
            raise RuntimeError("raw images are deleted only once the job is final")
        paths = list(session.scalars(select(Upload.path).where(Upload.job_id == job_id)))
        concept_id = job.concept_id
    for path in paths:
        store.delete(path)
    for relative in (store.checkpoint_dir(job_id=job_id), store.staging_dir(job_id=job_id)):
        with contextlib.suppress(StorageError):
            store.delete(relative)
    with write_transaction(session_factory) as session:
        session.execute(
            Upload.__table__.delete().where(Upload.job_id == job_id)  # type: ignore[attr-defined]
        )
        if concept_id is not None:
            session.execute(
                update(Concept)
                .where(Concept.id == concept_id, Concept.images_deleted_at.is_(None))
                .values(images_deleted_at=now)
            )
        if paths:
            record(session, action="uploads.delete", subject=job_id, details={"files": len(paths)})
    return len(paths)


# ---- reconciliation -------------------------------------------------------------------------


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
    """Repair what lost messages and dead workers leave behind (research/reliability.md §1.4.9).

    * a ``running`` job whose lease expired: re-sent (the claim accepts expired leases), or
      failed when its attempts are exhausted;
    * a ``queued`` job that could run now (no unfinished earlier train job of its user) and has
      had no message for ``redispatch_after_seconds``: re-sent;
    * a final train job whose raw uploads still exist: deleted.

    Re-sending means an ``outbox`` row; ``worker.dispatch.flush_outbox`` sends it.
    """
    now = now or utcnow()
    report = ReconcileReport()
    cutoff = now - timedelta(seconds=redispatch_after_seconds)
    recent_message = exists().where(
        Outbox.job_id == Job.id, or_(Outbox.sent_at.is_(None), Outbox.created_at >= cutoff)
    )
    stuck_filter = (
        Job.state == JobState.QUEUED.value,
        Job.created_at < cutoff,
        or_(Job.kind != JobKind.TRAIN.value, ~_earlier_unfinished_train_job()),
        ~recent_message,
    )
    expired_filter = (Job.state == JobState.RUNNING.value, Job.lease_expires_at < now)
    with session_factory() as session:  # a cheap read first: most passes find nothing to repair
        needs_repair = session.scalar(
            select(func.count()).select_from(Job).where(or_(and_(*expired_filter), and_(*stuck_filter)))
        )
    if needs_repair:
        _repair(
            session_factory, report=report, now=now, expired_filter=expired_filter, stuck_filter=stuck_filter
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
    expired_filter: tuple[Any, ...],
    stuck_filter: tuple[Any, ...],
) -> None:
    with write_transaction(session_factory) as session:
        expired = session.scalars(select(Job).where(*expired_filter)).all()
        for job in expired:
            if job.attempts >= job.max_attempts:
                _finish(
                    session,
                    job=job,
                    state=JobState.FAILED,
                    error=f"gave up after {job.attempts} attempts (the worker stopped each time)",
                    now=now,
                )
                report.failed.append(job.id)
                continue
            message_since_expiry = session.scalar(
                select(func.count())
                .select_from(Outbox)
                .where(Outbox.job_id == job.id, Outbox.created_at >= job.lease_expires_at)
            )
            if not message_since_expiry:
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
    * ``images/<file>`` without an ``images`` row (a generation that did not publish).

    Only entries older than ``older_than_seconds`` (by mtime) are touched, so work in flight is safe.
    """
    now = now or utcnow()
    cutoff = now.timestamp() - older_than_seconds

    def old_entries(relative: str, depth: int) -> list[str]:
        base = store.root / relative
        if not base.is_dir():
            return []
        pattern = "/".join(["*"] * depth)
        return [
            path.relative_to(store.root).as_posix()
            for path in base.glob(pattern)
            if path.lstat().st_mtime < cutoff and not path.name.startswith(".tmp-")
        ]

    candidates = {
        "adapters": old_entries("adapters", 2),
        "staging": old_entries("staging", 1),
        "checkpoints": old_entries("checkpoints", 1),
        "images": old_entries("images", 1),
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
    for relative in orphans:
        with contextlib.suppress(StorageError):
            store.delete(relative)
    return orphans
