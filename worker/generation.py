"""One delivery of a generate job: claim, sample with the user's state, store PNGs, publish."""

from __future__ import annotations

import io

from core.db import jobs as protocol
from worker.monitor import JobMonitor
from worker.outcomes import Outcome, RunResult, record_failure
from worker.runtime import Runtime


def run_generate_job(runtime: Runtime, *, job_id: str) -> RunResult:
    """Run one delivery of generate job ``job_id``; never raises for a job-level failure."""
    settings = runtime.settings
    claim = protocol.claim_job(
        runtime.session_factory,
        job_id=job_id,
        worker_id=runtime.worker_id,
        lease_seconds=settings.job_lease_seconds,
    )
    if claim.outcome is not protocol.ClaimOutcome.CLAIMED:
        return RunResult(Outcome.SKIPPED if claim.outcome is protocol.ClaimOutcome.SKIP else Outcome.WAIT)
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
            return _generate_and_publish(runtime, claim=claim, monitor=monitor)
    except protocol.LeaseLostError:
        return RunResult(Outcome.SKIPPED, "lease lost to another attempt")
    except Exception as error:
        return _fail(runtime, claim=claim, error=error)


def _generate_and_publish(runtime: Runtime, *, claim: protocol.Claim, monitor: JobMonitor) -> RunResult:
    from core.engine.generate import generate

    factory, store = runtime.session_factory, runtime.store
    generation = protocol.ensure_generation(factory, job_id=claim.job_id)
    params = dict(generation.params or {})
    with factory() as session:
        chain = protocol.user_lineage(session, user_id=claim.user_id)
    state = runtime.load_user_state(chain)
    steps = int(params.get("steps") or runtime.settings.generate_default_steps)
    monitor.progress("generate", 0, steps, None)
    images = generate(
        backbone=runtime.backbone,
        state=state,
        prompt=generation.prompt,
        negative_prompt=str(params.get("negative_prompt") or ""),
        n=int(params.get("n") or 1),
        steps=steps,
        guidance_scale=float(params.get("guidance_scale", 7.5)),
        seed=int(params.get("seed") or 0),
    )
    stored = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        written = store.write_bytes(store.new_image_path(), buffer.getvalue())
        stored.append(
            {"path": written.path, "sha256": written.sha256, "width": image.width, "height": image.height}
        )
    monitor.stop()
    try:
        protocol.publish_generation(
            factory,
            job_id=claim.job_id,
            fencing_token=claim.fencing_token,
            generation_id=generation.id,
            images=stored,
        )
    except protocol.LeaseLostError:
        store.delete_many([item["path"] for item in stored])
        raise
    return RunResult(Outcome.SUCCEEDED, generation.id)


def _fail(runtime: Runtime, *, claim: protocol.Claim, error: Exception) -> RunResult:
    from core.engine.errors import EngineError

    final = isinstance(error, EngineError | ValueError)
    message = str(error)[:500] if final else f"internal error ({type(error).__name__}); the job is retried"
    is_final = record_failure(
        runtime.session_factory, kind="generate", claim=claim, error=error, final=final, message=message
    )
    return RunResult(Outcome.FAILED if is_final else Outcome.RETRY, message)
