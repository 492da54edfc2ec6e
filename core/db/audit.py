"""The audit log: who did what to which id. Never filenames, keys, prompts or image bytes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.db.models import AuditLog


def record(
    session: Session,
    *,
    action: str,
    actor_user_id: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Add one audit entry to the session's transaction (committed with the change it describes)."""
    entry = AuditLog(action=action, actor_user_id=actor_user_id, subject=subject, details=details or {})
    session.add(entry)
    return entry
