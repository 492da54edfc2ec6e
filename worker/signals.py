"""Worker lifecycle hooks: the reconciler thread in the main process.

The reconciler starts when the worker is ready (after the pool children were forked) and
stops at shutdown. ``MNEMO_WORKER_RECONCILER=0`` turns it off (for a second worker on the
same database: one reconciler is enough, more are harmless).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from core.settings import get_settings
from worker.reconciler import Reconciler

log = logging.getLogger(__name__)
RECONCILER_ENV = "MNEMO_WORKER_RECONCILER"

_reconciler: Reconciler | None = None


def reconciler_enabled() -> bool:
    return os.environ.get(RECONCILER_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@worker_ready.connect
def start_reconciler(**_: Any) -> None:
    global _reconciler
    if _reconciler is None and reconciler_enabled():
        _reconciler = Reconciler(settings=get_settings()).start()
        log.info("reconciler running every %.1f s", _reconciler.interval)


@worker_shutdown.connect
def stop_reconciler(**_: Any) -> None:
    global _reconciler
    if _reconciler is not None:
        _reconciler.stop()
        _reconciler = None
