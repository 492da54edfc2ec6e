"""Rendering of the ``/admin`` pages: Jinja2 templates from ``api/templates`` with strict headers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.dashboard.auth import PageAdmin

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
# Scripts and styles only from this server; no inline script runs (data travels as JSON blocks).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    """A timestamp as the pages show it (UTC, to the second)."""
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def size(value: int | None) -> str:
    """Bytes in a readable unit."""
    amount = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["size"] = size


def render(
    request: Request, name: str, *, admin: PageAdmin | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render ``name`` with the signed-in admin (for the header and the forms' CSRF token)."""
    response = TEMPLATES.TemplateResponse(
        request, name, {"admin": admin, **context}, status_code=status_code, headers=PAGE_HEADERS
    )
    return response
