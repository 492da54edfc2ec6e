"""``/v1/me/webhook``: your webhook — its URL, the events it gets, its secret, its deliveries.

Events are written in the transaction of the change they report and sent by the workers' relay,
signed with the webhook's secret (``Mnemo-Signature``), retried with backoff (docs/webhooks.md).
The secret is answered once, when the webhook is created or the secret rotated; it is not stored
(``core.webhooks.signing``). The URL must be http(s) and, unless the operator allows private
addresses, may not name this machine or a private network (docs/webhooks.md, "Addresses and SSRF").
Mounted under ``/v1/me`` by ``api.routes``; ``DELETE /v1/me`` erases the webhook with the account.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api import contract, pagination
from api.deps import ServicesDep, SessionDep, UserDep, not_found
from api.schemas import CURSOR_DOC, InputModel, Text
from core.db import webhooks
from core.db.models import DeliveryStatus, Webhook
from core.db.session import write_transaction
from core.db.webhook_deliveries import recent_deliveries
from core.webhooks.events import EVENTS
from core.webhooks.urls import MAX_URL_CHARS, WebhookUrlError, check_url

router = APIRouter()  # tags and prefix from the router of `me`

EventName = Literal[EVENTS]  # type: ignore[valid-type]
DELIVERIES_PAGE = 100
SECRET = "the signing secret, only in the answer that created the webhook or rotated its secret: store it now"


class WebhookIn(InputModel):
    url: Text = Field(
        min_length=1, max_length=MAX_URL_CHARS, description="http(s) URL the events are POSTed to"
    )
    events: list[EventName] = Field(
        default_factory=lambda: list(EVENTS),
        min_length=1,
        max_length=len(EVENTS),
        description="the events to send (default: all)",
    )


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    url: str
    events: list[str]
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(default=None, description=SECRET)


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="also the delivery's Idempotency-Key header, the same on every attempt")
    event: str
    job_id: str | None
    status: DeliveryStatus = Field(
        description="pending (waiting for an attempt), succeeded or failed (gave up)"
    )
    attempts: int
    last_status_code: int | None = Field(description="the receiver's last HTTP status (None: no answer)")
    last_error: str | None = Field(description="why the last attempt failed")
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="when a pending delivery is tried next")
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut] = Field(description="newest first")
    next_cursor: str | None = Field(default=None, description=CURSOR_DOC)


def _out(webhook: Webhook, *, secret: str | None = None) -> WebhookOut:
    return WebhookOut.model_validate(webhook).model_copy(update={"secret": secret})


@router.put(
    "/webhook",
    response_model=WebhookOut,
    summary="Set your webhook's URL and events (the first time, the answer holds its secret)",
    responses={
        201: {"model": WebhookOut, "description": "created; the answer holds the secret, once"},
        **contract.BODY,
    },
)
def put_webhook(body: WebhookIn, user: UserDep, services: ServicesDep, response: Response) -> WebhookOut:
    try:
        url = check_url(body.url, allow_private=services.settings.webhook_allow_private_addresses)
    except WebhookUrlError as error:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(error)) from None
    with write_transaction(services.session_factory) as session:
        configured = webhooks.configure(
            session, user_id=user.id, url=url, events=list(body.events), pepper=services.settings.pepper
        )
        out = _out(configured.webhook, secret=configured.secret)
    if configured.created:
        response.status_code = status.HTTP_201_CREATED
    return out


@router.get("/webhook", response_model=WebhookOut, summary="Your webhook", responses=contract.NOT_FOUND)
def get_webhook(user: UserDep, session: SessionDep) -> WebhookOut:
    webhook = webhooks.get_webhook(session, user_id=user.id)
    if webhook is None:
        raise not_found()
    return _out(webhook)


@router.delete(
    "/webhook",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete your webhook and its deliveries",
    responses=contract.NOT_FOUND,
)
def delete_webhook(user: UserDep, services: ServicesDep) -> Response:
    with write_transaction(services.session_factory) as session:
        removed = webhooks.remove(session, user_id=user.id)
    if not removed:
        raise not_found()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/webhook/secret",
    response_model=WebhookOut,
    summary="Rotate your webhook's secret (the old one stops signing at once)",
    responses=contract.NOT_FOUND,
)
def rotate_webhook_secret(user: UserDep, services: ServicesDep) -> WebhookOut:
    with write_transaction(services.session_factory) as session:
        rotated = webhooks.rotate_secret(session, user_id=user.id, pepper=services.settings.pepper)
        if rotated is None:
            raise not_found()
        webhook, secret = rotated
        return _out(webhook, secret=secret)


@router.get(
    "/webhook/deliveries",
    response_model=DeliveryPage,
    summary="Your webhook's recent deliveries and their status, newest first",
    responses=contract.PAGE,
)
def list_deliveries(
    user: UserDep,
    session: SessionDep,
    limit: pagination.Limit = DELIVERIES_PAGE,
    cursor: pagination.Cursor = None,
) -> DeliveryPage:
    rows = recent_deliveries(session, user_id=user.id, limit=limit + 1, before=pagination.time_and_id(cursor))
    shown, next_cursor = pagination.page(rows, limit=limit, key=lambda row: (row.created_at, row.id))
    deliveries = [DeliveryOut.model_validate(row) for row in shown]
    for delivery in deliveries:
        if delivery.status is not DeliveryStatus.PENDING:
            delivery.next_attempt_at = None
    return DeliveryPage(deliveries=deliveries, next_cursor=next_cursor)
