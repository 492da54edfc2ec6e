"""The relational model of the service (SQLAlchemy 2.0, typed ``Mapped`` columns).

The SQL database owns all job and artifact state; Celery only delivers ids (docs/architecture.md,
"The job protocol").
Ids are string UUIDs; timestamps are timezone-aware UTC (also on SQLite, through
``UTCDateTime``). Paths stored here are *relative to the data directory*
(``uploads/<uuid>``, ``adapters/<user>/<version>``, ``images/<uuid>.png``), so the data
directory can move; the store (``core.storage.make_store``) resolves them.

Lifecycle of a user's task (concept):
  API: ``concepts`` row (status ``queued``) + ``jobs`` row (kind ``train``) + ``uploads`` rows
       + ``outbox`` row, in one transaction.
  worker: claims the job (lease, fencing token), trains, then publishes in one transaction
       an ``adapter_versions`` row (unique per job) + a ``fisher_states`` row (unique per job),
       moves ``users.current_adapter_version_id`` (compare-and-swap) and sets
       ``concepts.task_index`` from ``users.next_task_index``; raw uploads are deleted
       (files, then rows) once the job is final.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A fresh random id (UUID4, 36 characters)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


class ConceptStatus(enum.StrEnum):
    QUEUED = "queued"
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobKind(enum.StrEnum):
    TRAIN = "train"
    GENERATE = "generate"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_JOB_STATES


FINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


def _in(column: str, enum_type: type[enum.StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum_type)
    return f"{column} IN ({values})"


ID = String(36)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads this class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", Role), name="role"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.USER.value)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The head of the user's adapter lineage; moved only by the publish compare-and-swap.
    current_adapter_version_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("adapter_versions.id", ondelete="SET NULL", use_alter=True), default=None
    )
    # The task index n the next *published* task gets (paper: tasks n = 1, 2, ...).
    next_task_index: Mapped[int] = mapped_column(Integer, default=1)
    # The seq the next job of this user gets (allocated atomically with UPDATE ... RETURNING).
    next_job_seq: Mapped[int] = mapped_column(Integer, default=1)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="user", passive_deletes=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The non-secret start of the key (for lookup and display), e.g. "mnemo_AbCdEfGh".
    prefix: Mapped[str] = mapped_column(String(32), index=True)
    # HMAC-SHA256(pepper, key), hex.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    user: Mapped[User] = relationship(back_populates="api_keys")


class Concept(Base):
    __tablename__ = "concepts"
    __table_args__ = (
        UniqueConstraint("user_id", "name"),
        CheckConstraint(_in("status", ConceptStatus), name="status"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    token: Mapped[str] = mapped_column(String(34))
    class_word: Mapped[str | None] = mapped_column(String(64), default=None)
    method: Mapped[str] = mapped_column(String(64))
    steps: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[str] = mapped_column(String(16), default=ConceptStatus.QUEUED.value)
    # Set at publish: the paper's task index n of this concept in the user's sequence.
    task_index: Mapped[int | None] = mapped_column(Integer, default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    images_deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("user_id", "seq"),
        CheckConstraint(_in("kind", JobKind), name="kind"),
        CheckConstraint(_in("state", JobState), name="state"),
        Index("ix_jobs_state_lease_expires_at", "state", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    concept_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("concepts.id", ondelete="SET NULL"), default=None, index=True
    )
    # Per-user, strictly increasing; the claim runs a user's jobs in this order.
    seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    # {"phase": str, "step": int, "total": int, "loss": float | None}
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # What the worker needs besides the rows it references (opaque to Celery).
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(255), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    fencing_token: Mapped[int] = mapped_column(BigInteger, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    # Downsampled loss per phase, written through the heartbeat (docs/dashboard.md):
    # {"train": [[step, loss], ...], "dsc": [...], "fisher": [...]}, at most 200 points each.
    loss_curves: Mapped[dict[str, Any]] = mapped_column(default=dict)

    @property
    def is_final(self) -> bool:
        return JobState(self.state).is_final


class Upload(Base):
    """Bookkeeping of one raw (re-encoded) training image; the row goes when the file goes."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    # Relative to the data dir: "uploads/<uuid>" (never a user-supplied name).
    path: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    # The image's place in the request (0, 1, ...): the worker reads them in this order, so a
    # task's batches, and so its result, do not depend on the random ids
    # (docs/architecture.md, "Uploads and privacy").
    position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdapterVersion(Base):
    """One immutable published adapter version; the lineage is the ``parent_id`` chain."""

    __tablename__ = "adapter_versions"
    __table_args__ = (Index("ix_adapter_versions_user_id_task_index", "user_id", "task_index"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    concept_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("concepts.id", ondelete="SET NULL"), default=None, index=True
    )
    job_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("jobs.id", ondelete="SET NULL"), unique=True, default=None
    )
    parent_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("adapter_versions.id", ondelete="SET NULL"), default=None, index=True
    )
    task_index: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(64))
    # Relative directory "adapters/<user_id>/<version_id>".
    path: Mapped[str] = mapped_column(String(255))
    # {filename: {"sha256": str, "bytes": int}}
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # sha256 of the canonical manifest (``core.storage.manifest_sha256(files)``).
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FisherState(Base):
    __tablename__ = "fisher_states"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    adapter_version_id: Mapped[str] = mapped_column(
        ID, ForeignKey("adapter_versions.id", ondelete="CASCADE"), unique=True
    )
    job_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("jobs.id", ondelete="SET NULL"), unique=True, default=None
    )
    path: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Generation(Base):
    __tablename__ = "generations"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    prompt: Mapped[str] = mapped_column(Text)
    # {negative_prompt, n, steps, guidance_scale, seed}
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GeneratedImage(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    generation_id: Mapped[str] = mapped_column(
        ID, ForeignKey("generations.id", ondelete="CASCADE"), index=True
    )
    # Relative "images/<uuid>.png".
    path: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Outbox(Base):
    """Messages to send to the broker, written in the same transaction as their job."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_sent_at_created_at", "sent_at", "created_at"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ID, ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    task_name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class AuditLog(Base):
    """Who did what, without personal payloads (no filenames, keys, prompts or images)."""

    __tablename__ = "audit_log"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_user_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(255), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WorkerSeen(Base):
    """A worker process as last seen: written by its heartbeats and its reconciler thread."""

    __tablename__ = "workers"

    # "<hostname>:<pid>", the same string a claim stores in ``jobs.lease_owner``.
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="pool")  # "pool" (runs jobs) or "main"
    device: Mapped[str] = mapped_column(String(64), default="")
    backbone: Mapped[str] = mapped_column(String(255), default="")
    preset: Mapped[str] = mapped_column(String(32), default="")
    current_job_id: Mapped[str | None] = mapped_column(ID, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Preview(Base):
    """A fixed-seed preview of one learned token, made right after a later task was published.

    ``after_task_index`` is the task that had just been published; the preview made when the
    concept itself was learned (``after_task_index == concept's task_index``) is the reference
    its ``retention`` (100 = identical features) is measured against (docs/dashboard.md).
    """

    __tablename__ = "previews"
    __table_args__ = (
        UniqueConstraint("concept_id", "after_task_index"),
        Index("ix_previews_user_id_after_task_index", "user_id", "after_task_index"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    concept_id: Mapped[str] = mapped_column(ID, ForeignKey("concepts.id", ondelete="CASCADE"))
    job_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("jobs.id", ondelete="SET NULL"), default=None, index=True
    )
    after_task_index: Mapped[int] = mapped_column(Integer)
    token: Mapped[str] = mapped_column(String(34))
    seed: Mapped[int] = mapped_column(Integer, default=0)
    image_ids: Mapped[list[Any]] = mapped_column(default=list)
    retention: Mapped[float | None] = mapped_column(Float, default=None)
    features: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdminSession(Base):
    """A browser session of the admin dashboard; the cookie holds the token, the row its sha256."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` a user sent with a job-creating request, and the job it made.

    Written in the job's transaction; a repeat of the request within the window answers that
    job again (docs/api.md, "Idempotency-Key"). ``fingerprint`` is an HMAC of the request
    under the server's pepper: it tells two requests apart without keeping anything they held.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("jobs.id", ondelete="CASCADE"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    SUCCEEDED = "succeeded"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed: given up


class Webhook(Base):
    """A user's webhook (at most one): where events go and which (docs/webhooks.md).

    The signing secret is not stored: ``secret_salt`` and the API-key pepper derive it, and
    ``secret_check`` (its SHA-256) lets a process recognise it (``core.webhooks.signing``).
    """

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    # The subscribed event names (``core.webhooks.events.EVENTS``).
    events: Mapped[list[Any]] = mapped_column(default=list)
    secret_salt: Mapped[str] = mapped_column(String(64))
    secret_check: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook: written in the transaction of the state change it reports,
    sent later by the relay (``core.webhooks.relay``); its id is the ``Idempotency-Key``."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("status", DeliveryStatus), name="status"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    webhook_id: Mapped[str] = mapped_column(ID, ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    # The job the event is about (None for none); not a foreign key: the row outlives nothing
    # of the job's content, and the relay never reads the job.
    job_id: Mapped[str | None] = mapped_column(ID, default=None, index=True)
    event: Mapped[str] = mapped_column(String(32))
    # The JSON body, fixed when the event is written (``core.webhooks.events.body``): ids and states.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the next attempt is due (a claimed attempt pushes it past its timeout: a lease).
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
