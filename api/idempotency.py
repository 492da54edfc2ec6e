"""The ``Idempotency-Key`` header of ``POST /v1/concepts`` and ``POST /v1/generate``
(docs/api.md, "Idempotency-Key"; the SQL side is ``core.db.idempotency``).

``create_once`` runs the transaction that creates a job: with a key, the same request sent again
(by this API process or another) answers the job the first one made, and a different request
with the same key is a 422. Without a key every request makes a new job, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, HTTPException, status
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import contract
from api.deps import Services
from core.db import idempotency
from core.db.models import Job
from core.db.session import write_transaction

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[!-~]{1,255}$"  # printable ASCII, no spaces

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        max_length=255,
        pattern=KEY_PATTERN,
        description="any unique string (e.g. a UUID): a retry with the same key and request answers "
        "the job the first request made instead of making another",
    ),
]


def with_key_refusal(answer: dict[str, Any]) -> dict[str, Any]:
    """A documented 422 of a route that takes the header: it also answers a reused key."""
    return {**answer, "description": f"{answer['description']}; or an {HEADER} used with a different request"}


RESPONSES: contract.Responses = {422: with_key_refusal(contract.INVALID)}


@dataclass(frozen=True)
class Created:
    job_id: str
    replayed: bool  # True: an earlier request with the same key made the job

    @property
    def headers(self) -> dict[str, str]:
        return {REPLAYED_HEADER: "true"} if self.replayed else {}


def create_once(
    services: Services,
    *,
    user_id: str,
    key: str | None,
    request: dict[str, Any],
    create: Callable[[Session], Job],
) -> Created:
    """``create(session)`` in a write transaction, once per ``(user, key, request)``.

    ``request`` names the operation and every field that decides the job (a fingerprint of it is
    kept, not the values). A concurrent request holding the same key makes the insert fail; the
    transaction then runs once more and finds the winner's job.
    """
    if key is None:
        with write_transaction(services.session_factory) as session:
            return Created(job_id=create(session).id, replayed=False)
    digest = idempotency.fingerprint(request, pepper=services.settings.pepper)
    try:
        return _keyed(services, user_id=user_id, key=key, fingerprint=digest, create=create)
    except IntegrityError:
        return _keyed(services, user_id=user_id, key=key, fingerprint=digest, create=create)


def replay(services: Services, *, user_id: str, key: str | None, request: dict[str, Any]) -> Created | None:
    """The earlier job of this key and request, read before any work is done (None: none yet)."""
    if key is None:
        return None
    digest = idempotency.fingerprint(request, pepper=services.settings.pepper)
    with services.session_factory() as session:
        job_id = _replayed(session, user_id=user_id, key=key, fingerprint=digest)
    return None if job_id is None else Created(job_id=job_id, replayed=True)


def _keyed(
    services: Services, *, user_id: str, key: str, fingerprint: str, create: Callable[[Session], Job]
) -> Created:
    with write_transaction(services.session_factory) as session:
        try:
            row, job_id = idempotency.reserve(
                session,
                user_id=user_id,
                key=key,
                fingerprint=fingerprint,
                window_seconds=services.settings.idempotency_key_seconds,
            )
        except idempotency.IdempotencyConflict as conflict:
            raise _conflict(conflict) from None
        if row is None:
            return Created(job_id=str(job_id), replayed=True)
        row.job_id = create(session).id
        return Created(job_id=row.job_id, replayed=False)


def _replayed(session: Session, *, user_id: str, key: str, fingerprint: str) -> str | None:
    try:
        return idempotency.replayed_job(session, user_id=user_id, key=key, fingerprint=fingerprint)
    except idempotency.IdempotencyConflict as conflict:
        raise _conflict(conflict) from None


def _conflict(conflict: idempotency.IdempotencyConflict) -> HTTPException:
    return HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(conflict))
