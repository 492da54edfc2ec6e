"""``/v1/concepts``: upload a concept's images (one new task of the user's sequence), list, get."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, HTTPException, UploadFile, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import contract
from api.deps import ServicesDep, SessionDep, UserDep, not_found
from api.quotas import ConceptQuotaDep
from api.schemas import ConceptCreated, ConceptList, ConceptOut, JobOut
from core.db.enqueue import ConceptExistsError, TrainRequest, create_train_job
from core.db.models import Concept, Job, JobKind
from core.db.session import write_transaction
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
    responses=UPLOAD_ERRORS,
    summary="Upload a concept's images and queue its training",
)
def create_concept(
    user: UserDep,
    _quota: ConceptQuotaDep,
    session: SessionDep,
    services: ServicesDep,
    background: BackgroundTasks,
    name: Annotated[
        str, Form(description="a slug; the concept's token is <name>", json_schema_extra=NAME_SCHEMA)
    ],
    images: Annotated[list[UploadFile], File(description="JPEG, PNG or WebP; repeat the field per file")],
    class_word: Annotated[
        str | None, Form(description="e.g. 'dog'; initialises the token", json_schema_extra=CLASS_WORD_SCHEMA)
    ] = None,
    method: Annotated[str | None, Form(description=f"default {DEFAULT_METHOD}")] = None,
    steps: Annotated[int | None, Form(description="training steps (default from the engine preset)")] = None,
) -> ConceptCreated:
    request = _validate_fields(
        name=name,
        class_word=class_word,
        method=method,
        steps=steps,
        max_steps=services.settings.train_max_steps,
    )
    if session.scalar(select(Concept.id).where(Concept.user_id == user.id, Concept.name == request.name)):
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT, detail=str(ConceptExistsError(request.name))
        )
    limits = services.upload_limits
    if len(images) > limits.max_files:
        raise HTTPException(
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"at most {limits.max_files} images per concept, got {len(images)}",
        )
    files = [(upload.filename, upload.file.read(limits.max_bytes + 1)) for upload in images]
    try:
        cleaned = validate_images(files, limits=limits)
    except UploadError as error:
        raise HTTPException(status_code=error.status, detail=error.message) from None
    finally:
        del files
    stored: list[StoredFile] = []
    try:
        for image in cleaned:
            stored.append(services.store.write_bytes(services.store.new_upload_path(), image.png))
            crash_point("api.upload.partial")  # docs/faults.md
        crash_point("api.upload.before_commit")
        with write_transaction(services.session_factory) as tx:
            concept, job = create_train_job(
                tx,
                user_id=user.id,
                request=request,
                uploads=stored,
                max_attempts=services.settings.job_max_attempts,
            )
    except BaseException as error:
        services.store.delete_many([s.path for s in stored])
        if isinstance(error, ConceptExistsError | IntegrityError):
            raise HTTPException(
                status_code=status.HTTP_409_CONFLICT, detail=str(ConceptExistsError(request.name))
            ) from None
        raise
    crash_point("api.upload.after_commit")
    background.add_task(services.dispatch)
    return ConceptCreated(
        concept=ConceptOut.model_validate(concept).model_copy(update={"job_id": job.id}),
        job=JobOut.model_validate(job),
    )


@router.get("", response_model=ConceptList, summary="Your concepts, oldest first")
def list_concepts(user: UserDep, session: SessionDep) -> ConceptList:
    concepts = session.scalars(
        select(Concept).where(Concept.user_id == user.id).order_by(Concept.created_at, Concept.name)
    ).all()
    return ConceptList(concepts=concepts_out(session, list(concepts)))


@router.get("/{concept_id}", response_model=ConceptOut, responses=contract.NOT_FOUND)
def get_concept(concept_id: str, user: UserDep, session: SessionDep) -> ConceptOut:
    concept = session.scalar(select(Concept).where(Concept.id == concept_id, Concept.user_id == user.id))
    if concept is None:
        raise not_found()
    return concepts_out(session, [concept])[0]
