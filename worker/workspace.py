"""The worker's local working directory: the plain files the engine reads and writes.

The engine works on local paths only, whatever the store is (docs/architecture.md, "Storage").
What it needs is staged here: the user's adapter versions, copied out of the store and verified
against their recorded sha256 before they are loaded (and removed right after); the new version,
written here and then put into the store; the checkpoints of a running task, so a re-run on this
machine resumes. The root is the data directory and the layout follows the store's
(``checkpoints/<job>``, ``staging/<job>``): with the local store the workspace *is* the store
(putting a version is a rename, and the orphan collection finds a crash's leftovers); with an
object store it is this host's scratch space, cleaned by ``forget_job`` when a job is final and
swept by the reconciler as ``files``. Staged versions live under ``work/``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.db.cleanup import job_output_paths
from core.storage import ArtifactStore, LocalStore

STAGED = "work"


@dataclass(frozen=True)
class Workspace:
    root: Path

    def path(self, relative: str) -> Path:
        """The local folder of a layout path (``store.checkpoint_dir(...)``, ``store.staging_dir(...)``)."""
        return self.root.joinpath(*relative.split("/"))

    @property
    def files(self) -> LocalStore:
        """The workspace as a store (for the orphan collection of this host's leftovers)."""
        return LocalStore(self.root)

    def is_store(self, store: ArtifactStore) -> bool:
        """True when ``store`` keeps its files in this very directory (the local store)."""
        return isinstance(store, LocalStore) and store.root == self.files.root

    def forget_job(self, store: ArtifactStore, *, job_id: str) -> None:
        """Remove this host's checkpoints and staging output of a final job."""
        for relative in job_output_paths(store, job_id=job_id):
            shutil.rmtree(self.path(relative), ignore_errors=True)

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
