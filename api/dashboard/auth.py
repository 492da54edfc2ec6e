"""Login, sessions and CSRF for the ``/admin`` pages (docs/dashboard.md).

* ``/admin/login`` exchanges an admin's API key for a session cookie: HttpOnly,
  SameSite=Strict, ``Secure`` when the request came over TLS, expiring after ``SESSION_TTL``.
  The login form itself is protected by a double-submit token (a short-lived cookie and a
  hidden field that must match).
* every page checks the session before it reads anything, so a logged-out browser is sent to
  the login page and a non-admin gets the same 403 whatever id it asked for;
* every state-changing form carries the session's CSRF token, compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request, status
from fastapi.responses import Response

from api.deps import Services, get_services
from core.db.admin_sessions import LiveSession, find_session
from core.db.models import Role

SESSION_COOKIE = "mnemo_admin"
LOGIN_CSRF_COOKIE = "mnemo_login_csrf"
COOKIE_PATH = "/admin"
SESSION_TTL = timedelta(hours=8)
LOGIN_CSRF_TTL_SECONDS = 1800
FORBIDDEN = "admin role required"


class LoginRequired(Exception):
    """No valid session: the handler in ``api.dashboard.routes`` redirects to the login page."""


@dataclass(frozen=True)
class PageAdmin:
    """The signed-in admin of a page request and the CSRF token its forms carry."""

    user_id: str
    name: str
    csrf_token: str


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, *, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_tls(request),
    )


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def _live_session(request: Request, services: Services) -> LiveSession | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    with services.session_factory() as session:
        return find_session(session, token=token)


def page_admin(request: Request, services: Annotated[Services, Depends(get_services)]) -> PageAdmin:
    """The page's admin: no session -> login page; a session whose user is no longer an
    enabled admin -> 403 (before any id of the request is looked at)."""
    live = _live_session(request, services)
    if live is None:
        raise LoginRequired()
    if live.user.role != Role.ADMIN.value or live.user.disabled:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=FORBIDDEN)
    return PageAdmin(user_id=live.user.id, name=live.user.name, csrf_token=live.csrf_token)


def csrf_admin(
    admin: Annotated[PageAdmin, Depends(page_admin)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> PageAdmin:
    """``page_admin`` for a state-changing form: its ``csrf_token`` field must be the session's."""
    if not tokens_match(admin.csrf_token, csrf_token):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="missing or invalid CSRF token")
    return admin


PageAdminDep = Annotated[PageAdmin, Depends(page_admin)]
CsrfAdminDep = Annotated[PageAdmin, Depends(csrf_admin)]
