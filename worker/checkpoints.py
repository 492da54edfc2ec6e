"""A running task's checkpoint in the store, so that an attempt on another host resumes it.

The engine writes ``task.ckpt`` atomically into this host's workspace, ``checkpoints/<job>/``
(``core.engine.checkpoint``). With the local store that folder *is* the stored one and nothing
here does anything. With an object store, ``CheckpointMirror`` copies the file to the same path
in the store whenever it changed — checked at each progress report, one ``stat`` — and an attempt
that starts on a host without it fetches it first (docs/architecture.md, "Storage").

The copy is best effort: a checkpoint that did not reach the store costs a re-run of those
steps, never correctness — the engine resumes only from a checkpoint of this very task (its
fingerprint) and restarts from step 0 otherwise. The stored copy goes with the job's other
output once the job is final (``core.db.cleanup.job_output_paths``) or its account is erased.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.storage import ArtifactStore
from worker.workspace import Workspace

CHECKPOINT_FILE = "task.ckpt"  # the name core.engine.checkpoint writes (that module imports torch)
log = logging.getLogger(__name__)


@dataclass
class CheckpointMirror:
    store: ArtifactStore
    workspace: Workspace
    job_id: str
    _copied: int | None = None  # mtime (ns) of the local checkpoint last copied either way

    @property
    def folder(self) -> Path:
        """The local checkpoint folder the engine reads and writes."""
        return self.workspace.path(self.store.checkpoint_dir(job_id=self.job_id))

    @property
    def _stored(self) -> str:
        return f"{self.store.checkpoint_dir(job_id=self.job_id)}/{CHECKPOINT_FILE}"

    @property
    def _active(self) -> bool:
        return not self.workspace.is_store(self.store)

    def restore(self) -> Path:
        """The local checkpoint folder, with the stored checkpoint in it when this host has none."""
        local = self.folder / CHECKPOINT_FILE
        if self._active and not local.exists():
            try:
                data = self.store.read_bytes(self._stored)
            except FileNotFoundError:
                return self.folder
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = local.with_name(f".{CHECKPOINT_FILE}.{os.getpid()}.restore")
            partial.write_bytes(data)
            os.replace(partial, local)
            self._copied = local.stat().st_mtime_ns
            log.info("job %s: checkpoint fetched from the store (%d bytes)", self.job_id, len(data))
        return self.folder

    def watch(self, progress: Callable[..., Any]) -> Callable[..., Any]:
        """``progress`` that first copies a new checkpoint into the store."""

        def report(*args: Any) -> Any:
            self.push()
            return progress(*args)

        return report

    def push(self) -> bool:
        """Copy the local checkpoint into the store if it changed since the last copy."""
        local = self.folder / CHECKPOINT_FILE
        try:
            changed = local.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        if not self._active or changed == self._copied:
            return False
        try:
            self.store.write_bytes(self._stored, local.read_bytes())
        except Exception as error:  # the store is unreachable: the next change tries again
            log.warning("job %s: checkpoint not copied to the store (%s)", self.job_id, type(error).__name__)
            return False
        self._copied = changed
        return True
