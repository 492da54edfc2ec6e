"""``GET /v1/adapters/{version}/export``: an adapter version as a zip for other tools (docs/export.md).

The zip is built in the API process from the stored files, without torch
(``core.export``): a diffusers LoRA, a kohya LoRA, one textual-inversion file per token and
a JSON card. A version of another user answers 404, like a missing one; a state that is not
one LoRA and cannot be merged into one (VeRA) answers 409 with the reason.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import Response

from api.deps import ServicesDep, SessionDep, UserDep, not_found
from api.schemas import ErrorOut
from core.export.bundle import build_export
from core.export.errors import ExportCorruptError, ExportNotFoundError, ExportRefusedError

router = APIRouter(prefix="/v1/adapters", tags=["adapters"])


@router.get(
    "/{version}/export",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "the export zip"},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut, "description": "this version's state cannot be exported as one LoRA"},
        500: {"model": ErrorOut, "description": "a stored file does not match its recorded sha256"},
    },
    summary="Export an adapter version: diffusers + kohya LoRA, textual inversions, card (zip)",
)
def export_adapter(version: str, user: UserDep, session: SessionDep, services: ServicesDep) -> Response:
    """``version``: the version's id, or its position in your lineage (1 = your first concept)."""
    try:
        archive = build_export(
            session, store=services.store, user_id=user.id, ref=version, backbone=services.settings.backbone
        )
    except ExportNotFoundError:
        raise not_found() from None
    except ExportRefusedError as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    except ExportCorruptError as error:
        raise HTTPException(status_code=status.HTTP_500_INTERNAL_SERVER_ERROR, detail=str(error)) from None
    return Response(
        content=archive.data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{archive.filename}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
