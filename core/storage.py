"""The artifact store: a local-filesystem tree rooted at the data directory.

Layout (all paths stored in the DB are relative to the root):

    uploads/<uuid>                   re-encoded raw training images (PNG bytes), deleted after the task
    staging/<job_id>/                a worker's unpublished output
    adapters/<user_id>/<version_id>/ one immutable published adapter version (+ Fisher, tokens, state)
    images/<uuid>.png                generated images
    checkpoints/<job_id>/            resumable training checkpoints

Writes are atomic and durable (temp file in the same directory, fsync, ``os.replace``, fsync of
the directory; docs/architecture.md, "Storage"). No user-supplied name ever becomes part of a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_id(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise StorageError(f"{what} is not a UUID") from None


class ArtifactStore:
    """Files of the service under one root directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    # ---- paths -----------------------------------------------------------------------------
    def resolve(self, relative: str) -> Path:
        """The absolute path of a stored relative path; refuses anything outside the root."""
        parts = relative.split("/")
        if not relative or "\\" in relative or "\x00" in relative or any(p in ("", ".", "..") for p in parts):
            raise StorageError("invalid stored path")
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root):
            raise StorageError("stored path escapes the store")
        return path

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

    # ---- writing ---------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> StoredFile:
        """Write ``data`` atomically and durably at ``relative`` (replacing any previous file)."""
        path = self.resolve(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return StoredFile(path=relative, sha256=sha256_bytes(data), bytes=len(data))

    def publish_dir(self, source: str, destination: str) -> None:
        """Move a finished directory (e.g. staging) into place atomically, durably.

        Every file below ``source`` is fsynced first; the rename is atomic on one filesystem.
        """
        src, dst = self.resolve(source), self.resolve(destination)
        for file in sorted(p for p in src.rglob("*") if p.is_file()):
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        fsync_dir(dst.parent)
        fsync_dir(src.parent)

    def describe_dir(self, relative: str) -> dict[str, dict[str, Any]]:
        """``{relative file name: {"sha256", "bytes"}}`` of every file below a directory."""
        base = self.resolve(relative)
        return {
            file.relative_to(base).as_posix(): {"sha256": sha256_file(file), "bytes": file.stat().st_size}
            for file in sorted(p for p in base.rglob("*") if p.is_file())
        }

    def read_bytes(self, relative: str) -> bytes:
        return self.resolve(relative).read_bytes()

    def exists(self, relative: str) -> bool:
        return self.resolve(relative).exists()

    # ---- deleting --------------------------------------------------------------------------
    def delete(self, relative: str) -> None:
        """Remove a file or a directory tree; idempotent; raises if anything is left."""
        path = self.resolve(relative)
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():  # a second pass for files created during the first
                shutil.rmtree(path)
        if path.exists() or path.is_symlink():
            raise StorageError("a deleted path is still present")
        if path.parent.exists():
            fsync_dir(path.parent)

    def delete_many(self, relatives: list[str]) -> None:
        for relative in relatives:
            self.delete(relative)

    # ---- privacy checks --------------------------------------------------------------------
    def iter_raw_upload_files(self) -> Iterator[Path]:
        """Every file under ``uploads/`` (raw training images not yet deleted), temp files included."""
        base = self.root / UPLOADS
        if base.exists():
            yield from (p for p in base.rglob("*") if p.is_file() or p.is_symlink())

    def raw_upload_bytes_remain(self, paths: list[str] | None = None) -> bool:
        """True if any raw upload file remains (all of them, or only those in ``paths``)."""
        if paths is None:
            return any(True for _ in self.iter_raw_upload_files())
        return any(self.resolve(relative).exists() for relative in paths)
