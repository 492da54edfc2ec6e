"""Typed request and response bodies of the HTTP API (they drive the OpenAPI document at /docs).

Every request body derives from ``InputModel`` and every free-text field of one is ``Text``: the
two are the one home of the input rules that the database needs (no NUL character, finite
numbers, no unknown fields). Errors have two shapes: ``ErrorOut`` (a message) and
``ValidationErrorOut`` (a list of field errors); ``api.contract`` declares which statuses answer
which.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from core.db.users import USER_NAME

JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobKindName = Literal["train", "generate"]
ConceptStatusName = Literal["queued", "training", "ready", "failed", "cancelled"]

CURSOR_DOC = "pass it as ?cursor= for the next page; null on the last page"
NUL = "\x00"
NO_NUL_PATTERN = r"^[^\x00]*$"
NUL_MESSAGE = "must not contain the NUL character (U+0000)"


def refuse_nul(value: str) -> str:
    """``value`` unchanged; ``ValueError`` when it holds a NUL (PostgreSQL text cannot store one)."""
    if NUL in value:
        raise ValueError(NUL_MESSAGE)
    return value


# Free text that reaches the database (prompts, names): any characters but NUL. The pattern
# documents the rule in the OpenAPI document; the validator enforces it with a clear message.
Text = Annotated[str, AfterValidator(refuse_nul), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})]


def _integral(value: Any) -> Any:
    """``2.0`` as ``2``: JSON Schema's ``integer`` is any number without a fraction."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer field of a request body: 2 or 2.0, never 2.5, "2" or true (InputModel is strict).
Integer = Annotated[int, BeforeValidator(_integral)]


class InputModel(BaseModel):
    """A request body: unknown fields, NaN, ±Infinity and values of another JSON type (``true`` or
    ``"1"`` for a number) are refused with 422, whatever the field."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, in words")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: 'body', 'query', 'path' or 'header', then the field")
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    detail: list[FieldError] = Field(description="one entry per invalid field (values are never echoed)")


class UnknownTokenOut(ErrorOut):
    unknown_tokens: list[str]
    your_tokens: list[str]


class InternalErrorOut(ErrorOut):
    request_id: str = Field(description="quote it when reporting the error (it is in the server log)")


class Progress(BaseModel):
    phase: str = "queued"
    step: int = 0
    total: int = 0
    loss: float | None = None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: JobKindName
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
    concepts: list[ConceptOut] = Field(description="oldest first")
    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)


class JobList(BaseModel):
    jobs: list[JobOut] = Field(description="newest first (by seq)")
    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)


class GenerateIn(InputModel):
    prompt: Text = Field(min_length=1, description="may use your tokens, e.g. 'a photo of <dog> on a beach'")
    negative_prompt: Text = ""
    n: Integer = Field(default=1, ge=1, description="number of images")
    steps: Integer | None = Field(default=None, ge=1, description="sampling steps (default from the server)")
    guidance_scale: float = Field(default=7.5, ge=0.0, le=50.0)
    seed: Integer = Field(default=0, ge=0, le=2**32 - 1)
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


class GenerationOut(BaseModel):
    id: str = Field(description="the generation id (GenerateOut.generation_id)")
    prompt: str
    params: dict[str, Any] = Field(description="negative_prompt, n, steps, guidance_scale, seed")
    job: JobOut
    images: list[ImageRef] = Field(description="filled once the job has succeeded")
    created_at: datetime


class GenerationList(BaseModel):
    generations: list[GenerationOut] = Field(description="newest first")
    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)


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


class Lineage(BaseModel):
    head: str | None = Field(description="the current version id (None before the first trained concept)")
    versions: list[AdapterVersionOut] = Field(description="oldest first; each version's parent precedes it")


class AdapterLineage(Lineage):
    """A page of the lineage (``GET /v1/adapters``)."""

    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)


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


class UserCreate(InputModel):
    # The grammar is documented here and checked by core.db.users (with its own message).
    name: Text = Field(min_length=1, max_length=64, json_schema_extra={"pattern": f"^{USER_NAME.pattern}$"})
    role: Literal["user", "admin"] = "user"


class UserWithKey(BaseModel):
    user: UserOut
    api_key: str = Field(description="shown once; store it now")
    key_prefix: str


class UserUpdate(InputModel):
    disabled: bool


class MeOut(BaseModel):
    id: str
    name: str
    role: Literal["user", "admin"]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
