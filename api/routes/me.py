"""``/v1/me``: who am I, and erase my account (adapters, Fisher, tokens, images, uploads, keys, jobs)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServicesDep, SessionDep, UserDep
from api.schemas import ErasureOut, MeOut
from core.db.erasure import erase_user

router = APIRouter(prefix="/v1/me", tags=["account"])


@router.get("", response_model=MeOut)
def me(user: UserDep) -> MeOut:
    return MeOut(id=user.id, name=user.name, role=user.role)  # type: ignore[arg-type]


@router.delete("", response_model=ErasureOut, summary="Erase your account and every file derived from it")
def erase_me(user: UserDep, session: SessionDep, services: ServicesDep) -> ErasureOut:
    session.close()
    report = erase_user(services.session_factory, store=services.store, user_id=user.id)
    return ErasureOut(
        erased=report.rows_user == 1 and report.paths_failed == 0,
        jobs=report.jobs,
        running_jobs_stopped=report.running_jobs_stopped,
        files_deleted=report.paths_deleted,
    )
