"""The presence heartbeat of a worker's main process: its ``main`` row in ``workers``.

A daemon thread of the main process (which never imports torch) touches the row at once and then
every ``worker_heartbeat_seconds``, whether or not the reconciler runs in this worker; ``/readyz``
counts the rows seen recently as live workers (``core.db.workers.live_workers``) and the dashboard
lists them. Started and stopped by the worker's lifecycle signals (``worker.signals``).
"""

from __future__ import annotations

import logging
import os
import socket

from core.db.session import make_session_factory
from core.db.workers import WorkerInfo, touch_worker
from core.settings import Settings
from worker.loops import DaemonLoop

log = logging.getLogger(__name__)


def main_info(settings: Settings) -> WorkerInfo:
    """This worker's main process as the dashboard lists it."""
    return WorkerInfo(
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        role="main",
        device=settings.device,
        backbone=settings.backbone,
        preset=settings.engine_preset,
    )


class Presence(DaemonLoop):
    """Touches this main process's row every ``interval`` seconds until ``stop()``."""

    thread_name = "mnemo-presence"

    def __init__(self, *, settings: Settings, interval: float | None = None) -> None:
        self.settings = settings
        self.interval = interval if interval is not None else settings.worker_heartbeat_seconds
        super().__init__()

    def _run(self) -> None:
        session_factory = make_session_factory(self.settings.database_url)
        info = main_info(self.settings)
        try:
            while True:
                try:
                    touch_worker(session_factory, info=info, current_job_id=None)
                except Exception as error:  # the database is down: not live until it is back
                    log.warning("worker heartbeat failed: %s", type(error).__name__)
                if self._stop.wait(self.interval):
                    return
        finally:
            session_factory.kw["bind"].dispose()
