"""The relay's side of the webhook outbox: claim due deliveries, record each attempt, list, prune.

A claim is a conditional ``UPDATE`` (the row is still pending and due, as it was read) that counts
the attempt and pushes ``next_attempt_at`` past the attempt's timeout: a lease, so two relays (one
per worker) never send the same attempt, and a relay that dies mid-send leaves the delivery to be
retried when the lease runs out. An attempt's outcome is written only while the attempt is still
the row's last (docs/webhooks.md, "Delivery and retries").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import keyset
from core.db.models import DeliveryStatus, Webhook, WebhookDelivery, utcnow
from core.db.session import write_transaction
from core.webhooks.sender import Outgoing, SendResult

ERROR_CHARS = 255
PENDING = DeliveryStatus.PENDING.value


@dataclass(frozen=True)
class Claimed:
    outgoing: Outgoing
    secret_salt: str
    secret_check: str


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds before the attempt after ``attempt``: exponential, capped, with "equal" jitter
        (between half and all of ``base * 2**(attempt - 1)``), so failing receivers' retries spread."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * (rng or random).random())


def claim_due(
    session_factory: sessionmaker[Session],
    *,
    limit: int,
    lease_seconds: float,
    busy_webhooks: frozenset[str] = frozenset(),
    now: datetime | None = None,
) -> list[Claimed]:
    """Take up to ``limit`` due deliveries, the oldest first, at most one per webhook, none of a
    webhook in ``busy_webhooks`` (one the caller is still sending to).

    The due rows are read without the write lock (a pass with nothing due writes nothing, which
    matters on SQLite); each is then taken by its conditional ``UPDATE``.
    """
    now = now or utcnow()
    with session_factory() as session:
        due = session.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.webhook_id,
                WebhookDelivery.event,
                WebhookDelivery.body,
                WebhookDelivery.attempts,
                Webhook.url,
                Webhook.secret_salt,
                Webhook.secret_check,
            )
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
            .limit(limit * 4 + len(busy_webhooks))
        ).all()
    if not due:
        return []
    claimed: list[Claimed] = []
    taken = set(busy_webhooks)
    with write_transaction(session_factory) as session:
        for row in due:
            if len(claimed) >= limit or row.webhook_id in taken:
                continue
            if not _take(
                session, delivery_id=row.id, attempts=row.attempts, lease_seconds=lease_seconds, now=now
            ):
                continue
            taken.add(row.webhook_id)
            outgoing = Outgoing(
                delivery_id=row.id,
                webhook_id=row.webhook_id,
                url=row.url,
                event=row.event,
                body=row.body,
                attempt=row.attempts + 1,
            )
            claimed.append(
                Claimed(outgoing=outgoing, secret_salt=row.secret_salt, secret_check=row.secret_check)
            )
    return claimed


def _take(session: Session, *, delivery_id: str, attempts: int, lease_seconds: float, now: datetime) -> bool:
    """Count an attempt and lease the row, if it is still pending at ``attempts`` (nobody took it)."""
    taken = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.attempts == attempts,
        )
        .values(
            attempts=attempts + 1,
            last_attempt_at=now,
            next_attempt_at=now + timedelta(seconds=lease_seconds),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    return taken == 1


def record_attempt(
    session_factory: sessionmaker[Session],
    *,
    outgoing: Outgoing,
    result: SendResult,
    policy: RetryPolicy,
    now: datetime | None = None,
) -> str:
    """Write the attempt's outcome; returns the delivery's status (unchanged if the attempt is stale,
    ``"deleted"`` if the webhook went meanwhile)."""
    now = now or utcnow()
    values: dict[str, object] = {"last_status_code": result.status_code, "last_error": None}
    if result.ok:
        values.update(status=DeliveryStatus.SUCCEEDED.value, delivered_at=now)
    elif outgoing.attempt >= policy.max_attempts:
        values.update(status=DeliveryStatus.FAILED.value, last_error=(result.error or "")[:ERROR_CHARS])
    else:
        delay = timedelta(seconds=policy.delay(outgoing.attempt))
        values.update(next_attempt_at=now + delay, last_error=(result.error or "")[:ERROR_CHARS])
    with write_transaction(session_factory) as session:
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == outgoing.delivery_id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.attempts == outgoing.attempt,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        status = session.scalar(
            select(WebhookDelivery.status).where(WebhookDelivery.id == outgoing.delivery_id)
        )
        return status or "deleted"


DELIVERY_ORDER = (WebhookDelivery.created_at, WebhookDelivery.id)


def recent_deliveries(
    session: Session, *, user_id: str, limit: int, before: tuple[datetime, str] | None = None
) -> list[WebhookDelivery]:
    """The user's deliveries, newest first (``limit`` rows after the ``before`` sort key)."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.user_id == user_id, keyset.after(DELIVERY_ORDER, before, descending=True))
        .order_by(*keyset.order(DELIVERY_ORDER, descending=True))
        .limit(limit)
    )
    return list(session.scalars(query))


def prune_finished(session_factory: sessionmaker[Session], *, older_than: timedelta) -> int:
    """Delete succeeded and failed deliveries created more than ``older_than`` ago."""
    cutoff = utcnow() - older_than
    with write_transaction(session_factory) as session:
        return int(
            session.execute(
                delete(WebhookDelivery).where(
                    WebhookDelivery.status != PENDING, WebhookDelivery.created_at < cutoff
                )
            ).rowcount
        )
