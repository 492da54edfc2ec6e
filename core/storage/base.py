"""The artifact store protocol: what every storage backend offers, and the layout of stored paths.

All paths stored in the database are relative to the store (docs/architecture.md, "Storage"):

    uploads/<uuid>                   re-encoded raw training images (PNG bytes), deleted after the task
    staging/<job_id>/                a worker's unpublished output
    adapters/<user_id>/<version_id>/ one immutable published adapter version (+ Fisher, tokens, state)
    images/<uuid>.png                generated images
    checkpoints/<job_id>/            resumable training checkpoints

Ids in paths must be UUIDs: no user-supplied name ever becomes part of a path. The layout is the
same for every backend; a backend subclasses ``ArtifactStore`` to inherit it and implements the
rest. ``core.storage.make_store(settings)`` builds the one in use.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

UPLOADS = "uploads"
STAGING = "staging"
ADAPTERS = "adapters"
IMAGES = "images"
CHECKPOINTS = "checkpoints"
CHUNK = 1024 * 1024


class StorageError(Exception):
    """A path outside the store, or a file that did not go away."""


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the store root
    sha256: str
    bytes: int


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_sha256(files: dict[str, dict[str, Any]]) -> str:
    """The sha256 of an adapter version's manifest ``{name: {sha256, bytes}}`` (canonical JSON)."""
    canonical = json.dumps(
        {name: {"sha256": meta["sha256"], "bytes": int(meta["bytes"])} for name, meta in files.items()},
        sort_keys=True,
        separators=(",", ":"),
    )
    return sha256_bytes(canonical.encode())


def check_relative(relative: str) -> list[str]:
    """The parts of a stored relative path; ``StorageError`` for anything that could leave the
    store (absolute, ``..``, ``.``, empty parts, backslashes, NUL)."""
    parts = relative.split("/")
    if not relative or "\\" in relative or "\x00" in relative or any(p in ("", ".", "..") for p in parts):
        raise StorageError("invalid stored path")
    return parts


def _check_id(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise StorageError(f"{what} is not a UUID") from None


class ArtifactStore(Protocol):
    """Files of the service by relative path: the layout (shared) and the operations (per backend)."""

    remote: bool = False  # reached over the network: /readyz checks it (``check``)

    # ---- layout ----------------------------------------------------------------------------
    @staticmethod
    def new_upload_path() -> str:
        return f"{UPLOADS}/{uuid.uuid4()}"

    @staticmethod
    def new_image_path() -> str:
        return f"{IMAGES}/{uuid.uuid4()}.png"

    @staticmethod
    def adapter_dir(*, user_id: str, version_id: str) -> str:
        return f"{ADAPTERS}/{_check_id(user_id, 'user id')}/{_check_id(version_id, 'version id')}"

    @staticmethod
    def user_adapters_dir(*, user_id: str) -> str:
        return f"{ADAPTERS}/{_check_id(user_id, 'user id')}"

    @staticmethod
    def staging_dir(*, job_id: str) -> str:
        return f"{STAGING}/{_check_id(job_id, 'job id')}"

    @staticmethod
    def checkpoint_dir(*, job_id: str) -> str:
        return f"{CHECKPOINTS}/{_check_id(job_id, 'job id')}"

    # ---- operations --------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> StoredFile:
        """Write ``data`` atomically and durably at ``relative`` (replacing any previous file)."""
        ...

    def read_bytes(self, relative: str) -> bytes:
        """The stored file's bytes; ``FileNotFoundError`` when it is not there."""
        ...

    def stream(self, relative: str) -> Iterator[bytes]:
        """The stored file in chunks, opened now (``FileNotFoundError`` at once when it is not
        there), read as the iterator is consumed."""
        return iter([self.read_bytes(relative)])

    def check(self) -> None:
        """Raise when the store cannot be used (a remote store: its bucket is not reachable)."""

    def download_url(self, relative: str, *, expires_seconds: int) -> str | None:
        """A URL a client may fetch the file from directly for ``expires_seconds``, or None when
        the backend has none (the API streams the file instead)."""
        return None

    def exists(self, relative: str) -> bool: ...

    def delete(self, relative: str) -> None:
        """Remove a file or a folder; idempotent; ``StorageError`` if anything is left."""
        ...

    def delete_many(self, relatives: list[str]) -> None:
        for relative in relatives:
            self.delete(relative)

    def describe_dir(self, relative: str) -> dict[str, dict[str, Any]]:
        """``{file name relative to the folder: {"sha256", "bytes"}}`` of every file below it."""
        ...

    def put_dir(self, local: Path, destination: str) -> None:
        """Store the local folder ``local`` at ``destination`` as a whole: readers see all of it or
        nothing; ``local`` is gone afterwards."""
        ...

    def get_dir(self, relative: str, local: Path) -> None:
        """Copy the stored folder ``relative`` into the new local folder ``local`` (an empty folder
        when nothing is stored below ``relative``)."""
        ...

    def old_entries(
        self, prefix: str, *, depth: int, older_than: float, include_temp: bool = False
    ) -> list[str]:
        """Entries ``depth`` levels below ``prefix`` last changed before the timestamp ``older_than``
        (temporary files of writes in flight excluded unless ``include_temp``: an old one is the
        leftover of a write that was killed)."""
        ...

    def raw_upload_bytes_remain(self, paths: list[str] | None = None) -> bool:
        """True if any raw upload remains (all of them, or only those in ``paths``)."""
        ...
