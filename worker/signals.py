"""Worker lifecycle hooks: the presence heartbeat, the reconciler and the webhook relay threads in
the main process, import warm-up in children (``worker.warmup``).

The presence heartbeat (``worker.presence``: the worker counts as live for ``/readyz``), the
reconciler and the webhook relay (``worker.webhook_relay``) start when the worker is ready (after
the pool children were forked) and stop at shutdown. ``MNEMO_WORKER_RECONCILER=0`` turns the
reconciler off (for a second worker on the same database: one reconciler is enough, more are
harmless).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from core.settings import get_settings
from worker.loops import DaemonLoop
from worker.presence import Presence
from worker.reconciler import Reconciler
from worker.warmup import start_warm_up
from worker.webhook_relay import WebhookRelayLoop

log = logging.getLogger(__name__)
RECONCILER_ENV = "MNEMO_WORKER_RECONCILER"

_main_threads: list[DaemonLoop] = []


def reconciler_enabled() -> bool:
    return os.environ.get(RECONCILER_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@worker_ready.connect
def start_main_threads(**_: Any) -> None:
    """The presence heartbeat and the webhook relay, always; the reconciler unless
    ``MNEMO_WORKER_RECONCILER=0``."""
    if _main_threads:
        return
    settings = get_settings()
    _main_threads.append(Presence(settings=settings).start())
    _main_threads.append(WebhookRelayLoop(settings=settings).start())
    if reconciler_enabled():
        reconciler = Reconciler(settings=settings).start()
        _main_threads.append(reconciler)
        log.info("reconciler running every %.1f s", reconciler.interval)


@worker_shutdown.connect
def stop_main_threads(**_: Any) -> None:
    while _main_threads:
        _main_threads.pop().stop()


@worker_process_init.connect
def warm_up_child(**_: Any) -> None:
    """Start the import warm-up of a new pool process (``worker.warmup``; tasks wait for it).

    A thread, not inline: Celery waits only a few seconds for a new pool process to start.
    """
    start_warm_up()
