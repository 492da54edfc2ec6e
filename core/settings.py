"""Service settings, read from the environment (prefix ``MNEMO_``) or passed in code.

Every field can be set as ``MNEMO_<FIELD>`` (e.g. ``MNEMO_DATA_DIR=/srv/mnemo``,
``MNEMO_DATABASE_URL=postgresql+psycopg://mnemo@db/mnemo``,
``MNEMO_BROKER_URL=redis://localhost:6379/0``).

The embedded default needs no server at all: SQLite in ``<data_dir>/mnemo.db`` and a
Celery broker on kombu's SQLAlchemy transport in ``<data_dir>/broker.sqlite``
(``sqla+sqlite:///...``), with the toy backbone shipped in the repository.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
PEPPER_FILE = "api-key-pepper"
DEVICE_PATTERN = r"^(cpu|cuda|mps)(:[0-9]+)?$"  # what torch.device accepts, checked at start-up


class Settings(BaseSettings):
    """All knobs of the service. Paths are resolved to absolute paths at construction."""

    model_config = SettingsConfigDict(env_prefix="MNEMO_", extra="ignore")

    data_dir: Path = Field(
        default=Path("./mnemo-data"),
        description="where everything lives: SQLite DB, embedded broker, uploads, adapters, images",
    )
    database_url: str = Field(default="", description="SQLAlchemy URL; default sqlite:///<data_dir>/mnemo.db")
    broker_url: str = Field(
        default="",
        description="Celery broker URL; default sqla+sqlite:///<data_dir>/broker.sqlite (no server needed)",
    )

    # The artifact store (docs/architecture.md, "Storage"; docs/deployment.md, "Object store").
    # Credentials of the S3 store come from the standard AWS variables (AWS_ACCESS_KEY_ID, ...).
    store: Literal["local", "s3"] = Field(
        default="local", description="where artifacts live: `local` (the data directory) or `s3`"
    )
    s3_endpoint_url: str = Field(
        default="", description="S3-compatible endpoint (e.g. http://minio:9000); empty: AWS S3"
    )
    s3_region: str = Field(default="", description="S3 region (empty: AWS_DEFAULT_REGION or us-east-1)")
    s3_bucket: str = Field(default="", description="the bucket of the S3 store (required with store=s3)")
    s3_prefix: str = Field(default="", description="key prefix of every artifact in the bucket (e.g. mnemo/)")
    s3_sse: Literal["", "AES256", "aws:kms"] = Field(
        default="", description="server-side encryption of every object written: AES256 or aws:kms"
    )
    s3_sse_kms_key_id: str = Field(
        default="", description="the KMS key of s3_sse=aws:kms (empty: the bucket's default key)"
    )
    s3_presign_seconds: int = Field(
        default=0,
        ge=0,
        le=604800,
        description="> 0: GET /v1/images/{id} answers 307 to a presigned URL valid this long; 0: streamed",
    )

    # The ML side (read by the worker only; the API never loads it).
    backbone: str = Field(default="toy", description="toy | tiny | a local diffusers SD 1.x/2.x folder")
    engine_preset: str = Field(default="toy", description="engine config preset: paper | toy | tiny")
    device: str = Field(
        default="cpu",
        pattern=DEVICE_PATTERN,
        description="torch device of this worker's pool processes: cpu, cuda or cuda:N (one worker per GPU)",
    )

    # HTTP.
    host: str = Field(default="127.0.0.1", description="API bind address")
    port: int = Field(default=8000, ge=1, le=65535, description="API port")

    # Uploads (docs/architecture.md, "Uploads and privacy"). The pixel cap is far below Pillow's
    # MAX_IMAGE_PIXELS (89.5 MP), so Pillow's warn-only decompression-bomb band is rejected too.
    max_upload_bytes: int = Field(default=10 * MiB, ge=1024, description="bytes per uploaded image")
    max_files_per_concept: int = Field(default=20, ge=1, description="images per concept, at most")
    min_files_per_concept: int = Field(default=1, ge=1, description="images per concept, at least")
    max_image_pixels: int = Field(
        default=40_000_000, ge=64, description="width x height per image, checked before decoding"
    )
    min_image_side: int = Field(default=8, ge=1, description="smallest accepted image side (pixels)")
    # Decode work is bounded per request, from the headers; stored images are downscaled to what
    # training uses (it centre-crops and resizes to the backbone's resolution, 512 for SD 1.x):
    # 1024 keeps at least 512 on the shorter side for aspect ratios up to 2:1.
    upload_max_side: int = Field(
        default=1024, ge=16, description="longer side of a stored upload; larger images are downscaled"
    )
    max_request_pixels: int = Field(
        default=200_000_000,
        ge=64,
        description="pixels one upload request may decode, all images together (checked from the headers)",
    )

    # Jobs (docs/architecture.md, "The job protocol").
    job_lease_seconds: int = Field(default=300, ge=5, description="a claimed job's lease")
    job_heartbeat_seconds: int = Field(default=30, ge=1, description="how often a worker extends its lease")
    job_max_attempts: int = Field(default=3, ge=1, description="attempts before a job fails for good")
    train_max_steps: int = Field(default=5000, ge=1, description="largest `steps` a concept upload may ask")

    # Generation limits.
    generate_max_images: int = Field(default=8, ge=1, description="largest `n` of /v1/generate")
    generate_default_steps: int = Field(default=25, ge=1, description="sampling steps when not given")
    generate_max_steps: int = Field(default=150, ge=1, description="largest `steps` of /v1/generate")
    generate_max_wait_seconds: float = Field(default=120.0, ge=0, description="largest honoured `wait`")
    generate_max_prompt_chars: int = Field(default=1000, ge=1, description="longest prompt")

    # Workers and readiness (docs/service.md, "Health, readiness and metrics").
    worker_heartbeat_seconds: float = Field(
        default=10.0,
        gt=0,
        description="how often a worker's main process records itself in `workers`; /readyz counts "
        "a worker seen within 3 of these as live (give the API and the workers the same value)",
    )
    ready_requires_worker: bool = Field(
        default=False,
        description="/readyz answers 503 while no worker is live; `mnemo serve` turns it on for its API",
    )

    # Metrics (docs/service.md, "Health, readiness and metrics").
    metrics_enabled: bool = Field(default=True, description="serve /metrics (false: it answers 404)")
    metrics_token: SecretStr | None = Field(
        default=None,
        description="when set, /metrics requires `Authorization: Bearer <token>` (else it is open)",
    )

    api_key_pepper: SecretStr | None = Field(
        default=None,
        description="server secret in API-key hashes (HMAC-SHA256); default: created once in "
        "<data_dir>/api-key-pepper (mode 0600)",
    )
    events_poll_seconds: float = Field(
        default=0.5, gt=0, description="how often the SSE stream polls the DB for job progress"
    )

    # Quotas and rate limits (docs/service.md, "Quotas and rate limits"): 429 with Retry-After.
    quota_concepts_per_user: int = Field(
        default=100, ge=1, description="concepts an account may have (failed and cancelled ones do not count)"
    )
    quota_unfinished_jobs_per_user: int = Field(
        default=16, ge=1, description="queued or running jobs (trainings and generations) per user"
    )
    quota_images_per_window: int = Field(
        default=256, ge=1, description="images a user may ask /v1/generate for per quota window"
    )
    quota_window_seconds: int = Field(default=3600, ge=1, description="the window of the images quota")
    quota_retry_after_seconds: int = Field(
        default=30, ge=1, description="Retry-After of the unfinished-jobs quota (jobs finish at their pace)"
    )
    auth_failures_per_address: int = Field(
        default=20, ge=1, description="failed API-key attempts per client address before it is locked out"
    )
    auth_lockout_seconds: int = Field(
        default=300, ge=1, description="the window failed attempts are counted in, and the longest lockout"
    )

    # Webhooks (docs/webhooks.md): sent by a relay thread of each worker's main process.
    webhook_allow_private_addresses: bool = Field(
        default=False,
        description="let webhooks reach private, loopback and link-local addresses (SSRF: keep off "
        "unless every user may reach the service's own network)",
    )
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="connect, send and read timeout of one webhook attempt"
    )
    webhook_max_attempts: int = Field(default=8, ge=1, le=30, description="attempts before a delivery fails")
    webhook_retry_base_seconds: float = Field(
        default=10.0, gt=0, description="delay after a first failed attempt, doubled after each (jittered)"
    )
    webhook_retry_max_seconds: float = Field(
        default=3600.0, gt=0, description="longest delay between two attempts of a delivery"
    )
    webhook_relay_interval_seconds: float = Field(
        default=1.0, gt=0, description="how often the relay looks for due deliveries"
    )
    webhook_relay_threads: int = Field(
        default=4, ge=1, le=64, description="deliveries in flight at once (one per webhook at most)"
    )
    webhook_retention_days: int = Field(
        default=7, ge=1, description="finished deliveries are deleted after this many days"
    )

    # API conventions (docs/api.md).
    idempotency_key_seconds: int = Field(
        default=86400,
        ge=60,
        description="how long an Idempotency-Key of POST /v1/concepts and /v1/generate is remembered",
    )
    cors_origins: str = Field(
        default="",
        description="comma-separated origins allowed to call the API from a browser (`*`: any); "
        "empty: no CORS headers",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="log lines of the API and the worker: `text`, or one JSON object each"
    )
    worker_metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="> 0: the worker's main process serves Prometheus metrics on this port; 0: off",
    )

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'mnemo.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"
        if self.store == "s3" and not self.s3_bucket:
            raise ValueError("MNEMO_STORE=s3 needs MNEMO_S3_BUCKET")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_broker(self) -> bool:
        """True when the broker is a server-less kombu transport (embedded mode)."""
        return self.broker_url.startswith(("sqla+", "filesystem:", "memory:"))

    @cached_property
    def pepper(self) -> bytes:
        """The API-key pepper: the configured one, else the one in the data directory (created once)."""
        if self.api_key_pepper is not None and self.api_key_pepper.get_secret_value():
            return self.api_key_pepper.get_secret_value().encode()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / PEPPER_FILE
        if not path.exists():
            # Write a temp file completely, then link it into place: a concurrent reader (the API
            # and the worker start together) sees either no file or the whole pepper.
            fd, temp = tempfile.mkstemp(dir=self.data_dir, prefix=".pepper-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(secrets.token_hex(32).encode())
                    handle.flush()
                    os.fsync(handle.fileno())
                with contextlib.suppress(FileExistsError):
                    os.link(temp, path)
            finally:
                os.unlink(temp)
        pepper = path.read_bytes().strip()
        if len(pepper) < 32:
            raise ValueError(f"{path} holds no usable API-key pepper")
        return pepper


def settings_reference() -> list[tuple[str, str, str]]:
    """``(environment variable, default, description)`` for every setting (for docs and ``--help``)."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = "" if field.default in (None, "") else str(field.default)
        rows.append((f"MNEMO_{name.upper()}", default, field.description or ""))
    return rows


def get_settings() -> Settings:
    """Settings from the environment (a fresh object: cheap, and tests can change the env)."""
    return Settings()
