"""Helpers shared by the admin dashboard tests (docs/dashboard.md)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from core.db.enqueue import TrainRequest, create_train_job
from core.storage import StoredFile


def queue_train_job(
    factory: sessionmaker[Session],
    *,
    user_id: str,
    name: str,
    uploads: Sequence[StoredFile] = (),
    attempts: int = 3,
) -> str:
    """A queued train job for concept ``name`` (as ``POST /v1/concepts`` leaves it); returns its id."""
    with factory() as session:
        _, job = create_train_job(
            session,
            user_id=user_id,
            request=TrainRequest(name=name, class_word=None, method="dsc_ewc_dc", steps=None),
            uploads=list(uploads),
            max_attempts=attempts,
        )
        session.commit()
        return job.id
