"""One delivery of a train job: claim, train with heartbeats, publish once, delete the raw images.

The steps (DESIGN.md §6, research/reliability.md §1.4):

1. claim the job in SQL (duplicates and early deliveries return here without work);
2. rebuild the user's state from their lineage of version directories (verified sha256);
3. ``core.engine.task.run_task`` with progress/cancel callbacks and a checkpoint directory,
   so a re-run after a crash resumes instead of starting over;
4. write the new version directory (``save_version`` into ``staging/<job>``, then an atomic
   rename into ``adapters/<user>/<version>``) *before* the publish transaction;
5. publish: one fenced transaction (adapter + Fisher rows, head compare-and-swap, concept
   ready, job succeeded) — a stale attempt writes nothing and its directory is removed;
6. delete the raw uploads, their rows and the checkpoints (also after a final failure or a
   cancel). Latents and decoded images only ever live in this process's memory.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from PIL import Image
from sqlalchemy import select

from core.db import jobs as protocol
from core.db.models import Job, Upload, new_id
from core.storage import StorageError
from worker.monitor import JobMonitor
from worker.outcomes import Outcome, RunResult, record_failure
from worker.previews import previews_after_publish
from worker.runtime import CorruptVersionError, Runtime

log = logging.getLogger(__name__)


def _final_errors() -> tuple[type[BaseException], ...]:
    from core.engine.errors import (
        InvalidConceptError,
        InvalidImagesError,
        NonFiniteError,
        UnknownMethodError,
    )

    return (InvalidImagesError, NonFiniteError, InvalidConceptError, UnknownMethodError, CorruptVersionError)


def run_train_job(runtime: Runtime, *, job_id: str) -> RunResult:
    """Run one delivery of train job ``job_id``; never raises for a job-level failure."""
    settings = runtime.settings
    claim = protocol.claim_job(
        runtime.session_factory,
        job_id=job_id,
        worker_id=runtime.worker_id,
        lease_seconds=settings.job_lease_seconds,
    )
    if claim.outcome is protocol.ClaimOutcome.WAIT:
        return RunResult(Outcome.WAIT, claim.reason)
    if claim.outcome is protocol.ClaimOutcome.SKIP:
        if claim.finalized:
            protocol.delete_raw_uploads(runtime.session_factory, runtime.store, job_id=job_id)
        return RunResult(Outcome.SKIPPED, claim.reason)
    log.info("job %s: attempt %d claimed by %s", job_id, claim.attempt, runtime.worker_id)
    monitor = JobMonitor(
        session_factory=runtime.session_factory,
        job_id=job_id,
        fencing_token=claim.fencing_token,
        lease_seconds=settings.job_lease_seconds,
        heartbeat_seconds=settings.job_heartbeat_seconds,
        worker=runtime.worker_info,
    )
    try:
        with monitor:
            return _train_and_publish(runtime, claim=claim, monitor=monitor)
    except BaseException as error:
        if not isinstance(error, Exception):  # SystemExit / KeyboardInterrupt: the lease expires
            raise
        return _fail(runtime, claim=claim, error=error)


def _train_and_publish(runtime: Runtime, *, claim: protocol.Claim, monitor: JobMonitor) -> RunResult:
    from core.engine.errors import InvalidImagesError, TaskCancelled
    from core.engine.state import save_version
    from core.engine.task import run_task

    settings, store, factory = runtime.settings, runtime.store, runtime.session_factory
    job_id, payload = claim.job_id, claim.payload
    images = _load_images(runtime, job_id=job_id)
    if not images:
        raise InvalidImagesError("the training images of this job are gone")
    with factory() as session:
        chain = protocol.user_lineage(session, user_id=claim.user_id)
        parent_id = chain[-1].id if chain else None
    state = runtime.load_user_state(chain)
    config = runtime.engine_config
    if payload.get("steps"):
        config = config.with_(train_steps=min(int(payload["steps"]), settings.train_max_steps))
    checkpoint_dir = store.resolve(store.checkpoint_dir(job_id=job_id))
    method = payload.get("method") or None
    try:
        result = run_task(
            backbone=runtime.backbone,
            state=state,
            concept=str(payload["name"]),
            class_word=payload.get("class_word") or None,
            images=images,
            **({"method": method} if method else {}),
            config=config,
            prior_cache_dir=runtime.prior_cache_dir,
            progress=monitor.progress,
            should_stop=monitor.should_stop,
            checkpoint_dir=checkpoint_dir,
        )
    except TaskCancelled:
        return _stopped(runtime, claim=claim, monitor=monitor)
    finally:
        del images
    # The monitor keeps extending the lease until the publish below has committed; a cancel
    # that arrived after the last step still wins over publishing.
    if monitor.should_stop():
        return _stopped(runtime, claim=claim, monitor=monitor)

    new_state = result.state
    record = new_state.concepts[-1]
    version_id = new_id()
    staging = store.staging_dir(job_id=job_id)
    destination = store.adapter_dir(user_id=claim.user_id, version_id=version_id)
    store.delete(staging)
    save_version(new_state, store.resolve(staging))
    store.publish_dir(staging, destination)
    files = store.describe_dir(destination)
    metrics = _metrics(result, images=len(_upload_paths(runtime, job_id=job_id)), config=config)
    publication = protocol.Publication(
        version_id=version_id,
        parent_id=parent_id,
        task_index=record.task_index,
        path=destination,
        files=files,
        method=record.method,
        metrics=metrics,
        loss_curves=monitor.loss_curves(),
    )
    try:
        protocol.publish_training(
            factory, job_id=job_id, fencing_token=claim.fencing_token, publication=publication
        )
    except (protocol.LeaseLostError, protocol.LineageConflictError):
        store.delete(destination)  # never referenced by a row
        raise
    finally:
        monitor.stop()
    protocol.delete_raw_uploads(factory, store, job_id=job_id)
    log.info("job %s: published adapter version %s (task %d)", job_id, version_id, record.task_index)
    previews_after_publish(runtime, job_id=job_id, user_id=str(claim.user_id), version_id=version_id)
    return RunResult(Outcome.SUCCEEDED, version_id)


def _stopped(runtime: Runtime, *, claim: protocol.Claim, monitor: JobMonitor) -> RunResult:
    """The attempt stopped early: the lease went to another attempt, or the user cancelled."""
    monitor.stop()
    if monitor.lease_lost:
        return _lease_lost(runtime, job_id=claim.job_id)
    factory = runtime.session_factory
    if protocol.mark_cancelled(factory, job_id=claim.job_id, fencing_token=claim.fencing_token):
        protocol.delete_raw_uploads(factory, runtime.store, job_id=claim.job_id)
    return RunResult(Outcome.CANCELLED, "cancelled")


def _fail(runtime: Runtime, *, claim: protocol.Claim, error: Exception) -> RunResult:
    if isinstance(error, protocol.LeaseLostError):
        return _lease_lost(runtime, job_id=claim.job_id)
    final = isinstance(error, _final_errors())
    message = _public_message(error)
    is_final = record_failure(
        runtime.session_factory, kind="train", claim=claim, error=error, final=final, message=message
    )
    if is_final:
        protocol.delete_raw_uploads(runtime.session_factory, runtime.store, job_id=claim.job_id)
        return RunResult(Outcome.FAILED, message)
    return RunResult(Outcome.RETRY, message)


def _lease_lost(runtime: Runtime, *, job_id: str) -> RunResult:
    """Another attempt owns the job, or the job is gone (its user erased the account): in the
    latter case remove what this attempt wrote for it (checkpoints, staging)."""
    with runtime.session_factory() as session:
        exists = session.get(Job, job_id) is not None
    if not exists:
        store = runtime.store
        store.delete(store.checkpoint_dir(job_id=job_id))
        store.delete(store.staging_dir(job_id=job_id))
        return RunResult(Outcome.SKIPPED, "the job was deleted")
    return RunResult(Outcome.SKIPPED, "lease lost to another attempt")


def _public_message(error: Exception) -> str:
    """An error text for the job row: the engine's typed messages, else only the type name."""
    from core.engine.errors import EngineError

    if isinstance(error, EngineError | CorruptVersionError | protocol.LineageConflictError):
        return str(error)[:500]
    return f"internal error ({type(error).__name__}); the job is retried"


def _upload_paths(runtime: Runtime, *, job_id: str) -> list[str]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Upload.path).where(Upload.job_id == job_id).order_by(Upload.id)))


def _load_images(runtime: Runtime, *, job_id: str) -> list[Image.Image]:
    """The job's re-encoded uploads as RGB images (in memory only)."""
    images = []
    for path in _upload_paths(runtime, job_id=job_id):
        try:
            data = runtime.store.read_bytes(path)
        except (OSError, StorageError):
            continue
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"]) as image:
            images.append(image.convert("RGB"))
    return images


def _metrics(result: Any, *, images: int, config: Any) -> dict[str, Any]:
    losses = {phase: values[-1] for phase, values in result.losses.items() if values}
    return {
        "final_loss": losses.get("train"),
        "final_losses": losses,
        "seconds": {phase: round(value, 3) for phase, value in result.seconds.items()},
        "total_seconds": round(sum(result.seconds.values()), 3),
        "train_steps": config.train_steps,
        "images": images,
    }
