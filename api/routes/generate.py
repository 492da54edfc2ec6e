"""``POST /v1/generate`` (and ``POST /generate``): queue a generation, optionally wait for it."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import contract, idempotency
from api.deps import Services, ServicesDep, UserDep, not_found
from api.idempotency import IdempotencyKeyHeader
from api.quotas import GenerateQuotaDep
from api.schemas import GenerateIn, GenerateOut, ImageRef, JobOut, UnknownTokenOut
from core.db import lists
from core.db.enqueue import GenerateRequest, create_generate_job, ready_tokens
from core.db.models import FINAL_JOB_STATES, GeneratedImage, Generation, Job, JobState
from core.vocabulary import prompt_tokens

router = APIRouter(tags=["generate"])
WAIT_POLL_SECONDS = 0.1


class GenerateRefused(Exception):
    def __init__(self, status_code: int, body: dict[str, object]) -> None:
        self.status_code, self.body = status_code, body


def image_ref(image: GeneratedImage) -> ImageRef:
    """How an answer points at a stored image."""
    return ImageRef(id=image.id, url=f"/v1/images/{image.id}", width=image.width, height=image.height)


def image_refs(session: Session, *, generation_id: str) -> list[ImageRef]:
    images = lists.images_of(session, generation_ids=[generation_id])[generation_id]
    return [image_ref(image) for image in images]


def _refuse_over_limits(services: Services, *, body: GenerateIn) -> int:
    """The request's sampling steps; ``GenerateRefused`` when a field is over its limit."""
    settings = services.settings
    if len(body.prompt) > settings.generate_max_prompt_chars or len(body.negative_prompt) > (
        settings.generate_max_prompt_chars
    ):
        raise GenerateRefused(
            422, {"detail": f"prompts are limited to {settings.generate_max_prompt_chars} characters"}
        )
    if body.n > settings.generate_max_images:
        raise GenerateRefused(422, {"detail": f"n must be at most {settings.generate_max_images}"})
    steps = body.steps or settings.generate_default_steps
    if steps > settings.generate_max_steps:
        raise GenerateRefused(422, {"detail": f"steps must be at most {settings.generate_max_steps}"})
    return steps


def _create(session: Session, *, services: Services, user_id: str, body: GenerateIn, steps: int) -> Job:
    """The generation and its job, in the caller's transaction; ``GenerateRefused`` for unknown tokens."""
    known = ready_tokens(session, user_id=user_id)
    used = prompt_tokens(body.prompt) + prompt_tokens(body.negative_prompt)
    unknown = list(dict.fromkeys(t for t in used if t not in known))
    if unknown:
        listed = ", ".join(known) if known else "none yet"
        raise GenerateRefused(
            422,
            UnknownTokenOut(
                detail=f"unknown token(s) {', '.join(unknown)} in prompt; your tokens: {listed}",
                unknown_tokens=unknown,
                your_tokens=known,
            ).model_dump(),
        )
    request = GenerateRequest(
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        n=body.n,
        steps=steps,
        guidance_scale=body.guidance_scale,
        seed=body.seed,
    )
    _generation, job = create_generate_job(
        session, user_id=user_id, request=request, max_attempts=services.settings.job_max_attempts
    )
    return job


def _enqueue(services: Services, *, user_id: str, body: GenerateIn, key: str | None) -> idempotency.Created:
    """The job of this request: an earlier one with the same ``Idempotency-Key``, else a new one."""
    keyed = {"operation": "generate", **body.model_dump()}
    earlier = idempotency.replay(services, user_id=user_id, key=key, request=keyed)
    if earlier is not None:
        return earlier
    steps = _refuse_over_limits(services, body=body)
    return idempotency.create_once(
        services,
        user_id=user_id,
        key=key,
        request=keyed,
        create=lambda session: _create(session, services=services, user_id=user_id, body=body, steps=steps),
    )


def _result(services: Services, *, job_id: str) -> GenerateOut:
    with services.session_factory() as session:
        job = session.get(Job, job_id)
        generation_id = session.scalar(select(Generation.id).where(Generation.job_id == job_id))
        if job is None or generation_id is None:  # the account was erased while we waited
            raise not_found()
        images = image_refs(session, generation_id=generation_id) if job.state == JobState.SUCCEEDED else []
        return GenerateOut(job=JobOut.model_validate(job), generation_id=generation_id, images=images)


async def _generate(
    body: GenerateIn,
    user: UserDep,
    _quota: GenerateQuotaDep,
    services: ServicesDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    try:
        created = await run_in_threadpool(_enqueue, services, user_id=user.id, body=body, key=idempotency_key)
    except GenerateRefused as refused:
        return JSONResponse(status_code=refused.status_code, content=refused.body)
    if not created.replayed:
        await run_in_threadpool(services.dispatch)
    wait = min(body.wait, services.settings.generate_max_wait_seconds)
    deadline = time.monotonic() + wait
    out = await run_in_threadpool(_result, services, job_id=created.job_id)
    while out.job.state not in FINAL_JOB_STATES and time.monotonic() < deadline:
        await asyncio.sleep(WAIT_POLL_SECONDS)
        out = await run_in_threadpool(_result, services, job_id=created.job_id)
    done = out.job.state in FINAL_JOB_STATES
    code = status.HTTP_200_OK if done and wait > 0 else status.HTTP_202_ACCEPTED
    return JSONResponse(status_code=code, content=out.model_dump(mode="json"), headers=created.headers)


RESPONSES: contract.Responses = {
    200: {"model": GenerateOut, "description": "finished within `wait` seconds"},
    202: {"model": GenerateOut, "description": "queued (poll GET /v1/jobs/{id})"},
    **contract.BODY,
    404: contract.error("the account was erased while the request waited"),
    422: idempotency.with_key_refusal(contract.GENERATE_INVALID),
}

router.add_api_route(
    "/v1/generate",
    _generate,
    methods=["POST"],
    status_code=202,
    response_model=GenerateOut,
    responses=RESPONSES,
    summary="Generate images (202 with the job; 200 with the images when `wait` suffices)",
)
router.add_api_route(
    "/generate",
    _generate,
    methods=["POST"],
    status_code=202,
    response_model=GenerateOut,
    responses=RESPONSES,
    summary="Same as POST /v1/generate",
    operation_id="generate_short_path",
)
