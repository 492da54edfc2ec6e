"""Typed response bodies of the admin read API (``/v1/admin/...``, docs/dashboard.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import CURSOR_DOC, AdapterLineage, JobStateName, Progress, UserOut


class UserTotalsOut(BaseModel):
    concepts: int = Field(description="concepts uploaded (any status)")
    tasks: int = Field(description="training jobs (any state)")
    storage_bytes: int = Field(description="adapter versions + raw uploads not yet deleted")
    last_activity_at: datetime | None = Field(description="latest job queued or finished, or key used")


class UserSummaryOut(UserOut):
    totals: UserTotalsOut | None = None


class UserPage(BaseModel):
    users: list[UserSummaryOut]
    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)


class TaskOut(BaseModel):
    job_id: str
    seq: int = Field(description="the user's job order")
    task_index: int | None = Field(description="the paper's task n (set when published)")
    concept_id: str | None
    concept_name: str | None
    token: str | None
    method: str | None
    state: JobStateName
    progress: Progress
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    seconds: dict[str, float] = Field(description="seconds per phase (train, dsc, fisher)")
    final_loss: float | None
    attempts: int
    error: str | None
    images_deleted_at: datetime | None = Field(description="when the raw training images were deleted")
    adapter_version_id: str | None = Field(description="the adapter version this task made")


class TaskPage(BaseModel):
    user_id: str
    tasks: list[TaskOut] = Field(description="newest first")
    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)


class TaskDetail(TaskOut):
    user_id: str
    loss_curves: dict[str, list[tuple[int, float]]] = Field(
        description="per phase, at most 200 points [step, mean loss]"
    )
    metrics: dict[str, object] = Field(description="the task's published metrics")


class AdminLineage(AdapterLineage):
    """A page of one user's lineage (the admin view of ``GET /v1/adapters``)."""

    user_id: str


class ActiveJobOut(BaseModel):
    id: str
    kind: Literal["train", "generate"]
    state: JobStateName
    user_id: str
    user_name: str
    concept_name: str | None
    progress: Progress
    attempts: int
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    worker_id: str | None = Field(description="the worker process holding the lease")


class ActiveJobPage(BaseModel):
    jobs: list[ActiveJobOut] = Field(description="running and queued jobs of all users, oldest first")
    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)


class WorkerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="<hostname>:<pid>")
    role: str = Field(description="pool (runs jobs) or main (runs the reconciler)")
    device: str
    backbone: str
    preset: str
    current_job_id: str | None
    started_at: datetime
    last_seen_at: datetime
    seconds_since_seen: float = 0.0


class WorkerList(BaseModel):
    workers: list[WorkerOut] = Field(description="newest started first")
    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)


class QueueDepthOut(BaseModel):
    queued: int
    running: int
    unsent_messages: int = Field(description="outbox rows the broker has not received yet")


class SystemOut(BaseModel):
    database: str = Field(description="'ok' or 'error: <type>'")
    broker: str = Field(description="'ok' or 'error: <type>'")
    queue: QueueDepthOut | None = Field(description="null while the database is unreachable")


class PreviewOut(BaseModel):
    after_task_index: int = Field(description="made right after this task was published")
    image_ids: list[str]
    image_urls: list[str]
    retention: float | None = Field(description="feature similarity to the first preview, 100 = same")
    features: str | None = Field(description="the feature extractor that scored it")
    created_at: datetime


class PreviewStripOut(BaseModel):
    concept_id: str
    concept_name: str
    token: str
    task_index: int | None
    retention: float | None = Field(description="the latest retention score")
    previews: list[PreviewOut] = Field(description="oldest first")


class PreviewStrips(BaseModel):
    user_id: str
    strips: list[PreviewStripOut] = Field(description="one per learned concept, in task order")
    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)
