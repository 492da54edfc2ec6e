"""Error answers and error logs without user content (docs/architecture.md, "Uploads and privacy").

* ``ErrorBoundaryMiddleware`` (outermost) gives every request an id, answered as ``X-Request-ID``
  and carried by every log line of the request (``core.logs.REQUEST_ID``),
  refuses a NUL character in the path or the query string with 422 before any route runs
  (PostgreSQL text cannot hold one), and turns an unhandled exception into the one 500
  ``{"detail": "internal error", "request_id": ...}``. The log line names the exception's type,
  the method, the route template, the request id and the stack's frames — never the exception's
  message, which for a database error quotes the refused values (the engine also hides SQL
  parameters: ``core.db.session.make_engine``). Nothing reaches the server's own error log.
* ``install_handlers`` answers HTTP errors as ``{"detail": ...}`` (405 with the ``Allow`` of every
  route of the path), validation errors as field errors without the submitted values, and a
  value the database refused (``DataError``) as 422.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import NUL, NUL_MESSAGE
from core.logs import REQUEST_ID

log = logging.getLogger("mnemo.api")
REQUEST_ID_HEADER = "X-Request-ID"
INTERNAL = "internal error"
UNSTORABLE = "a value could not be stored: check the fields' lengths and characters"
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
PageHandler = Callable[[Request, StarletteHTTPException], Response | None]


def request_id(request: Request) -> str:
    """The id ``ErrorBoundaryMiddleware`` gave this request ('' outside it)."""
    return str(request.scope.get("state", {}).get("request_id", ""))


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _frames(tb: TracebackType | None) -> str:
    """The stack as ``file:line in function`` lines: code locations, no values, no messages."""
    return "\n".join(f"  {f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb))


def log_unhandled(error: BaseException, *, scope: Scope, request_id: str) -> None:
    """Log an unhandled exception by type, route and request id (never its message)."""
    log.error(
        "unhandled %s in %s %s (request %s)\n%s",
        type(error).__name__,
        scope.get("method", ""),
        _route_template(scope),
        request_id,
        _frames(error.__traceback__),
    )


def _nul_in_url(scope: Scope) -> str | None:
    """'path' or 'query' when that part of the URL (percent-decoded) holds a NUL, else None."""
    if NUL in scope.get("path", ""):
        return "path"
    if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
        return "query"
    return None


class ErrorBoundaryMiddleware:
    """Request ids, the NUL-in-URL refusal and the one 500 (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ident = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = ident
        token = REQUEST_ID.set(ident)  # every log line of this request carries it (core.logs)
        try:
            await self._answer(scope, receive, send, ident=ident)
        finally:
            REQUEST_ID.reset(token)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, *, ident: str) -> None:
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", []), (REQUEST_ID_HEADER.lower().encode(), ident.encode())]
                message = {**message, "headers": headers}
            await send(message)

        part = _nul_in_url(scope)
        if part is not None:
            body = {"detail": [{"loc": [part], "msg": f"the URL {NUL_MESSAGE}", "type": "nul_character"}]}
            await JSONResponse(status_code=422, content=body)(scope, receive, send_with_id)
            return
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            log_unhandled(error, scope=scope, request_id=ident)
            if not started:  # else the answer is cut short: the client sees a broken response
                body = {"detail": INTERNAL, "request_id": ident}
                await JSONResponse(status_code=500, content=body)(scope, receive, send_with_id)


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of the request's path answers (several routes may share a path).

    Asks each top-level route whether it fully matches the path with each method (included
    routers answer for their routes); mounts are skipped, they match any method.
    """
    routes = [route for route in app.router.routes if not isinstance(route, Mount)]
    return [
        method
        for method in METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def _http_error(app: FastAPI, page: PageHandler) -> Callable[..., Any]:
    async def handler(request: Request, error: StarletteHTTPException) -> Response:
        headers = dict(error.headers or {})
        allowed = allowed_methods(app, request.scope) if error.status_code == 405 else []
        if allowed:
            headers["Allow"] = ", ".join(allowed)
        response = page(request, error)
        if response is None:
            return JSONResponse(
                status_code=error.status_code, content={"detail": error.detail}, headers=headers
            )
        response.headers.update(headers)
        return response

    return handler


async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    # Field errors without echoing the submitted values (they may be file bytes or prompts).
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in error.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": details})


async def _data_error(request: Request, error: DataError) -> JSONResponse:
    # A value the database cannot store (too long, a character it refuses) is the request's fault:
    # 422. The warning (type, route, request id; never the value) says a validation rule is missing.
    log.warning(
        "database refused a value: %s in %s %s (request %s)",
        type(error.orig).__name__,
        request.method,
        _route_template(request.scope),
        request_id(request),
    )
    return JSONResponse(status_code=422, content={"detail": UNSTORABLE})


def install_handlers(app: FastAPI, *, page: PageHandler) -> None:
    """The exception handlers; ``page(request, error)`` may answer an HTTP error as an HTML page."""
    app.add_exception_handler(StarletteHTTPException, _http_error(app, page))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DataError, _data_error)
