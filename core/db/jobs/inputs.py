"""What a claimed attempt reads before it runs: a train job's uploads, a generate job's request."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db.jobs.lifecycle import LeaseLostError
from core.db.models import Generation, Job, Upload
from core.db.session import write_transaction


def upload_paths(session_factory: sessionmaker[Session], *, job_id: str) -> list[str]:
    """The stored paths of a train job's raw uploads, in upload order (empty once deleted)."""
    with session_factory() as session:
        query = select(Upload.path).where(Upload.job_id == job_id).order_by(Upload.position, Upload.id)
        return list(session.scalars(query))


def ensure_generation(session_factory: sessionmaker[Session], *, job_id: str) -> Generation:
    """The job's ``generations`` row (the API writes it with the job; rebuilt from the payload if not)."""
    with write_transaction(session_factory) as session:
        generation = session.scalar(select(Generation).where(Generation.job_id == job_id))
        if generation is not None:
            return generation
        job = session.get(Job, job_id)
        if job is None:
            raise LeaseLostError("the job no longer exists")
        payload = dict(job.payload or {})
        prompt = str(payload.pop("prompt", ""))
        payload.pop("generation_id", None)
        generation = Generation(user_id=job.user_id, job_id=job_id, prompt=prompt, params=payload)
        session.add(generation)
        session.flush()
        return generation
