"""``/v1/admin/users``: create, list (paginated, with totals), disable/enable, rotate keys (admin role)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api import admin_views, contract
from api.admin_schemas import UserPage
from api.deps import AdminDep, ServicesDep, SessionDep, not_found
from api.pagination import Cursor, Limit
from api.schemas import UserCreate, UserOut, UserUpdate, UserWithKey
from core.db.models import ApiKey, User
from core.db.session import write_transaction
from core.db.users import UserError, UserExistsError, create_user, rotate_key, set_disabled

router = APIRouter(prefix="/v1/admin/users", tags=["admin"])
EXISTS = {409: contract.error("a user with this name exists")}
SELF = {409: contract.error("you cannot disable your own account")}
DEFAULT_PAGE = 100


def user_out(session: Session, user: User) -> UserOut:
    keys = session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
    )
    return UserOut.model_validate(user).model_copy(update={"active_keys": int(keys or 0)})


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserWithKey,
    responses={**contract.BODY, **EXISTS},
    summary="Create a user",
)
def create(body: UserCreate, admin: AdminDep, services: ServicesDep) -> UserWithKey:
    try:
        with write_transaction(services.session_factory) as session:
            issued = create_user(
                session,
                name=body.name,
                role=body.role,
                pepper=services.settings.pepper,
                actor_user_id=admin.id,
            )
            out = user_out(session, issued.user)
    except UserError as error:
        code = status.HTTP_409_CONFLICT if isinstance(error, UserExistsError) else 422
        raise HTTPException(status_code=code, detail=str(error)) from None
    return UserWithKey(user=out, api_key=issued.key, key_prefix=issued.prefix)


@router.get(
    "",
    response_model=UserPage,
    responses=contract.PAGE,
    summary="Users with their totals, in creation order (paginated)",
)
def list_all(
    admin: AdminDep,
    session: SessionDep,
    limit: Limit = DEFAULT_PAGE,
    cursor: Cursor = None,
) -> UserPage:
    return admin_views.users_page(session, limit=limit, cursor=cursor)


def _user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise not_found()
    return user


@router.patch("/{user_id}", response_model=UserOut, responses={**contract.NOT_FOUND, **contract.BODY, **SELF})
def update(user_id: str, body: UserUpdate, admin: AdminDep, services: ServicesDep) -> UserOut:
    if user_id == admin.id and body.disabled:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT, detail="you cannot disable your own account"
        )
    with write_transaction(services.session_factory) as session:
        user = _user(session, user_id)
        set_disabled(session, user=user, disabled=body.disabled, actor_user_id=admin.id)
        return user_out(session, user)


@router.post("/{user_id}/disable", response_model=UserOut, responses={**contract.NOT_FOUND, **SELF})
def disable(user_id: str, admin: AdminDep, services: ServicesDep) -> UserOut:
    return update(user_id, UserUpdate(disabled=True), admin, services)


@router.post("/{user_id}/enable", response_model=UserOut, responses=contract.NOT_FOUND)
def enable(user_id: str, admin: AdminDep, services: ServicesDep) -> UserOut:
    return update(user_id, UserUpdate(disabled=False), admin, services)


@router.post(
    "/{user_id}/rotate",
    response_model=UserWithKey,
    responses=contract.NOT_FOUND,
    summary="Issue a new key and revoke the old ones",
)
def rotate(user_id: str, admin: AdminDep, services: ServicesDep) -> UserWithKey:
    with write_transaction(services.session_factory) as session:
        user = _user(session, user_id)
        issued = rotate_key(session, user=user, pepper=services.settings.pepper, actor_user_id=admin.id)
        out = user_out(session, user)
    return UserWithKey(user=out, api_key=issued.key, key_prefix=issued.prefix)
