"""The webhook events and their JSON bodies (docs/webhooks.md, "Events").

A body carries ids, states and counters only — never a prompt, a concept's name, an image or an
error text (``GET /v1/jobs/{id}`` has the details, behind the user's key).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

JOB_QUEUED = "job.queued"
JOB_STARTED = "job.started"
JOB_PROGRESS = "job.progress"
JOB_SUCCEEDED = "job.succeeded"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
IMAGES_DELETED = "images.deleted"

EVENTS = (JOB_QUEUED, JOB_STARTED, JOB_PROGRESS, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED, IMAGES_DELETED)
# The ids of a job's result that a body may name (a train job's metrics stay behind the API).
RESULT_IDS = ("adapter_version_id", "task_index", "generation_id", "image_ids")


def job_data(
    *,
    job_id: str,
    kind: str,
    state: str,
    attempt: int,
    concept_id: str | None,
    progress: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``data`` of a ``job.*`` event."""
    job: dict[str, Any] = {
        "id": job_id,
        "kind": kind,
        "state": state,
        "attempt": attempt,
        "concept_id": concept_id,
    }
    if progress is not None:
        job["progress"] = {key: progress.get(key) for key in ("phase", "step", "total")}
    if result:
        job["result"] = {key: result[key] for key in RESULT_IDS if key in result}
    return {"job": job}


def body(*, delivery_id: str, event: str, created_at: datetime, data: dict[str, Any]) -> str:
    """The exact bytes that are signed and sent (as text), fixed when the event is written."""
    document = {"id": delivery_id, "type": event, "created_at": created_at.isoformat(), "data": data}
    return json.dumps(document, separators=(",", ":"), sort_keys=True)
