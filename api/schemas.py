"""Typed request and response bodies of the HTTP API (they drive the OpenAPI document at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ConceptStatusName = Literal["queued", "training", "ready", "failed", "cancelled"]


class ErrorOut(BaseModel):
    detail: Any = Field(description="what went wrong, in words (or a list of field errors)")


class UnknownTokenOut(BaseModel):
    detail: str
    unknown_tokens: list[str]
    your_tokens: list[str]


class Progress(BaseModel):
    phase: str = "queued"
    step: int = 0
    total: int = 0
    loss: float | None = None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: Literal["train", "generate"]
    state: JobStateName
    seq: int = Field(description="per-user order; a user's jobs run strictly in this order")
    concept_id: str | None
    progress: Progress
    error: str | None
    result: dict[str, Any] | None
    attempts: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ConceptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    token: str = Field(description="use it in prompts, e.g. 'a photo of <name>'")
    class_word: str | None
    method: str
    steps: int | None
    status: ConceptStatusName
    task_index: int | None = Field(description="the paper's task n of this concept (set when trained)")
    metrics: dict[str, Any]
    images_deleted_at: datetime | None = Field(description="when the raw training images were deleted")
    created_at: datetime
    job_id: str | None = Field(default=None, description="the training job of this concept")


class ConceptCreated(BaseModel):
    concept: ConceptOut
    job: JobOut


class ConceptList(BaseModel):
    concepts: list[ConceptOut]


class GenerateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="may use your tokens, e.g. 'a photo of <dog> on a beach'")
    negative_prompt: str = ""
    n: int = Field(default=1, ge=1, description="number of images")
    steps: int | None = Field(default=None, ge=1, description="sampling steps (default from the server)")
    guidance_scale: float = Field(default=7.5, ge=0.0, le=50.0)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    wait: float = Field(
        default=0.0, ge=0.0, description="seconds to wait for the result before answering 202"
    )


class ImageRef(BaseModel):
    id: str
    url: str
    width: int
    height: int


class GenerateOut(BaseModel):
    job: JobOut
    generation_id: str
    images: list[ImageRef] = Field(description="filled once the job has succeeded")


class AdapterVersionOut(BaseModel):
    id: str = Field(description="the version id")
    version: int = Field(description="1-based position in the lineage chain")
    task_index: int
    concept_id: str | None
    concept_name: str | None
    token: str | None
    parent_id: str | None
    method: str
    sha256: str = Field(description="sha256 of the version's file manifest")
    size_bytes: int
    files: dict[str, dict[str, Any]]
    created_at: datetime


class AdapterLineage(BaseModel):
    head: str | None = Field(description="the current version id (None before the first trained concept)")
    versions: list[AdapterVersionOut] = Field(description="oldest first; each version's parent precedes it")


class ErasureOut(BaseModel):
    erased: bool
    jobs: int
    running_jobs_stopped: int
    files_deleted: int


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    role: Literal["user", "admin"]
    disabled: bool
    created_at: datetime
    current_adapter_version_id: str | None
    active_keys: int = 0


class UserList(BaseModel):
    users: list[UserOut]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    role: Literal["user", "admin"] = "user"


class UserWithKey(BaseModel):
    user: UserOut
    api_key: str = Field(description="shown once; store it now")
    key_prefix: str


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: bool


class MeOut(BaseModel):
    id: str
    name: str
    role: Literal["user", "admin"]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
