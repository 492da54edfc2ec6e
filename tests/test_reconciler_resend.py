"""Regression (found by the chaos soak, docs/faults.md): a running job whose worker died is re-sent
by the reconciler; when that message is lost too (Redis wiped, or the worker that took it killed
while holding it unacknowledged), it is sent again once a redispatch interval has passed, instead
of waiting for ever. Before the fix one message since the lease's expiry, lost or not, stopped
every later re-send: the soak found three train jobs stuck ``running`` for twenty minutes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from core.db import jobs as protocol
from core.db.enqueue import TrainRequest, create_train_job
from core.db.models import Outbox, utcnow
from core.storage import LocalStore

REDISPATCH = 30.0


def _mark_sent(factory: sessionmaker[Session]) -> None:
    """What ``flush_outbox`` does once the broker took the messages."""
    with factory() as session:
        session.execute(update(Outbox).where(Outbox.sent_at.is_(None)).values(sent_at=Outbox.created_at))
        session.commit()


def test_a_resent_message_that_was_lost_is_sent_again_after_the_redispatch_interval(
    session_factory: sessionmaker[Session], tmp_path: Path, new_user: Callable[..., tuple[str, str]]
) -> None:
    store = LocalStore(tmp_path / "data")
    user_id, _ = new_user(session_factory, "alice")
    with session_factory() as session:
        request = TrainRequest(name="dog", class_word=None, method="dsc_ewc_dc", steps=None)
        _, job = create_train_job(session, user_id=user_id, request=request, uploads=[], max_attempts=5)
        session.commit()
        job_id = job.id
    protocol.claim_job(session_factory, job_id=job_id, worker_id="w1", lease_seconds=5)
    _mark_sent(session_factory)
    died = utcnow()  # the worker dies at once; its lease expires 5 s later

    def reconcile(after: float) -> list[str]:
        now = died + timedelta(seconds=after)
        report = protocol.reconcile(session_factory, store, redispatch_after_seconds=REDISPATCH, now=now)
        _mark_sent(session_factory)
        return report.redispatched

    assert reconcile(10) == [job_id]  # re-sent once the lease expired ...
    assert reconcile(20) == []  # ... not again while that message may still arrive ...
    assert reconcile(10 + REDISPATCH + 1) == [job_id]  # ... and again once it must have been lost
    assert reconcile(10 + REDISPATCH + 2) == []
