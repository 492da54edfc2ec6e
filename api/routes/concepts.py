"""``/v1/concepts``: upload a concept's images (one new task of the user's sequence), list, get."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, HTTPException, Response, UploadFile, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import contract, idempotency, pagination
from api.deps import Services, ServicesDep, SessionDep, UserDep, not_found
from api.idempotency import IdempotencyKeyHeader
from api.pagination import DEFAULT_PAGE, Cursor, Limit
from api.quotas import ConceptQuotaDep
from api.schemas import ConceptCreated, ConceptList, ConceptOut, JobOut
from core.db import lists
from core.db.enqueue import ConceptExistsError, TrainRequest, create_train_job
from core.db.models import Concept, Job, JobKind
from core.faults import crash_point
from core.storage import StoredFile
from core.uploads import UploadError, validate_images
from core.vocabulary import CONCEPT_NAME, DEFAULT_METHOD, METHOD_NAMES, NAME_RULE, is_concept_name

router = APIRouter(prefix="/v1/concepts", tags=["concepts"])
CLASS_WORD = re.compile(r"^[A-Za-z][A-Za-z '-]{0,63}$")
# The grammars, documented in the OpenAPI document; _validate_fields checks them with its messages.
NAME_SCHEMA = {"pattern": f"^{CONCEPT_NAME.pattern}$"}
CLASS_WORD_SCHEMA = {"pattern": CLASS_WORD.pattern}

UPLOAD_ERRORS: contract.Responses = {
    **contract.BODY,
    409: contract.error("a concept with this name exists"),
    413: contract.error("a file, the image or the request is too large"),
    415: contract.error("a file is not a JPEG, PNG or WebP image"),
}  # 422 (a refused field or a corrupt image, too) is contract.COMMON's


def concepts_out(session: Session, concepts: list[Concept]) -> list[ConceptOut]:
    """Concepts with the id of their (latest) training job, in one query for all of them."""
    ids = [c.id for c in concepts]
    latest: dict[str, str] = {}
    if ids:
        rows = session.execute(
            select(Job.concept_id, Job.id)
            .where(Job.concept_id.in_(ids), Job.kind == JobKind.TRAIN.value)
            .order_by(Job.seq)
        )
        latest = {concept_id: job_id for concept_id, job_id in rows}
    return [ConceptOut.model_validate(c).model_copy(update={"job_id": latest.get(c.id)}) for c in concepts]


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=message)


def _validate_fields(
    *, name: str, class_word: str | None, method: str | None, steps: int | None, max_steps: int
) -> TrainRequest:
    if not is_concept_name(name):
        raise _unprocessable(f"name must be {NAME_RULE}")
    class_word = (class_word or "").strip() or None
    if class_word is not None and not CLASS_WORD.fullmatch(class_word):
        raise _unprocessable("class_word must be 1-64 letters (spaces, ' and - allowed), e.g. 'dog'")
    method = (method or "").strip() or DEFAULT_METHOD
    if method not in METHOD_NAMES:
        raise _unprocessable(f"unknown method {method!r}; known methods: {', '.join(sorted(METHOD_NAMES))}")
    if steps is not None and not 1 <= steps <= max_steps:
        raise _unprocessable(f"steps must be between 1 and {max_steps}")
    return TrainRequest(name=name, class_word=class_word, method=method, steps=steps)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ConceptCreated,
    responses={**UPLOAD_ERRORS, **idempotency.RESPONSES},
    summary="Upload a concept's images and queue its training",
)
def create_concept(
    user: UserDep,
    _quota: ConceptQuotaDep,
    services: ServicesDep,
    background: BackgroundTasks,
    response: Response,
    name: Annotated[
        str, Form(description="a slug; the concept's token is <name>", json_schema_extra=NAME_SCHEMA)
    ],
    images: Annotated[list[UploadFile], File(description="JPEG, PNG or WebP; repeat the field per file")],
    class_word: Annotated[
        str | None, Form(description="e.g. 'dog'; initialises the token", json_schema_extra=CLASS_WORD_SCHEMA)
    ] = None,
    method: Annotated[str | None, Form(description=f"default {DEFAULT_METHOD}")] = None,
    steps: Annotated[int | None, Form(description="training steps (default from the engine preset)")] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> ConceptCreated:
    request = _validate_fields(
        name=name,
        class_word=class_word,
        method=method,
        steps=steps,
        max_steps=services.settings.train_max_steps,
    )
    limits = services.upload_limits
    if len(images) > limits.max_files:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"at most {limits.max_files} images per concept, got {len(images)}",
        )
    files = [(upload.filename, upload.file.read(limits.max_bytes + 1)) for upload in images]
    keyed = {
        "operation": "concepts.create",
        **asdict(request),
        "images": [hashlib.sha256(data).hexdigest() for _, data in files],
    }
    earlier = idempotency.replay(services, user_id=user.id, key=idempotency_key, request=keyed)
    if earlier is None:
        earlier = _store_and_queue(
            services, user_id=user.id, request=request, files=files, key=idempotency_key, keyed=keyed
        )
        background.add_task(services.dispatch)
    del files
    response.headers.update(earlier.headers)
    return created_out(services, job_id=earlier.job_id)


def _store_and_queue(
    services: Services,
    *,
    user_id: str,
    request: TrainRequest,
    files: list[tuple[str | None, bytes]],
    key: str | None,
    keyed: dict[str, object],
) -> idempotency.Created:
    """Validate and store the images, then the concept and its job (once per key)."""
    with services.session_factory() as session:
        if session.scalar(select(Concept.id).where(Concept.user_id == user_id, Concept.name == request.name)):
            raise HTTPException(
                status_code=status.HTTP_409_CONFLICT, detail=str(ConceptExistsError(request.name))
            )
    try:
        cleaned = validate_images(files, limits=services.upload_limits)
    except UploadError as error:
        raise HTTPException(status_code=error.status, detail=error.message) from None
    stored: list[StoredFile] = []
    try:
        for image in cleaned:
            stored.append(services.store.write_bytes(services.store.new_upload_path(), image.png))
            crash_point("api.upload.partial")  # docs/faults.md
        crash_point("api.upload.before_commit")
        created = idempotency.create_once(
            services,
            user_id=user_id,
            key=key,
            request=keyed,
            create=lambda tx: create_train_job(
                tx,
                user_id=user_id,
                request=request,
                uploads=stored,
                max_attempts=services.settings.job_max_attempts,
            )[1],
        )
    except BaseException as error:
        services.store.delete_many([s.path for s in stored])
        if isinstance(error, ConceptExistsError | IntegrityError):
            raise HTTPException(
                status_code=status.HTTP_409_CONFLICT, detail=str(ConceptExistsError(request.name))
            ) from None
        raise
    crash_point("api.upload.after_commit")
    if created.replayed:  # a concurrent request with the same key made the job: these files are spare
        services.store.delete_many([s.path for s in stored])
    return created


def created_out(services: Services, *, job_id: str) -> ConceptCreated:
    """The answer of an upload: its concept and training job as they are now."""
    with services.session_factory() as session:
        job = session.get(Job, job_id)
        concept = session.get(Concept, job.concept_id) if job and job.concept_id else None
        if job is None or concept is None:  # the account was erased meanwhile
            raise not_found()
        return ConceptCreated(
            concept=ConceptOut.model_validate(concept).model_copy(update={"job_id": job.id}),
            job=JobOut.model_validate(job),
        )


@router.get(
    "",
    response_model=ConceptList,
    responses=contract.PAGE,
    summary="Your concepts, oldest first (paginated)",
)
def list_concepts(
    user: UserDep, session: SessionDep, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> ConceptList:
    after = pagination.time_and_id(cursor)
    rows = lists.concepts(session, user_id=user.id, limit=limit + 1, after=after)
    shown, next_cursor = pagination.page(rows, limit=limit, key=lambda c: (c.created_at, c.id))
    return ConceptList(concepts=concepts_out(session, shown), next_cursor=next_cursor)


@router.get("/{concept_id}", response_model=ConceptOut, responses=contract.NOT_FOUND)
def get_concept(concept_id: str, user: UserDep, session: SessionDep) -> ConceptOut:
    concept = session.scalar(select(Concept).where(Concept.id == concept_id, Concept.user_id == user.id))
    if concept is None:
        raise not_found()
    return concepts_out(session, [concept])[0]
