"""The server-rendered admin dashboard at ``/admin`` (docs/dashboard.md)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from api.dashboard.auth import LoginRequired
from api.dashboard.render import render

PREFIX = "/admin"
MESSAGES = {403: "This page needs an admin account.", 404: "Not found."}


def install(app: FastAPI) -> None:
    """Mount the pages and the redirect of logged-out browsers to the login page."""
    from api.dashboard import actions, pages

    app.include_router(actions.router)
    app.include_router(pages.router)

    @app.exception_handler(LoginRequired)
    async def login_required(_request: Request, _error: LoginRequired) -> Response:
        return RedirectResponse(f"{PREFIX}/login", status_code=303)


def is_page(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def error_page(request: Request, *, status_code: int, detail: object) -> Response:
    """An HTML error for a page request (the same words whatever id was asked for)."""
    message = MESSAGES.get(status_code, str(detail))
    return render(
        request, "admin/error.html", admin=None, status_code=status_code, code=status_code, message=message
    )
