"""A generate job's work inside the job runner (``worker.runner``): sample with the user's state,
store the PNGs, publish their rows."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from core.db import jobs as protocol
from core.faults import crash_point
from worker.monitor import JobMonitor
from worker.outcomes import RunResult
from worker.runner import run_job
from worker.runtime import Runtime


@dataclass(frozen=True)
class GeneratedImages:
    """Stored, unpublished PNGs of one generation."""

    generation_id: str
    images: list[dict[str, Any]]  # {"path", "sha256", "width", "height"}


class GenerateWork:
    kind = "generate"

    def produce(self, runtime: Runtime, *, claim: protocol.Claim, monitor: JobMonitor) -> GeneratedImages:
        from core.engine.generate import generate

        generation = protocol.ensure_generation(runtime.session_factory, job_id=claim.job_id)
        params = dict(generation.params or {})
        with runtime.session_factory() as session:
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
        stored = [_store_png(runtime, image) for image in images]
        crash_point("generate.after_store")
        return GeneratedImages(generation_id=generation.id, images=stored)

    def publish(self, runtime: Runtime, *, claim: protocol.Claim, product: GeneratedImages) -> str:
        protocol.publish_generation(
            runtime.session_factory, **claim.fence, generation_id=product.generation_id, images=product.images
        )
        crash_point("generate.after_publish")
        return product.generation_id

    def discard(self, runtime: Runtime, *, product: GeneratedImages) -> None:
        runtime.store.delete_many([image["path"] for image in product.images])

    def after(self, runtime: Runtime, *, claim: protocol.Claim, detail: str) -> None:
        """Nothing follows a generation."""


GENERATION = GenerateWork()


def run_generate_job(runtime: Runtime, *, job_id: str) -> RunResult:
    """Run one delivery of generate job ``job_id``; never raises for a job-level failure."""
    return run_job(runtime, job_id=job_id, work=GENERATION)


def _store_png(runtime: Runtime, image: Any) -> dict[str, Any]:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    written = runtime.store.write_bytes(runtime.store.new_image_path(), buffer.getvalue())
    return {"path": written.path, "sha256": written.sha256, "width": image.width, "height": image.height}
