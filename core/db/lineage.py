"""A user's adapter lineage: the chain of published versions from the first task to the head."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db.models import AdapterVersion, User


def lineage_chain(session: Session, *, user_id: str) -> list[AdapterVersion]:
    """The versions from task 1 to the user's current head (oldest first), following ``parent_id``.

    This is the order ``core.engine.state.load_state`` expects its directories in.
    """
    head_id = session.scalar(select(User.current_adapter_version_id).where(User.id == user_id))
    if head_id is None:
        return []
    versions = {
        v.id: v for v in session.scalars(select(AdapterVersion).where(AdapterVersion.user_id == user_id))
    }
    chain: list[AdapterVersion] = []
    seen: set[str] = set()
    current = versions.get(head_id)
    while current is not None and current.id not in seen:
        seen.add(current.id)
        chain.append(current)
        current = versions.get(current.parent_id) if current.parent_id else None
    chain.reverse()
    return chain
