"""Sending committed outbox rows to the broker, after the transaction that wrote them.

The sender is ``core.queue.outbox.flush_outbox`` (a Celery client that sends by task name; the
API imports no worker code). A broker that is down is not an error for the request: the job
stays ``queued`` in the database and the reconciler sends it later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from core.queue.outbox import flush_outbox
from core.settings import Settings

log = logging.getLogger("mnemo.api.dispatch")


def outbox_dispatcher(*, session_factory: sessionmaker[Session], settings: Settings) -> Callable[[], None]:
    """A no-argument callable that flushes the outbox and never raises."""

    def flush() -> None:
        try:
            flush_outbox(session_factory=session_factory, settings=settings)
        except Exception as error:  # the reconciler re-sends; the request must not fail
            log.warning("outbox flush failed (%s); jobs stay queued for the reconciler", type(error).__name__)

    return flush
