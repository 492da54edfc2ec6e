"""The outbox relay: send the committed ``outbox`` rows to the broker, by task name.

The API writes a job and its outbox row in one transaction and calls ``flush_outbox`` after
the commit; the reconciler calls it again, so a message that could not be sent (broker down,
process killed between commit and send) goes out later. A row is marked sent only after the
broker accepted it; a message sent twice is harmless (the SQL claim drops duplicates).
Messages carry only the job id: a broker keeps whole messages, so nothing personal goes in one
(docs/architecture.md, "The job protocol").
"""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Outbox, utcnow
from core.queue.app import create_celery_app, prepare_broker
from core.queue.names import TASK_QUEUES
from core.settings import Settings

log = logging.getLogger(__name__)

SEND_RETRY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2, "interval_max": 0.5}


@lru_cache(maxsize=8)
def _app_for(broker_url: str, data_dir: str) -> Celery:
    settings = Settings(broker_url=broker_url, data_dir=data_dir)
    prepare_broker(settings)
    return create_celery_app(settings)


def celery_for(settings: Settings) -> Celery:
    """A (cached) Celery app for sending messages to ``settings.broker_url``."""
    return _app_for(settings.broker_url, str(settings.data_dir))


def flush_outbox(
    *,
    session_factory: sessionmaker[Session],
    settings: Settings,
    limit: int = 200,
    app: Celery | None = None,
) -> int:
    """Send pending outbox rows (oldest first); returns how many were sent.

    Never raises on a broker error: the row stays pending and the error is logged
    (without the job's payload) for the reconciler to retry.
    """
    app = app or celery_for(settings)
    with session_factory() as session:
        pending = session.execute(
            select(Outbox.id, Outbox.job_id, Outbox.task_name)
            .where(Outbox.sent_at.is_(None))
            .order_by(Outbox.created_at)
            .limit(limit)
        ).all()
    sent = 0
    for row_id, job_id, task_name in pending:
        try:
            app.send_task(
                task_name,
                args=[job_id],
                task_id=row_id,
                queue=TASK_QUEUES.get(task_name),
                argsrepr=f"[{job_id!r}]",
                kwargsrepr="{}",
                retry=True,
                retry_policy=SEND_RETRY,
            )
        except Exception as error:  # the broker is down: keep the row pending
            log.warning("outbox send failed for job %s: %s", job_id, type(error).__name__)
            with session_factory.begin() as session:
                session.execute(
                    update(Outbox).where(Outbox.id == row_id).values(attempts=Outbox.attempts + 1)
                )
            break
        with session_factory.begin() as session:
            session.execute(
                update(Outbox)
                .where(Outbox.id == row_id)
                .values(sent_at=utcnow(), attempts=Outbox.attempts + 1)
            )
        sent += 1
    return sent
