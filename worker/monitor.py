"""The heartbeat of a running attempt: lease extension, progress, cancel and lease-loss flags.

The engine reports progress on every step (``progress(phase, step, total, loss)``) and asks
``should_stop()`` between steps; both only touch memory. A background thread writes the
newest progress to the job row at most every ``progress_interval`` seconds and extends the
lease (fenced by the attempt's token); it raises the stop flag when the user cancelled or
when the lease was lost to another attempt (docs/architecture.md, "The job protocol").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.db.jobs import heartbeat
from core.db.models import utcnow
from core.db.workers import WorkerInfo, touch_worker
from worker.curves import LossCurves
from worker.metrics import mark_phase

log = logging.getLogger(__name__)


class JobMonitor:
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        job_id: str,
        fencing_token: int,
        lease_seconds: float,
        heartbeat_seconds: float,
        progress_interval: float = 1.0,
        worker: WorkerInfo | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session_factory = session_factory
        self.job_id = job_id
        self.fencing_token = fencing_token
        self.lease_seconds = lease_seconds
        # Extend the lease well before it runs out, whatever the configured cadence.
        self.heartbeat_seconds = max(0.2, min(heartbeat_seconds, lease_seconds / 3))
        self.progress_interval = progress_interval
        self.worker = worker
        self.clock = clock  # the time leases are extended from (``worker.runtime.Runtime.clock``)
        self.cancel_requested = False
        self.lease_lost = False
        self.curves = LossCurves()
        self._progress: dict[str, Any] | None = None
        self._dirty = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and by the first report of a phase
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    # ---- engine callbacks (memory only) --------------------------------------------------------
    def progress(self, phase: str, step: int, total: int, loss: float | None) -> None:
        mark_phase(phase)  # seconds per phase (worker.metrics)
        with self._lock:
            if self._progress is None or self._progress["phase"] != phase:
                self._wake.set()  # a new phase is written at once, not at the next tick
            self._progress = {
                "phase": phase,
                "step": int(step),
                "total": int(total),
                "loss": None if loss is None else float(loss),
            }
            self.curves.add(phase, step, total, loss)
            self._dirty = True

    def loss_curves(self) -> dict[str, list[list[float]]]:
        """The downsampled curves so far (``worker.curves``)."""
        with self._lock:
            return self.curves.snapshot()

    def should_stop(self) -> bool:
        return self.cancel_requested or self.lease_lost

    # ---- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> JobMonitor:
        self._touch_worker(self.job_id)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the thread (what ends the attempt — publish, fail, cancel — writes the job's last state)."""
        already = self._stop.is_set()
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if not already:
            self._touch_worker(None)

    def _touch_worker(self, job_id: str | None) -> None:
        """Best effort: the dashboard's list of workers must never fail a job."""
        if self.worker is None:
            return
        try:
            touch_worker(self.session_factory, info=self.worker, current_job_id=job_id)
        except Exception as error:
            log.info("worker row not updated: %s", type(error).__name__)

    def beat(self) -> None:
        """One heartbeat now (also called by the thread)."""
        with self._lock:
            progress = self._progress if self._dirty else None
            curves = self.curves.snapshot() if self._dirty else None
            self._dirty = False
        try:
            result = heartbeat(
                self.session_factory,
                job_id=self.job_id,
                fencing_token=self.fencing_token,
                lease_seconds=self.lease_seconds,
                progress=progress,
                loss_curves=curves or None,
                now=self.clock(),
            )
        except Exception as error:  # a DB blip: keep training, try again at the next beat
            log.warning("heartbeat failed for job %s: %s", self.job_id, type(error).__name__)
            with self._lock:
                self._dirty = self._dirty or progress is not None
            return
        self.cancel_requested = self.cancel_requested or result.cancel_requested
        if not result.alive:
            self.lease_lost = True

    def _run(self) -> None:
        last_lease = time.monotonic()
        tick = min(self.progress_interval, self.heartbeat_seconds)
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            if self._stop.is_set():
                return
            due = time.monotonic() - last_lease >= self.heartbeat_seconds
            if due or self._dirty:
                self.beat()
                last_lease = time.monotonic()
            if due:
                self._touch_worker(self.job_id)
            if self.lease_lost:
                return
