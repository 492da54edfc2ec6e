"""Per-process resources of a worker: settings, DB sessions, the store, the workspace, the backbone.

Everything here is created lazily, on first use, *inside the pool child* that runs a task:
the prefork parent never imports torch or touches CUDA (CUDA is not fork-safe,
docs/architecture.md, "Processes"), and each child loads the backbone once and keeps it for all
the tasks it runs. User states are cached by their lineage (versions are immutable), so
repeated generation for a user does not reload files.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from core.db.models import AdapterVersion, utcnow
from core.db.session import make_session_factory
from core.db.workers import WorkerInfo
from core.settings import Settings, get_settings
from core.storage import ArtifactStore, make_store, sha256_file
from worker.workspace import Workspace

if TYPE_CHECKING:
    from core.engine.backbone import Backbone
    from core.engine.config import EngineConfig
    from core.engine.state import UserState

STATE_CACHE_SIZE = 16
log = logging.getLogger(__name__)


class CorruptVersionError(RuntimeError):
    """A published adapter file is missing or does not match its recorded sha256."""


@dataclass
class Runtime:
    """The resources of one worker process (one per pool child)."""

    settings: Settings
    # The time the job protocol's leases are read against (claims, heartbeats, outcomes): the
    # wall clock; a model of the protocol drives its own (docs/architecture.md, "The job protocol").
    clock: Callable[[], datetime] = utcnow

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.settings.database_url)

    @cached_property
    def store(self) -> ArtifactStore:
        return make_store(self.settings)

    @cached_property
    def workspace(self) -> Workspace:
        """The local files the engine reads and writes (``worker.workspace``)."""
        return Workspace(root=self.settings.data_dir)

    @cached_property
    def worker_id(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    @cached_property
    def worker_info(self) -> WorkerInfo:
        """This pool process as the dashboard lists it (``core.db.workers``)."""
        s = self.settings
        return WorkerInfo(
            worker_id=self.worker_id,
            role="pool",
            device=s.device,
            backbone=s.backbone,
            preset=s.engine_preset,
        )

    @cached_property
    def backbone(self) -> Backbone:
        """The backbone, loaded once per process (first task), on ``settings.device``."""
        from core.engine.backbone import load_backbone

        started = time.perf_counter()
        backbone = load_backbone(self.settings.backbone, device=self.settings.device)
        log.info(
            "backbone %s loaded on %s in %.1f s (pid %d)",
            backbone.name,
            self.settings.device,
            time.perf_counter() - started,
            os.getpid(),
        )
        return backbone

    @cached_property
    def engine_config(self) -> EngineConfig:
        from core.engine.config import PRESETS

        try:
            return PRESETS[self.settings.engine_preset]
        except KeyError:
            raise ValueError(
                f"unknown MNEMO_ENGINE_PRESET {self.settings.engine_preset!r}; known: {', '.join(PRESETS)}"
            ) from None

    @property
    def prior_cache_dir(self) -> Path:
        """Shared prior-concept images (generated from the prior prompt; not user data)."""
        name = Path(self.settings.backbone).name or "backbone"
        return self.settings.data_dir / "prior-cache" / f"{name}-{self.settings.engine_preset}"

    @cached_property
    def _states(self) -> OrderedDict[tuple[str, ...], UserState]:
        return OrderedDict()

    def load_user_state(self, versions: list[AdapterVersion]) -> UserState:
        """The user's state from their lineage (oldest first), verified against the recorded sha256."""
        from core.engine.state import UserState, load_state

        key = tuple(v.id for v in versions)
        if not key:
            return UserState.empty()
        cached = self._states.get(key)
        if cached is not None:
            self._states.move_to_end(key)
            return cached
        with ExitStack() as staged:
            directories = [staged.enter_context(self.staged_version(v)) for v in versions]
            state = load_state(directories)
        self._states[key] = state
        while len(self._states) > STATE_CACHE_SIZE:
            self._states.popitem(last=False)
        return state

    @cached_property
    def _feature_extractors(self) -> dict[str, Any]:
        return {}

    def preview_features(self, spec: str) -> Any:
        """The feature extractor of the preview retention score, loaded once per process."""
        from core.engine.metrics.features import load_feature_extractor

        if spec not in self._feature_extractors:
            self._feature_extractors[spec] = load_feature_extractor(spec, device=self.settings.device)
        return self._feature_extractors[spec]

    @contextmanager
    def staged_version(self, version: AdapterVersion) -> Iterator[Path]:
        """A local copy of an adapter version, every file checked against its recorded sha256."""
        with self.workspace.staged(self.store, version.path) as directory:
            for name, meta in version.files.items():
                path = directory / name
                if not path.is_file() or sha256_file(path) != meta["sha256"]:
                    raise CorruptVersionError(f"adapter version {version.id} has a missing or altered file")
            yield directory

    def forget(self) -> None:
        """Drop cached user states (tests; account erasure)."""
        self._states.clear()


_lock = threading.Lock()
_runtime: Runtime | None = None
_runtime_pid: int | None = None


def get_runtime() -> Runtime:
    """This process's runtime (re-created after a fork, so a child never reuses its parent's)."""
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            _runtime = Runtime(settings=get_settings())
            _runtime_pid = os.getpid()
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install a runtime for this process (used by tests and the benchmark)."""
    global _runtime, _runtime_pid
    with _lock:
        _runtime, _runtime_pid = runtime, os.getpid() if runtime is not None else None


def describe(runtime: Runtime) -> dict[str, Any]:
    return {
        "worker_id": runtime.worker_id,
        "backbone": runtime.settings.backbone,
        "preset": runtime.settings.engine_preset,
        "device": runtime.settings.device,
    }
