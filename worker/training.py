"""A train job's work inside the job runner (``worker.runner``): train, store the version, publish.

The steps (docs/architecture.md, "The job protocol"):

1. the user's state from their lineage of version directories, staged in the worker's workspace
   and verified against their sha256 (``worker.workspace``);
2. ``core.engine.task.run_task`` with progress/cancel callbacks and a checkpoint directory,
   so a re-run after a crash resumes instead of starting over (on another host too: the
   checkpoint is copied to an object store as it changes, ``worker.checkpoints``);
3. the new version directory is written (``save_version`` into the workspace's ``staging/<job>``,
   then put into the store at ``adapters/<user>/<version>`` as a whole) *before* the publish
   transaction;
4. publish: one fenced transaction (adapter + Fisher rows, head compare-and-swap, concept
   ready, job succeeded) — a stale attempt writes nothing and its directory is removed;
5. the runner then deletes the raw uploads, their rows and the checkpoints (also after a final
   failure or a cancel), and the previews are rendered. Latents and decoded images only ever
   live in this process's memory.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import Image

from core.db import jobs as protocol
from core.db.models import new_id
from core.faults import crash_point
from core.storage import StorageError
from worker.checkpoints import CheckpointMirror
from worker.monitor import JobMonitor
from worker.outcomes import RunResult
from worker.previews import previews_after_publish
from worker.runner import run_job
from worker.runtime import Runtime


@dataclass(frozen=True)
class TrainedVersion:
    """A stored, unpublished adapter version."""

    publication: protocol.Publication


class TrainWork:
    kind = "train"

    def produce(self, runtime: Runtime, *, claim: protocol.Claim, monitor: JobMonitor) -> TrainedVersion:
        from core.engine.errors import InvalidImagesError
        from core.engine.task import run_task

        settings, store, payload = runtime.settings, runtime.store, claim.payload
        paths = protocol.upload_paths(runtime.session_factory, job_id=claim.job_id)
        images = _load_images(runtime, paths=paths)
        if not images:
            raise InvalidImagesError("the training images of this job are gone")
        with runtime.session_factory() as session:
            chain = protocol.user_lineage(session, user_id=claim.user_id)
        state = runtime.load_user_state(chain)
        config = runtime.engine_config
        if payload.get("steps"):
            config = config.with_(train_steps=min(int(payload["steps"]), settings.train_max_steps))
        method = payload.get("method") or None
        checkpoints = CheckpointMirror(store=store, workspace=runtime.workspace, job_id=claim.job_id)
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
                progress=checkpoints.watch(monitor.progress),
                should_stop=monitor.should_stop,
                checkpoint_dir=checkpoints.restore(),
            )
        finally:
            del images
        record = result.state.concepts[-1]
        version_id = new_id()
        destination = _store_version(
            runtime, result.state, job_id=claim.job_id, user_id=str(claim.user_id), version_id=version_id
        )
        crash_point("train.after_store")
        publication = protocol.Publication(
            version_id=version_id,
            parent_id=chain[-1].id if chain else None,
            task_index=record.task_index,
            path=destination,
            files=store.describe_dir(destination),
            method=record.method,
            metrics=_metrics(result, images=len(paths), config=config),
            loss_curves=monitor.loss_curves(),
        )
        return TrainedVersion(publication=publication)

    def publish(self, runtime: Runtime, *, claim: protocol.Claim, product: TrainedVersion) -> str:
        protocol.publish_training(runtime.session_factory, **claim.fence, publication=product.publication)
        crash_point("train.after_publish")
        return product.publication.version_id

    def discard(self, runtime: Runtime, *, product: TrainedVersion) -> None:
        runtime.store.delete(product.publication.path)

    def after(self, runtime: Runtime, *, claim: protocol.Claim, detail: str) -> None:
        previews_after_publish(runtime, job_id=claim.job_id, user_id=str(claim.user_id), version_id=detail)


TRAINING = TrainWork()


def run_train_job(runtime: Runtime, *, job_id: str) -> RunResult:
    """Run one delivery of train job ``job_id``; never raises for a job-level failure."""
    return run_job(runtime, job_id=job_id, work=TRAINING)


def _store_version(runtime: Runtime, state: Any, *, job_id: str, user_id: str, version_id: str) -> str:
    """Write the version into the workspace's ``staging/<job>``, then put it into the store at its
    place; returns its stored path."""
    from core.engine.state import save_version

    store = runtime.store
    local = runtime.workspace.fresh(store.staging_dir(job_id=job_id))
    destination = store.adapter_dir(user_id=user_id, version_id=version_id)
    save_version(state, local)
    store.put_dir(local, destination)
    return destination


def _load_images(runtime: Runtime, *, paths: list[str]) -> list[Image.Image]:
    """The job's re-encoded uploads as RGB images (in memory only)."""
    images = []
    for path in paths:
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
