"""Mid-task checkpoints: written atomically (temp + fsync + rename), resumed exactly.

A checkpoint holds trainable tensors, optimiser state, the task's random generator,
accumulators and the outputs of finished phases — never images or latents, which
are recomputed from the (still present) uploads on resume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from core.faults import crash_point

FILENAME = "task.ckpt"


class Checkpointer:
    def __init__(self, directory: Path | None, *, fingerprint: str):
        self.path = Path(directory) / FILENAME if directory is not None else None
        self.fingerprint = fingerprint

    def load(self) -> dict[str, Any] | None:
        """The saved checkpoint of this same task, or None (absent, foreign or unreadable)."""
        if self.path is None or not self.path.exists():
            return None
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign file is ignored, the task restarts cleanly
            return None
        return data if data.get("fingerprint") == self.fingerprint else None

    def save(self, data: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{FILENAME}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            torch.save({**data, "fingerprint": self.fingerprint}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        crash_point("train.checkpoint.mid_write")
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def clear(self) -> None:
        if self.path is not None and self.path.exists():
            self.path.unlink()
