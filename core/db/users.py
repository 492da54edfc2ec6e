"""Users and API keys: create, list, disable, rotate, authenticate.

A key looks like ``mnemo_<43 url-safe chars>`` (256 random bits). Only its display prefix
(``mnemo_`` + 8 chars) and ``HMAC-SHA256(pepper, key)`` are stored; the key itself is
returned once, at creation or rotation (docs/architecture.md, "Keys and sessions").
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db.audit import record
from core.db.models import ApiKey, Role, User, utcnow

KEY_SCHEME = "mnemo_"
PREFIX_CHARS = len(KEY_SCHEME) + 8
KEY_PATTERN = re.compile(r"mnemo_[A-Za-z0-9_-]{43}")  # full matches: "$" would accept a final "\n"
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
LAST_USED_RESOLUTION = timedelta(minutes=1)


class UserError(ValueError):
    """A refused user operation (bad name, duplicate, unknown user)."""


class UserExistsError(UserError):
    """The user name is taken."""


@dataclass(frozen=True)
class IssuedKey:
    user: User
    key: str  # shown once; never stored
    key_id: str
    prefix: str


def hash_key(key: str, *, pepper: bytes) -> str:
    """HMAC-SHA256 of the key with the server-side pepper, hex."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def new_key() -> str:
    return KEY_SCHEME + secrets.token_urlsafe(32)


def _issue(session: Session, *, user: User, pepper: bytes) -> IssuedKey:
    key = new_key()
    row = ApiKey(user_id=user.id, prefix=key[:PREFIX_CHARS], key_hash=hash_key(key, pepper=pepper))
    session.add(row)
    session.flush()
    return IssuedKey(user=user, key=key, key_id=row.id, prefix=row.prefix)


def create_user(
    session: Session,
    *,
    name: str,
    role: str = Role.USER.value,
    pepper: bytes,
    actor_user_id: str | None = None,
) -> IssuedKey:
    """Create a user with one API key (flushes; the caller commits)."""
    if not USER_NAME.fullmatch(name):
        raise UserError("a user name is 1-64 characters: letters, digits, '_', '.', '@', '-'")
    if role not in {r.value for r in Role}:
        raise UserError(f"role must be one of: {', '.join(r.value for r in Role)}")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise UserExistsError(f"a user named {name!r} already exists")
    user = User(name=name, role=role)
    session.add(user)
    session.flush()
    issued = _issue(session, user=user, pepper=pepper)
    record(
        session, actor_user_id=actor_user_id, action="user.create", subject=user.id, details={"role": role}
    )
    return issued


def find_user(session: Session, *, ref: str) -> User | None:
    """A user by id or by name."""
    return session.get(User, ref) or session.scalar(select(User).where(User.name == ref))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.created_at, User.name)))


def set_disabled(session: Session, *, user: User, disabled: bool, actor_user_id: str | None = None) -> User:
    user.disabled = disabled
    record(
        session,
        actor_user_id=actor_user_id,
        action="user.disable" if disabled else "user.enable",
        subject=user.id,
    )
    session.flush()
    return user


def rotate_key(
    session: Session, *, user: User, pepper: bytes, revoke_old: bool = True, actor_user_id: str | None = None
) -> IssuedKey:
    """Issue a new key; by default revoke every older key of the user at once."""
    now = utcnow()
    if revoke_old:
        session.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    issued = _issue(session, user=user, pepper=pepper)
    record(
        session,
        actor_user_id=actor_user_id,
        action="user.rotate_key",
        subject=user.id,
        details={"revoked_old": revoke_old},
    )
    return issued


def active_key_count(session: Session, *, user_id: str) -> int:
    keys = session.scalars(select(ApiKey.id).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None)))
    return len(list(keys))


def authenticate(session: Session, *, key: str, pepper: bytes) -> tuple[User, ApiKey] | None:
    """The user owning an unrevoked ``key`` and the key row, or None (read-only).

    Disabled users are returned too: the caller decides. Candidates are found by the
    non-secret prefix and compared in constant time.
    """
    if not KEY_PATTERN.fullmatch(key):
        return None
    digest = hash_key(key, pepper=pepper)
    candidates = session.scalars(
        select(ApiKey).where(ApiKey.prefix == key[:PREFIX_CHARS], ApiKey.revoked_at.is_(None))
    ).all()
    match = None
    for candidate in candidates:
        if hmac.compare_digest(candidate.key_hash, digest):
            match = candidate
    if match is None:
        return None
    user = session.get(User, match.user_id)
    return None if user is None else (user, match)


def key_needs_touch(key: ApiKey) -> bool:
    """Whether ``last_used_at`` is older than its one-minute resolution."""
    return key.last_used_at is None or utcnow() - key.last_used_at > LAST_USED_RESOLUTION


def touch_key(session: Session, *, key_id: str) -> None:
    """Record that a key was used now (flushes; the caller commits)."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
