"""The worker's local working directory: the plain files the engine reads and writes.

The engine works on local paths only, whatever the store is (docs/architecture.md, "Storage").
What it needs is staged here: the user's adapter versions, copied out of the store and verified
against their recorded sha256 before they are loaded (and removed right after); the new version,
written here and then put into the store; the checkpoints of a running task, so a re-run on this
machine resumes. The root is the data directory and the layout follows the store's
(``checkpoints/<job>``, ``staging/<job>``): with the local store, putting a version is a rename and
the orphan collection finds a crash's leftovers; staged versions live under ``work/``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.storage import ArtifactStore

STAGED = "work"


@dataclass(frozen=True)
class Workspace:
    root: Path

    def path(self, relative: str) -> Path:
        """The local folder of a layout path (``store.checkpoint_dir(...)``, ``store.staging_dir(...)``)."""
        return self.root.joinpath(*relative.split("/"))

    def fresh(self, relative: str) -> Path:
        """``path(relative)``, emptied: the place to write a new result."""
        folder = self.path(relative)
        shutil.rmtree(folder, ignore_errors=True)
        return folder

    @contextmanager
    def staged(self, store: ArtifactStore, relative: str) -> Iterator[Path]:
        """A local copy of the stored folder ``relative`` for the duration of the block."""
        folder = self.root / STAGED / str(uuid.uuid4())
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            store.get_dir(relative, folder)
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def sweep(self, *, older_than_seconds: float) -> list[Path]:
        """Remove staged copies a crashed process left behind (older than ``older_than_seconds``)."""
        base = self.root / STAGED
        cutoff = time.time() - older_than_seconds
        stale = [p for p in base.iterdir() if p.lstat().st_mtime < cutoff] if base.is_dir() else []
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
        return stale
