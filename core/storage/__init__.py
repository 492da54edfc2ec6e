"""The artifact store: the ``ArtifactStore`` protocol, its two backends, and the factory.

Every process builds its store with ``make_store(settings)``; nothing else names a backend
(docs/architecture.md, "Storage"): ``LocalStore`` (the data directory, the default) and
``S3Store`` (an S3-compatible bucket, ``MNEMO_STORE=s3``; boto3 is imported only then).
"""

from __future__ import annotations

from core.settings import Settings
from core.storage.base import (
    ArtifactStore,
    StorageError,
    StoredFile,
    manifest_sha256,
    sha256_bytes,
    sha256_file,
)
from core.storage.local import LocalStore

__all__ = [
    "ArtifactStore",
    "LocalStore",
    "StorageError",
    "StoredFile",
    "make_store",
    "manifest_sha256",
    "sha256_bytes",
    "sha256_file",
]


def make_store(settings: Settings) -> ArtifactStore:
    """The store of this deployment: the data directory (``MNEMO_DATA_DIR``), or the bucket of
    ``MNEMO_S3_*`` when ``MNEMO_STORE=s3``."""
    if settings.store == "s3":
        from core.storage.s3 import S3Store

        return S3Store.from_settings(settings)
    return LocalStore(settings.data_dir)
