"""``GET /v1/images/{id}``: a generated image's PNG bytes, to its owner only."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import select

from api import contract
from api.deps import ServicesDep, SessionDep, UserDep, not_found
from core.db.models import GeneratedImage

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.get(
    "/{image_id}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **contract.NOT_FOUND},
    summary="A generated image (PNG)",
)
def get_image(image_id: str, user: UserDep, session: SessionDep, services: ServicesDep) -> Response:
    image = session.scalar(
        select(GeneratedImage).where(GeneratedImage.id == image_id, GeneratedImage.user_id == user.id)
    )
    if image is None:
        raise not_found()
    try:
        data = services.store.read_bytes(image.path)
    except (OSError, ValueError):
        raise not_found() from None
    return png_response(data, sha256=image.sha256)


def png_response(data: bytes, *, sha256: str, cache_control: str = "no-store") -> Response:
    """A stored PNG as a response (never sniffed as anything else)."""
    return Response(
        content=data,
        media_type="image/png",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": cache_control, "ETag": f'"{sha256}"'},
    )
