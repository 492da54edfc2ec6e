"""``GET /v1/adapters``: the user's adapter lineage chain (docs/architecture.md, "Adapter lineage")."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import contract, pagination
from api.deps import SessionDep, UserDep
from api.pagination import MAX_PAGE, Cursor, Limit
from api.schemas import AdapterLineage, AdapterVersionOut, Lineage
from core.db.jobs import user_lineage
from core.db.models import Concept

router = APIRouter(prefix="/v1/adapters", tags=["adapters"])


@router.get(
    "",
    response_model=AdapterLineage,
    responses=contract.PAGE,
    summary="Your adapter versions, first task to current head (paginated)",
)
def list_adapters(
    user: UserDep, session: SessionDep, limit: Limit = MAX_PAGE, cursor: Cursor = None
) -> AdapterLineage:
    """Your lineage, one page at a time (``lineage_page``)."""
    return lineage_page(session, user_id=user.id, limit=limit, cursor=cursor)


def lineage_page(session: Session, *, user_id: str, limit: int, cursor: str | None) -> AdapterLineage:
    """A page of the chain: the versions after position ``cursor`` (``version`` is the position)."""
    lineage = lineage_out(session, user_id=user_id)
    after = max(0, pagination.integer(cursor) or 0)
    rows = lineage.versions[after : after + limit + 1]
    shown, next_cursor = pagination.page(rows, limit=limit, key=lambda v: (v.version,))
    return AdapterLineage(head=lineage.head, versions=shown, next_cursor=next_cursor)


def lineage_out(session: Session, *, user_id: str) -> Lineage:
    """The user's whole lineage chain as the API shows it (``lineage_page`` pages it)."""
    chain = user_lineage(session, user_id=user_id)
    concepts = {c.id: c for c in session.scalars(select(Concept).where(Concept.user_id == user_id))}
    versions = []
    for position, version in enumerate(chain, start=1):
        concept = concepts.get(version.concept_id) if version.concept_id else None
        versions.append(
            AdapterVersionOut(
                id=version.id,
                version=position,
                task_index=version.task_index,
                concept_id=version.concept_id,
                concept_name=concept.name if concept else None,
                token=concept.token if concept else None,
                parent_id=version.parent_id,
                method=version.method,
                sha256=version.sha256,
                size_bytes=version.size_bytes,
                files=version.files,
                created_at=version.created_at,
            )
        )
    return Lineage(head=chain[-1].id if chain else None, versions=versions)
