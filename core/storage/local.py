"""The local artifact store: a directory tree rooted at the data directory.

Writes are atomic and durable: a temporary file in the same directory, fsync, ``os.replace``, then
an fsync of the directory (a rename is atomic but not durable until its directory is synced;
docs/architecture.md, "Storage"). A folder is put into place the same way, by one rename.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.storage.base import (
    CHUNK,
    STAGING,
    UPLOADS,
    ArtifactStore,
    StorageError,
    StoredFile,
    check_relative,
    sha256_bytes,
    sha256_file,
)

TEMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(ArtifactStore):
    """Files of the service under one root directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()

    def resolve(self, relative: str) -> Path:
        """The absolute path of a stored relative path; refuses anything outside the root."""
        path = self.root.joinpath(*check_relative(relative))
        if not path.resolve().is_relative_to(self.root):
            raise StorageError("stored path escapes the store")
        return path

    # ---- writing ---------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> StoredFile:
        """Write ``data`` atomically and durably at ``relative`` (replacing any previous file)."""
        path = self.resolve(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
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
        """Move a finished stored folder (e.g. staging) into place atomically, durably.

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

    def put_dir(self, local: Path, destination: str) -> None:
        """Store a local folder: renamed into place when it lies below the root, else copied into
        ``staging/`` first and renamed from there."""
        local = Path(local).resolve()
        if local.is_relative_to(self.root):
            self.publish_dir(local.relative_to(self.root).as_posix(), destination)
            return
        staged = f"{STAGING}/{TEMP_PREFIX}{uuid.uuid4()}"
        try:
            shutil.copytree(local, self.resolve(staged))
            self.publish_dir(staged, destination)
        finally:
            self.delete(staged)
        shutil.rmtree(local)

    # ---- reading ---------------------------------------------------------------------------
    def read_bytes(self, relative: str) -> bytes:
        return self.resolve(relative).read_bytes()

    def stream(self, relative: str) -> Iterator[bytes]:
        """The file in chunks of ``CHUNK`` bytes, opened now."""
        handle = self.resolve(relative).open("rb")

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(CHUNK):
                    yield chunk

        return chunks()

    def exists(self, relative: str) -> bool:
        return self.resolve(relative).exists()

    def describe_dir(self, relative: str) -> dict[str, dict[str, Any]]:
        """``{relative file name: {"sha256", "bytes"}}`` of every file below a directory."""
        base = self.resolve(relative)
        return {
            file.relative_to(base).as_posix(): {"sha256": sha256_file(file), "bytes": file.stat().st_size}
            for file in sorted(p for p in base.rglob("*") if p.is_file())
        }

    def get_dir(self, relative: str, local: Path) -> None:
        """Copy a stored folder into the new local folder ``local`` (empty if nothing is stored there)."""
        source = self.resolve(relative)
        if source.is_dir():
            shutil.copytree(source, local)
        else:
            Path(local).mkdir(parents=True)

    def old_entries(
        self, prefix: str, *, depth: int, older_than: float, include_temp: bool = False
    ) -> list[str]:
        """Entries ``depth`` levels below ``prefix`` whose mtime is before ``older_than`` (temporary
        files too when ``include_temp``)."""
        base = self.resolve(prefix)
        if not base.is_dir():
            return []
        pattern = "/".join(["*"] * depth)
        return [
            path.relative_to(self.root).as_posix()
            for path in base.glob(pattern)
            if path.lstat().st_mtime < older_than and (include_temp or not path.name.startswith(TEMP_PREFIX))
        ]

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
