"""``GET /v1/images/{id}``: a generated image's PNG bytes, to its owner only.

The bytes are streamed from the store as it reads them; with an object store and
``MNEMO_S3_PRESIGN_SECONDS`` > 0 the answer is instead a 307 to a presigned URL of the object, so
the image goes from the bucket to the client directly (docs/deployment.md, "Object store").
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from sqlalchemy import select

from api import contract
from api.deps import ServicesDep, SessionDep, UserDep, not_found
from core.db.models import GeneratedImage
from core.storage import StorageError

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.get(
    "/{image_id}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}},
        307: {"description": "a presigned URL of the image in the object store (MNEMO_S3_PRESIGN_SECONDS)"},
        **contract.NOT_FOUND,
    },
    summary="A generated image (PNG)",
)
def get_image(image_id: str, user: UserDep, session: SessionDep, services: ServicesDep) -> Response:
    image = session.scalar(
        select(GeneratedImage).where(GeneratedImage.id == image_id, GeneratedImage.user_id == user.id)
    )
    if image is None:
        raise not_found()
    seconds = services.settings.s3_presign_seconds
    url = services.store.download_url(image.path, expires_seconds=seconds) if seconds else None
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    try:
        chunks = services.store.stream(image.path)
    except (OSError, StorageError):
        raise not_found() from None
    return png_stream(chunks, sha256=image.sha256)


def png_stream(chunks: Iterator[bytes], *, sha256: str) -> StreamingResponse:
    """A stored PNG streamed as it is read (never sniffed as anything else)."""
    return StreamingResponse(chunks, media_type="image/png", headers=png_headers(sha256=sha256))


def png_headers(*, sha256: str, cache_control: str = "no-store") -> dict[str, str]:
    return {"X-Content-Type-Options": "nosniff", "Cache-Control": cache_control, "ETag": f'"{sha256}"'}


def png_response(data: bytes, *, sha256: str, cache_control: str = "no-store") -> Response:
    """A stored PNG as a response (never sniffed as anything else)."""
    return Response(
        content=data, media_type="image/png", headers=png_headers(sha256=sha256, cache_control=cache_control)
    )
