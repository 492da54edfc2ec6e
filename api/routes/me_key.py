"""``POST /v1/me/key``: rotate your own API key (docs/architecture.md, "Keys and sessions").

The new key is answered once and stored only as its HMAC digest; every older key of the account,
the one that made this request included, stops working at once (a key that may have leaked is
dead as soon as its owner rotates it). Mounted under ``/v1/me`` by ``api.routes``.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from api.deps import UNAUTHORIZED, ServicesDep, UserDep
from core.db.models import User
from core.db.session import write_transaction
from core.db.users import rotate_key

router = APIRouter()  # tags and prefix from the router of `me`


class RotatedKeyOut(BaseModel):
    api_key: str = Field(description="your new key, shown once: store it now")
    key_prefix: str = Field(description="the key's public prefix, as listed for the account")


@router.post(
    "/key",
    response_model=RotatedKeyOut,
    summary="Issue a new API key for yourself and revoke every older one (this one included)",
)
def rotate_my_key(user: UserDep, services: ServicesDep) -> RotatedKeyOut:
    with write_transaction(services.session_factory) as session:
        me = session.get(User, user.id)
        if me is None:  # erased since it authenticated: its keys are gone with it
            raise HTTPException(status_code=401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        issued = rotate_key(session, user=me, pepper=services.settings.pepper, actor_user_id=me.id)
        key, prefix = issued.key, issued.prefix
    return RotatedKeyOut(api_key=key, key_prefix=prefix)
