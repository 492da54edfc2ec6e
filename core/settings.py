"""Service settings, read from the environment (prefix ``MNEMO_``) or passed in code.

Every field can be set as ``MNEMO_<FIELD>`` (e.g. ``MNEMO_DATA_DIR=/srv/mnemo``,
``MNEMO_DATABASE_URL=postgresql+psycopg://mnemo@db/mnemo``,
``MNEMO_BROKER_URL=redis://localhost:6379/0``).

The embedded default needs no server at all: SQLite in ``<data_dir>/mnemo.db`` and a
Celery broker on kombu's SQLAlchemy transport in ``<data_dir>/broker.sqlite``
(``sqla+sqlite:///...``), with the toy backbone shipped in the repository.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
PEPPER_FILE = "api-key-pepper"


class Settings(BaseSettings):
    """All knobs of the service. Paths are resolved to absolute paths at construction."""

    model_config = SettingsConfigDict(env_prefix="MNEMO_", extra="ignore")

    # Where everything lives: SQLite DB, broker (embedded), uploads, adapters, images, checkpoints.
    data_dir: Path = Path("./mnemo-data")
    # SQLAlchemy URL; default ``sqlite:///<data_dir>/mnemo.db``.
    database_url: str = ""
    # Celery broker URL; default ``sqla+sqlite:///<data_dir>/broker.sqlite`` (no server needed).
    broker_url: str = ""

    # The ML side (read by the worker only; the API never loads it).
    backbone: str = "toy"
    engine_preset: str = "toy"
    device: str = "cpu"

    # HTTP.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Uploads (DESIGN.md §7). The pixel cap is far below Pillow's MAX_IMAGE_PIXELS (89.5 MP),
    # so Pillow's warn-only decompression-bomb band is rejected too.
    max_upload_bytes: int = Field(default=10 * MiB, ge=1024)
    max_files_per_concept: int = Field(default=20, ge=1)
    min_files_per_concept: int = Field(default=1, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=64)
    min_image_side: int = Field(default=8, ge=1)

    # Jobs (DESIGN.md §6).
    job_lease_seconds: int = Field(default=300, ge=5)
    job_heartbeat_seconds: int = Field(default=30, ge=1)
    job_max_attempts: int = Field(default=3, ge=1)
    train_max_steps: int = Field(default=5000, ge=1)

    # Generation limits.
    generate_max_images: int = Field(default=8, ge=1)
    generate_default_steps: int = Field(default=25, ge=1)
    generate_max_steps: int = Field(default=150, ge=1)
    generate_max_wait_seconds: float = Field(default=120.0, ge=0)
    generate_max_prompt_chars: int = Field(default=1000, ge=1)

    # Server-side secret mixed into API-key hashes (HMAC-SHA256). When unset, a random one
    # is created once in ``<data_dir>/api-key-pepper`` (mode 0600) and reused.
    api_key_pepper: SecretStr | None = None

    # Server-sent events: how often the DB is polled for job progress.
    events_poll_seconds: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'mnemo.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"
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
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_hex(32).encode())
            handle.flush()
            os.fsync(handle.fileno())
        return path.read_bytes().strip()


def get_settings() -> Settings:
    """Settings from the environment (a fresh object: cheap, and tests can change the env)."""
    return Settings()
