"""The ``/admin`` forms (POST): log in and out, create users, disable/enable them, rotate keys.

Every form but the login carries the session's CSRF token (``CsrfAdminDep``); the login form
carries a double-submit token. A new API key is shown once, in the page that answers the form,
and never travels in a URL.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.dashboard import auth
from api.dashboard.auth import CsrfAdminDep, PageAdmin
from api.dashboard.pages import system_status, users_context
from api.dashboard.render import render
from api.deps import Services, ServicesDep, not_found
from api.limits import AuthThrottle, auth_throttle, client_address, refuse_locked_out
from api.schemas import UserOut, UserWithKey
from core.db.admin_sessions import close_session, open_session
from core.db.models import Role, User
from core.db.session import write_transaction
from core.db.users import UserError, authenticate, create_user, rotate_key, set_disabled

router = APIRouter(prefix="/admin", include_in_schema=False)
SEE_OTHER = status.HTTP_303_SEE_OTHER


def login_form(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    """The login page with a fresh double-submit token (cookie + hidden field)."""
    token = auth.new_login_token()
    response = render(
        request, "admin/login.html", admin=None, login_token=token, error=error, status_code=status_code
    )
    auth.set_cookie(
        response, request, name=auth.LOGIN_CSRF_COOKIE, value=token, max_age=auth.LOGIN_CSRF_TTL_SECONDS
    )
    return response


@router.get("/login")
def login_page(request: Request) -> Response:
    return login_form(request)


@router.post("/login")
def login(
    request: Request,
    services: ServicesDep,
    throttle: Annotated[AuthThrottle, Depends(auth_throttle)],
    api_key: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if not auth.tokens_match(request.cookies.get(auth.LOGIN_CSRF_COOKIE), csrf_token):
        return login_form(request, error="The form expired; please try again.", status_code=403)
    refuse_locked_out(throttle, request)  # the same lockout as a bad Bearer key (api.limits)
    with write_transaction(services.session_factory) as session:
        found = (
            authenticate(session, key=api_key.strip(), pepper=services.settings.pepper) if api_key else None
        )
        if found is None:
            user = None
        else:
            user = found[0]
            if user.role == Role.ADMIN.value and not user.disabled:
                opened = open_session(session, user=user, ttl=auth.SESSION_TTL)
    if user is None:
        if api_key:
            throttle.failed(client_address(request))
        return login_form(request, error="That API key is not valid.", status_code=401)
    if user.role != Role.ADMIN.value or user.disabled:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=auth.FORBIDDEN)
    response = RedirectResponse("/admin", status_code=SEE_OTHER)
    auth.set_cookie(
        response,
        request,
        name=auth.SESSION_COOKIE,
        value=opened.token,
        max_age=int(auth.SESSION_TTL.total_seconds()),
    )
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path=auth.COOKIE_PATH)
    return response


@router.post("/logout")
def logout(request: Request, admin: CsrfAdminDep, services: ServicesDep) -> Response:
    with write_transaction(services.session_factory) as session:
        close_session(session, token=request.cookies.get(auth.SESSION_COOKIE, ""))
    response = RedirectResponse("/admin/login", status_code=SEE_OTHER)
    response.delete_cookie(auth.SESSION_COOKIE, path=auth.COOKIE_PATH)
    return response


async def _users_page(
    request: Request,
    services: Services,
    admin: PageAdmin,
    *,
    issued: UserWithKey | None = None,
    error: str | None = None,
) -> Response:
    system = await system_status(services)
    context = await run_in_threadpool(users_context, services, cursor=None, system=system)
    code = status.HTTP_200_OK if error is None else status.HTTP_422_UNPROCESSABLE_CONTENT
    return render(
        request, "admin/users.html", admin=admin, issued=issued, error=error, status_code=code, **context
    )


@router.post("/users")
async def create(
    request: Request,
    admin: CsrfAdminDep,
    services: ServicesDep,
    name: Annotated[str, Form(max_length=64)] = "",
    role: Annotated[str, Form(max_length=16)] = Role.USER.value,
) -> Response:
    try:
        with write_transaction(services.session_factory) as session:
            issued = create_user(
                session,
                name=name.strip(),
                role=role,
                pepper=services.settings.pepper,
                actor_user_id=admin.user_id,
            )
            created = _with_key(issued.user, key=issued.key, prefix=issued.prefix)
    except UserError as error:
        return await _users_page(request, services, admin, error=str(error))
    return await _users_page(request, services, admin, issued=created)


def _with_key(user: User, *, key: str, prefix: str) -> UserWithKey:
    return UserWithKey(user=UserOut.model_validate(user), api_key=key, key_prefix=prefix)


@router.post("/users/{user_id}/{action}")
async def user_action(
    user_id: str, action: str, request: Request, admin: CsrfAdminDep, services: ServicesDep
) -> Response:
    if action not in ("disable", "enable", "rotate"):
        raise not_found()
    if action == "disable" and user_id == admin.user_id:
        return await _users_page(request, services, admin, error="You cannot disable your own account.")
    with write_transaction(services.session_factory) as session:
        user = session.get(User, user_id)
        if user is None:
            raise not_found()
        if action == "rotate":
            issued = rotate_key(
                session, user=user, pepper=services.settings.pepper, actor_user_id=admin.user_id
            )
            rotated = _with_key(user, key=issued.key, prefix=issued.prefix)
        else:
            set_disabled(session, user=user, disabled=action == "disable", actor_user_id=admin.user_id)
    if action == "rotate":
        return await _users_page(request, services, admin, issued=rotated)
    return RedirectResponse("/admin", status_code=SEE_OTHER)
