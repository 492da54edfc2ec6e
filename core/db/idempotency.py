"""``Idempotency-Key``: one job per key and request, whatever the number of retries
(docs/api.md, "Idempotency-Key").

Inside the transaction that creates a job, ``reserve`` either finds the key — the same request
answers the job it made (a replay), a different one is an ``IdempotencyConflict`` — or inserts
it, and the caller records the new job on that row before the commit. The key row is inserted *before*
the job, so two requests with the same key serialise on the unique ``(user_id, key)``: on
PostgreSQL the second insert waits for the first transaction and then fails (``IntegrityError``;
the caller runs its transaction again and finds a replay), on SQLite the write lock taken at
``BEGIN IMMEDIATE`` orders them. Keys are per user and expire after a window; an expired key is
removed when its user next sends one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db.models import IdempotencyKey, utcnow


class IdempotencyConflict(ValueError):
    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used with a different request; send a new key for a new request"
        )


def fingerprint(request: dict[str, Any], *, pepper: bytes) -> str:
    """An HMAC-SHA256 of the canonical JSON of ``request`` (its operation and every field)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(pepper, canonical.encode(), hashlib.sha256).hexdigest()


def replayed_job(session: Session, *, user_id: str, key: str, fingerprint: str) -> str | None:
    """The job of a live key with this fingerprint (None: no live key); ``IdempotencyConflict``
    when the live key belongs to another request."""
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
            IdempotencyKey.expires_at > utcnow(),
        )
    )
    if row is None:
        return None
    if not hmac.compare_digest(row.fingerprint, fingerprint):
        raise IdempotencyConflict()
    return row.job_id


def reserve(
    session: Session, *, user_id: str, key: str, fingerprint: str, window_seconds: int
) -> tuple[IdempotencyKey | None, str | None]:
    """``(None, job id)`` for a replay, else ``(the new key row, None)``; see the module docstring."""
    job_id = replayed_job(session, user_id=user_id, key=key, fingerprint=fingerprint)
    if job_id is not None:
        return None, job_id
    now = utcnow()
    session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.expires_at <= now)
    )
    row = IdempotencyKey(
        user_id=user_id,
        key=key,
        fingerprint=fingerprint,
        created_at=now,
        expires_at=now + timedelta(seconds=window_seconds),
    )
    session.add(row)
    session.flush()  # the unique (user_id, key): a concurrent holder makes this wait, then fail
    return row, None


def live_key(session: Session, *, user_id: str, key: str) -> bool:
    """Whether the user holds ``key`` unexpired (its request was seen: a quota must not refuse it)."""
    found = session.scalar(
        select(IdempotencyKey.id).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
            IdempotencyKey.expires_at > utcnow(),
        )
    )
    return found is not None
