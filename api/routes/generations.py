"""``GET /v1/generations``: the user's generations with their jobs and images, newest first."""

from __future__ import annotations

from fastapi import APIRouter

from api import contract, pagination
from api.deps import SessionDep, UserDep
from api.pagination import DEFAULT_PAGE, Cursor, Limit
from api.routes.generate import image_ref
from api.schemas import GenerationList, GenerationOut, JobOut
from core.db import lists

router = APIRouter(prefix="/v1/generations", tags=["generate"])


@router.get(
    "",
    response_model=GenerationList,
    responses=contract.PAGE,
    summary="Your generations, newest first (paginated)",
)
def list_generations(
    user: UserDep, session: SessionDep, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> GenerationList:
    rows = lists.generations(session, user_id=user.id, limit=limit + 1, before_seq=pagination.integer(cursor))
    shown, next_cursor = pagination.page(rows, limit=limit, key=lambda row: (row[1].seq,))
    images = lists.images_of(session, generation_ids=[generation.id for generation, _ in shown])
    return GenerationList(
        generations=[
            GenerationOut(
                id=generation.id,
                prompt=generation.prompt,
                params=generation.params,
                job=JobOut.model_validate(job),
                images=[image_ref(image) for image in images[generation.id]],
                created_at=generation.created_at,
            )
            for generation, job in shown
        ],
        next_cursor=next_cursor,
    )
