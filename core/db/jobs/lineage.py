"""A user's adapter lineage: the chain of published versions, and moving its head.

Each published task adds one immutable adapter version whose ``parent_id`` is the version it
trained from; ``users.current_adapter_version_id`` points at the newest (the head). The head
moves only by compare-and-swap from the parent, inside the publish transaction
(docs/architecture.md, "The job protocol").
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db.models import AdapterVersion, User


class LineageConflictError(RuntimeError):
    """The user's head adapter is not the parent this task trained from (never expected)."""


def lineage(session: Session, *, head_id: str | None) -> list[AdapterVersion]:
    """The adapter versions from the first task to ``head_id`` (oldest first)."""
    chain: list[AdapterVersion] = []
    seen: set[str] = set()
    current = head_id
    while current is not None:
        if current in seen:
            raise LineageConflictError("the adapter lineage has a cycle")
        seen.add(current)
        version = session.get(AdapterVersion, current)
        if version is None:
            raise LineageConflictError("the adapter lineage references a missing version")
        chain.append(version)
        current = version.parent_id
    chain.reverse()
    return chain


def user_lineage(session: Session, *, user_id: str) -> list[AdapterVersion]:
    """The lineage of the user's current head adapter (empty before the first task)."""
    head = session.scalar(select(User.current_adapter_version_id).where(User.id == user_id))
    return lineage(session, head_id=head)


def check_head(user: User, *, parent_id: str | None, task_index: int) -> None:
    """``LineageConflictError`` unless the (locked) user's head is ``parent_id`` and the next task
    is ``task_index``."""
    if user.current_adapter_version_id != parent_id:
        raise LineageConflictError("the user's head adapter moved while the task trained")
    if user.next_task_index != task_index:
        raise LineageConflictError(
            f"task index {task_index} does not follow the user's {user.next_task_index - 1}"
        )


def advance_head(session: Session, *, user_id: str, parent_id: str | None, version_id: str) -> None:
    """Compare-and-swap the user's head from ``parent_id`` to ``version_id``, counting the task."""
    parent_matches = (
        User.current_adapter_version_id.is_(None)
        if parent_id is None
        else User.current_adapter_version_id == parent_id
    )
    swapped = session.execute(
        update(User)
        .where(User.id == user_id, parent_matches)
        .values(current_adapter_version_id=version_id, next_task_index=User.next_task_index + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if swapped != 1:
        raise LineageConflictError("the user's head adapter moved while the task trained")
