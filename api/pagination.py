"""Opaque keyset cursors for every list of the API (docs/api.md, "Lists and cursors").

A cursor is the URL-safe base64 of a small JSON list: the sort key of the last row of the page
the client has (``core.db.keyset`` selects the rows after it). Clients pass ``next_cursor`` back
unchanged; anything else is a 400. A list route fetches ``limit + 1`` rows and hands them to
``page``, which keeps ``limit`` and gives the next cursor — None on the last page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import HTTPException, Query, status

INVALID = "invalid cursor: pass back the next_cursor of the previous page unchanged"
MAX_PAGE = 500
DEFAULT_PAGE = 100

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="rows per page")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
Row = TypeVar("Row")


def encode(*key: Any) -> str:
    """A cursor for the sort key ``key`` (datetimes become ISO strings)."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def page(
    rows: Sequence[Row], *, limit: int, key: Callable[[Row], Sequence[Any]]
) -> tuple[list[Row], str | None]:
    """The first ``limit`` of ``rows`` (fetched with ``limit + 1``) and the next page's cursor."""
    kept = list(rows[:limit])
    return kept, (encode(*key(kept[-1])) if len(rows) > limit else None)


def _invalid() -> HTTPException:
    return HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail=INVALID)


def _decode(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _invalid() from None
    if not isinstance(values, list):
        raise _invalid()
    return values


def _typed(value: Any, kind: type) -> Any:
    """``value`` as a ``kind`` sort-key part (int, str or an aware datetime); 400 otherwise."""
    if kind is datetime and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _invalid() from None
        if parsed.tzinfo is not None:
            return parsed
        raise _invalid()
    integral = kind is int and isinstance(value, int) and not isinstance(value, bool)
    text = kind is str and isinstance(value, str) and "\x00" not in value  # PostgreSQL text has no NUL
    if integral or text:
        return value
    raise _invalid()


def key(cursor: str | None, *kinds: type) -> tuple[Any, ...] | None:
    """Decode a cursor whose sort key has the types ``kinds`` (None: the first page)."""
    if cursor is None:
        return None
    values = _decode(cursor)
    if len(values) != len(kinds):
        raise _invalid()
    return tuple(_typed(value, kind) for value, kind in zip(values, kinds, strict=True))


def time_and_id(cursor: str | None) -> tuple[datetime, str] | None:
    """Decode a ``(timestamp, id)`` cursor (None: the first page)."""
    return key(cursor, datetime, str)  # type: ignore[return-value]


def integer_and_id(cursor: str | None) -> tuple[int, str] | None:
    """Decode an ``(integer, id)`` cursor (None: the first page)."""
    return key(cursor, int, str)  # type: ignore[return-value]


def integer(cursor: str | None) -> int | None:
    """Decode a one-integer cursor (None: the first page)."""
    values = key(cursor, int)
    return None if values is None else values[0]
