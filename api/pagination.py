"""Opaque keyset cursors for the admin lists (docs/dashboard.md).

A cursor is the URL-safe base64 of a small JSON list: the sort key of the last row of the page
the client has. Clients pass ``next_cursor`` back unchanged; anything else is a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import HTTPException, Query, status

INVALID = "invalid cursor: pass back the next_cursor of the previous page unchanged"
MAX_PAGE = 500

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]


def encode(*key: Any) -> str:
    """A cursor for the sort key ``key`` (datetimes become ISO strings)."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=INVALID) from None
    if not isinstance(values, list):
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=INVALID)
    return values


def time_and_id(cursor: str | None) -> tuple[datetime, str] | None:
    """Decode a ``(timestamp, id)`` cursor (None: the first page)."""
    if cursor is None:
        return None
    values = _decode(cursor)
    try:
        when, ident = values
        parsed = datetime.fromisoformat(when)
    except (TypeError, ValueError):
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=INVALID) from None
    if not isinstance(ident, str) or "\x00" in ident or parsed.tzinfo is None:  # PostgreSQL text has no NUL
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=INVALID)
    return parsed, ident


def integer(cursor: str | None) -> int | None:
    """Decode a one-integer cursor (None: the first page)."""
    if cursor is None:
        return None
    values = _decode(cursor)
    if len(values) != 1 or not isinstance(values[0], int) or isinstance(values[0], bool):
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=INVALID)
    return values[0]
