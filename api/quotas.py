"""Per-user quotas as FastAPI dependencies of ``POST /v1/concepts`` and ``POST /v1/generate``.

The policy is ``api.limits.Quotas``, the counting ``core.db.quotas``; a refused request answers 429
with ``Retry-After`` before anything is stored or queued (docs/service.md, "Quotas and rate
limits"). The counts are read in a short transaction of their own, so requests of one user that
race each other may pass a quota by the number in flight.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends

from api.deps import ServicesDep, UserDep
from api.idempotency import IdempotencyKeyHeader
from api.limits import Quotas
from api.schemas import GenerateIn
from core.db.idempotency import live_key
from core.db.models import utcnow
from core.db.quotas import concept_count, images_requested_since, unfinished_job_count


def concept_quota(user: UserDep, services: ServicesDep, key: IdempotencyKeyHeader = None) -> None:
    """A new concept: under the concepts and the unfinished-jobs quotas."""
    quotas = Quotas.from_settings(services.settings)
    with services.session_factory() as session:
        if key is not None and live_key(session, user_id=user.id, key=key):
            return  # a retry of a request already counted (docs/api.md, "Idempotency-Key")
        quotas.check_concepts(concept_count(session, user_id=user.id))
        quotas.check_unfinished_jobs(unfinished_job_count(session, user_id=user.id))


def generate_quota(
    body: GenerateIn, user: UserDep, services: ServicesDep, key: IdempotencyKeyHeader = None
) -> None:
    """A new generation of ``body.n`` images: under the unfinished-jobs and the images quotas."""
    quotas = Quotas.from_settings(services.settings)
    now = utcnow()
    since = now - timedelta(seconds=quotas.window_seconds)
    with services.session_factory() as session:
        if key is not None and live_key(session, user_id=user.id, key=key):
            return  # a retry of a request already counted (docs/api.md, "Idempotency-Key")
        quotas.check_unfinished_jobs(unfinished_job_count(session, user_id=user.id))
        requested = images_requested_since(session, user_id=user.id, since=since)
    quotas.check_images(requested, n=body.n, now=now)


ConceptQuotaDep = Annotated[None, Depends(concept_quota)]
GenerateQuotaDep = Annotated[None, Depends(generate_quota)]
