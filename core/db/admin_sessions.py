"""Browser sessions of the admin dashboard (docs/dashboard.md).

The admin's API key is exchanged once, on the login form, for a random session token: the
cookie holds the token, the ``admin_sessions`` row only its sha256 and a per-session CSRF
token. Sessions expire; logging out deletes the row. Every request re-reads the user, so a
disabled or demoted admin loses access at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db.audit import record
from core.db.models import AdminSession, User, utcnow

TOKEN_BYTES = 32


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OpenedSession:
    token: str  # goes into the cookie; never stored
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class LiveSession:
    user: User
    csrf_token: str
    expires_at: datetime


def open_session(
    session: Session, *, user: User, ttl: timedelta, now: datetime | None = None
) -> OpenedSession:
    """A new session for ``user`` (flushes; the caller commits). Expired rows are swept here."""
    now = now or utcnow()
    session.execute(delete(AdminSession).where(AdminSession.expires_at < now))
    token, csrf = secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES)
    row = AdminSession(
        token_hash=_digest(token), user_id=user.id, csrf_token=csrf, created_at=now, expires_at=now + ttl
    )
    session.add(row)
    record(session, action="admin.login", actor_user_id=user.id, subject=user.id)
    session.flush()
    return OpenedSession(token=token, csrf_token=csrf, expires_at=row.expires_at)


def find_session(session: Session, *, token: str, now: datetime | None = None) -> LiveSession | None:
    """The unexpired session of ``token`` with its user, or None (read-only)."""
    now = now or utcnow()
    row = session.execute(
        select(AdminSession, User)
        .join(User, User.id == AdminSession.user_id)
        .where(AdminSession.token_hash == _digest(token), AdminSession.expires_at > now)
    ).first()
    if row is None:
        return None
    admin_session, user = row
    return LiveSession(user=user, csrf_token=admin_session.csrf_token, expires_at=admin_session.expires_at)


def close_session(session: Session, *, token: str) -> bool:
    """Delete the session of ``token`` (logout); True when there was one."""
    removed = session.execute(delete(AdminSession).where(AdminSession.token_hash == _digest(token))).rowcount
    return bool(removed)
