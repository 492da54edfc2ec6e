"""Request dependencies: the app's services, a DB session, and the authenticated user."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from api.limits import AuthThrottle, auth_lockout, client_address
from core.db.models import Role, User
from core.db.session import write_transaction
from core.db.users import authenticate, key_needs_touch, touch_key
from core.settings import Settings
from core.storage import ArtifactStore
from core.uploads import UploadLimits

log = logging.getLogger("mnemo.api.auth")
NOT_FOUND = "not found"
UNAUTHORIZED = "missing or invalid API key"


@dataclass
class Services:
    """Everything a request handler needs, built once per app."""

    settings: Settings
    session_factory: sessionmaker[Session]
    store: ArtifactStore
    dispatch: Callable[[], None] = field(default=lambda: None)

    @property
    def upload_limits(self) -> UploadLimits:
        s = self.settings
        return UploadLimits(
            max_bytes=s.max_upload_bytes,
            max_files=s.max_files_per_concept,
            min_files=s.min_files_per_concept,
            max_pixels=s.max_image_pixels,
            min_side=s.min_image_side,
            max_side=s.upload_max_side,
            max_request_pixels=s.max_request_pixels,
        )


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    session = services.session_factory()
    try:
        yield session
    finally:
        session.close()


def not_found() -> HTTPException:
    """The one 404 used for missing ids and for other users' ids alike."""
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=NOT_FOUND)


def _bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


# Declares the scheme in the OpenAPI document (the Authorize button of /docs); the header is
# parsed by ``_bearer_key`` so that every failure is the same JSON 401.
BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <api key>")


def current_user(
    request: Request,
    services: Annotated[Services, Depends(get_services)],
    session: Annotated[Session, Depends(get_session)],
    throttle: Annotated[AuthThrottle, Depends(auth_lockout)],
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> User:
    """The user of the request's ``Authorization: Bearer <key>``: 401 without/with a bad key, 403 disabled,
    429 while the caller's address is locked out after failed keys (``api.limits.auth_lockout``)."""
    key = _bearer_key(request)
    found = authenticate(session, key=key, pepper=services.settings.pepper) if key else None
    session.commit()  # end the read transaction (nothing written; objects stay loaded)
    if found is None:
        if key:
            throttle.failed(client_address(request))
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=UNAUTHORIZED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    user, api_key = found
    if key_needs_touch(api_key):
        _touch(services, key_id=api_key.id)
    if user.disabled:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="this account is disabled")
    request.state.user_id = user.id
    return user


def _touch(services: Services, *, key_id: str) -> None:
    """Best effort: a busy database must not fail the request over ``last_used_at``."""
    try:
        with write_transaction(services.session_factory) as session:
            touch_key(session, key_id=key_id)
    except OperationalError:
        log.info("last_used_at not updated (database busy)")


def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != Role.ADMIN.value:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="admin role required")
    return user


ServicesDep = Annotated[Services, Depends(get_services)]
SessionDep = Annotated[Session, Depends(get_session)]
UserDep = Annotated[User, Depends(current_user)]
AdminDep = Annotated[User, Depends(admin_user)]
