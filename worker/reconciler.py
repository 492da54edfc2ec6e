"""The reconciler: re-sends lost work, finishes interrupted deletions, removes crash leftovers.

``reconcile_once`` is a plain function (tests, ``mnemo`` admin use); ``Reconciler`` runs it
every few seconds in a daemon thread of the worker's main process — which never imports
torch — and is started by the ``worker_ready`` signal (``worker.signals``).
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.orm import Session, sessionmaker

from core.db.jobs import ReconcileReport, collect_orphans, reconcile
from core.db.session import make_session_factory
from core.db.workers import prune_workers
from core.queue.outbox import flush_outbox
from core.settings import Settings
from core.storage import ArtifactStore, make_store
from worker.loops import DaemonLoop
from worker.workspace import Workspace

log = logging.getLogger(__name__)


def redispatch_after_seconds(settings: Settings) -> float:
    """How long a runnable queued job may go without a message before it is re-sent."""
    return float(max(settings.job_lease_seconds, 30))


def interval_seconds(settings: Settings) -> float:
    """How often the reconciler runs: often enough to notice an expired lease quickly."""
    return float(min(max(settings.job_lease_seconds / 2, 1.0), 30.0))


ORPHAN_AGE_SECONDS = 3600.0
ORPHAN_SWEEP_EVERY_SECONDS = 600.0


def collect_orphans_once(
    *, session_factory: sessionmaker[Session], settings: Settings, store: ArtifactStore | None = None
) -> list[str]:
    """Delete crash leftovers older than an hour (``core.db.jobs.collect_orphans``) in the store,
    in this host's workspace when it is not the store (an object store), and copies staged there."""
    store, workspace = store or make_store(settings), Workspace(root=settings.data_dir)
    removed = collect_orphans(session_factory, store, older_than_seconds=ORPHAN_AGE_SECONDS)
    if not workspace.is_store(store):
        removed += collect_orphans(session_factory, workspace.files, older_than_seconds=ORPHAN_AGE_SECONDS)
    removed += [str(p) for p in workspace.sweep(older_than_seconds=ORPHAN_AGE_SECONDS)]
    if removed:
        log.info("reconciler: removed %d orphaned files or folders", len(removed))
    return removed


def reconcile_once(
    *,
    session_factory: sessionmaker[Session],
    settings: Settings,
    store: ArtifactStore | None = None,
    send: bool = True,
) -> ReconcileReport:
    """One pass: repair job state (``core.db.jobs.reconcile``), then send the outbox."""
    report = reconcile(
        session_factory,
        store or make_store(settings),
        redispatch_after_seconds=redispatch_after_seconds(settings),
    )
    if report.redispatched or report.failed:
        log.info(
            "reconciler: %d re-sent, %d failed, %d cleaned",
            len(report.redispatched),
            len(report.failed),
            len(report.cleaned),
        )
    if send:
        flush_outbox(session_factory=session_factory, settings=settings)
    return report


class Reconciler(DaemonLoop):
    """Runs ``reconcile_once`` every ``interval`` seconds until ``stop()``."""

    thread_name = "mnemo-reconciler"

    def __init__(self, *, settings: Settings, interval: float | None = None) -> None:
        self.settings = settings
        self.interval = interval if interval is not None else interval_seconds(settings)
        self._session_factory: sessionmaker[Session] | None = None
        super().__init__()

    def _run(self) -> None:
        self._session_factory = make_session_factory(self.settings.database_url)
        store = make_store(self.settings)  # one store (an S3 client) for every pass
        last_sweep = float("-inf")
        while not self._stop.wait(self.interval):
            try:
                reconcile_once(session_factory=self._session_factory, settings=self.settings, store=store)
                if time.monotonic() - last_sweep >= ORPHAN_SWEEP_EVERY_SECONDS:
                    last_sweep = time.monotonic()
                    collect_orphans_once(
                        session_factory=self._session_factory, settings=self.settings, store=store
                    )
                    prune_workers(self._session_factory)
            except Exception as error:  # DB or broker down: try again next round
                log.warning("reconciler pass failed: %s", type(error).__name__)
