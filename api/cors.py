"""Cross-origin requests from browsers: off unless ``MNEMO_CORS_ORIGINS`` names origins (docs/api.md, "CORS").

Browsers may call the API from the listed origins with a Bearer key; cookies are never allowed
cross-origin (``allow_credentials`` is off), so the admin dashboard's session stays same-site.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.errors import REQUEST_ID_HEADER
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import REPLAYED_HEADER

ALLOWED_HEADERS = ["Authorization", "Content-Type", IDEMPOTENCY_HEADER, "Last-Event-ID"]
EXPOSED_HEADERS = [REQUEST_ID_HEADER, REPLAYED_HEADER, "Retry-After", "WWW-Authenticate"]
PREFLIGHT_CACHE_SECONDS = 600


def allowed_origins(setting: str) -> list[str]:
    """The comma-separated origins of ``MNEMO_CORS_ORIGINS`` (``*``: any), without blanks."""
    return [origin.strip().rstrip("/") for origin in setting.split(",") if origin.strip()]


def install_cors(app: FastAPI, *, origins: str) -> None:
    """Answer preflights and add CORS headers for ``origins``; nothing at all when it is empty."""
    allowed = allowed_origins(origins)
    if not allowed:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=PREFLIGHT_CACHE_SECONDS,
    )
