"""The artifact store: the ``ArtifactStore`` protocol, its local implementation, and the factory.

Every process builds its store with ``make_store(settings)``; nothing else names a backend, so a
new backend (an object store) is one new class here (docs/architecture.md, "Storage").
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
    """The store of this deployment: the data directory (``MNEMO_DATA_DIR``)."""
    return LocalStore(settings.data_dir)
