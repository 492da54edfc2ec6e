"""Worker lifecycle hooks: the reconciler thread in the main process, import warm-up in children
(``worker.warmup``).

The reconciler starts when the worker is ready (after the pool children were forked) and
stops at shutdown. ``MNEMO_WORKER_RECONCILER=0`` turns it off (for a second worker on the
same database: one reconciler is enough, more are harmless).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from core.settings import get_settings
from worker.reconciler import Reconciler
from worker.warmup import start_warm_up

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


@worker_process_init.connect
def warm_up_child(**_: Any) -> None:
    """Start the import warm-up of a new pool process (``worker.warmup``; tasks wait for it).

    A thread, not inline: Celery waits only a few seconds for a new pool process to start.
    """
    start_warm_up()
