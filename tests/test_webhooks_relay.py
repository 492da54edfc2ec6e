"""Webhook deliveries, end to end through the database and a real HTTP receiver on loopback.

Events are written by the job protocol's own transitions (``core.db.enqueue``, ``core.db.jobs``,
``core.db.cleanup``) and sent by ``core.webhooks.relay.Relay``; the receiver is a threaded HTTP
server in the test (``tests.webhook_receiver``). SQLite and PostgreSQL (docs/webhooks.md).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import webhooks
from core.db.cleanup import delete_raw_uploads
from core.db.enqueue import GenerateRequest, TrainRequest, create_generate_job, create_train_job
from core.db.jobs import claim_job, fail_job, heartbeat, request_cancel
from core.db.models import DeliveryStatus, Webhook, WebhookDelivery
from core.db.session import write_transaction
from core.db.webhook_deliveries import RetryPolicy
from core.storage import LocalStore
from core.webhooks.events import EVENTS
from core.webhooks.relay import WRONG_PEPPER, Relay, RelayConfig
from core.webhooks.signing import new_salt, secret_check, secret_for, verify
from tests.webhook_receiver import Receiver

PEPPER = b"test-pepper"
BASE = 0.1  # first retry delay; then 0.2, 0.4 (each 50-100 % of that)


def relay_config(*, timeout: float = 2.0, max_attempts: int = 3, allow_private: bool = True) -> RelayConfig:
    policy = RetryPolicy(max_attempts=max_attempts, base_seconds=BASE, max_seconds=4 * BASE)
    return RelayConfig(timeout_seconds=timeout, allow_private=allow_private, threads=4, policy=policy)


@pytest.fixture
def relays(session_factory: sessionmaker[Session]) -> Iterator[Callable[..., Relay]]:
    """``relays(pepper=PEPPER, **relay_config)``: relays over the test database, closed afterwards."""
    made: list[Relay] = []

    def make(*, pepper: bytes = PEPPER, **config: object) -> Relay:
        made.append(Relay(session_factory=session_factory, pepper=pepper, config=relay_config(**config)))
        return made[-1]

    yield make
    for relay in made:
        relay.close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kwargs: object) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def hook(factory: sessionmaker[Session], *, user_id: str, url: str, events: tuple[str, ...] = EVENTS) -> str:
    """Configure the user's webhook; returns its secret."""
    with write_transaction(factory) as session:
        secret = webhooks.configure(
            session, user_id=user_id, url=url, events=list(events), pepper=PEPPER
        ).secret
    assert secret is not None
    return secret


def queue_training(
    factory: sessionmaker[Session], *, user_id: str, name: str, uploads: list | None = None
) -> str:
    request = TrainRequest(name=name, class_word="dog", method="dsc_ewc_dc", steps=None)
    with write_transaction(factory) as session:
        _, job = create_train_job(
            session, user_id=user_id, request=request, uploads=uploads or [], max_attempts=3
        )
        return job.id


def deliveries(factory: sessionmaker[Session], *, user_id: str) -> list[WebhookDelivery]:
    with factory() as session:
        query = select(WebhookDelivery).where(WebhookDelivery.user_id == user_id)
        return list(session.scalars(query.order_by(WebhookDelivery.created_at)))


def run_until(relay: Relay, done: Callable[[], bool], *, timeout: float) -> float:
    """Run relay passes until ``done()``; returns the seconds it took."""
    start = time.monotonic()
    while not done():
        assert time.monotonic() - start < timeout, f"not done after {timeout} s"
        relay.run_once()
        time.sleep(0.02)
    return time.monotonic() - start


def test_job_events_arrive_in_order_signed_and_carry_ids_and_states_only(
    session_factory, new_user, relays, receivers, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    user_id, _ = new_user(session_factory, "alice")
    receiver = receivers()
    secret = hook(session_factory, user_id=user_id, url=receiver.url)
    store = LocalStore(tmp_path / "data")
    upload = store.write_bytes(f"uploads/{uuid.uuid4()}", b"raw image bytes")
    job_id = queue_training(session_factory, user_id=user_id, name="secret-pet", uploads=[upload])
    claim = claim_job(session_factory, job_id=job_id, worker_id="test:1", lease_seconds=30)
    for phase, step in [("train", 1), ("train", 2), ("dsc", 1)]:  # one event per phase, not per beat
        progress = {"phase": phase, "step": step, "total": 4, "loss": 0.5}
        heartbeat(session_factory, **claim.fence, lease_seconds=30, progress=progress)
    fail_job(session_factory, **claim.fence, error="bad images in secret-pet", final=True)
    delete_raw_uploads(session_factory, store, job_id=job_id)

    def settled() -> bool:  # the receiver logs a request before it answers; the relay then records it
        rows = deliveries(session_factory, user_id=user_id)
        return len(receiver.received) == 6 and all(row.status != DeliveryStatus.PENDING.value for row in rows)

    run_until(relays(), settled, timeout=20)

    assert receiver.events() == [
        "job.queued",
        "job.started",
        "job.progress",
        "job.progress",
        "job.failed",
        "images.deleted",
    ]
    documents = [request.document for request in receiver.received]
    for request, document in zip(receiver.received, documents, strict=True):
        assert verify(secret, header=request.headers["mnemo-signature"], body=request.body)
        assert not verify(secret + "x", header=request.headers["mnemo-signature"], body=request.body)
        assert request.headers["idempotency-key"] == document["id"]
        assert request.headers["mnemo-event"] == document["type"]
        assert "secret-pet" not in request.body and "bad images" not in request.body
    jobs = [document["data"]["job"] for document in documents[:5]]
    assert {job["id"] for job in jobs} == {job_id}
    assert [job["state"] for job in jobs] == ["queued", "running", "running", "running", "failed"]
    assert [job["progress"]["phase"] for job in jobs[2:4]] == ["train", "dsc"]
    assert documents[5]["data"] == {"job_id": job_id, "concept_id": jobs[0]["concept_id"], "files": 1}
    rows = deliveries(session_factory, user_id=user_id)
    assert [(row.status, row.attempts) for row in rows] == [("succeeded", 1)] * 6


def test_an_event_is_written_only_with_the_change_it_reports(session_factory, new_user) -> None:  # type: ignore[no-untyped-def]
    user_id, _ = new_user(session_factory, "alice")
    hook(session_factory, user_id=user_id, url="https://hooks.example.com/in")
    job_id = queue_training(session_factory, user_id=user_id, name="mug")
    with pytest.raises(RuntimeError), write_transaction(session_factory) as session:
        request = TrainRequest(name="dog", class_word=None, method="dsc_ewc_dc", steps=None)
        create_train_job(session, user_id=user_id, request=request, uploads=[], max_attempts=3)
        raise RuntimeError("the request failed after writing its job")  # rolled back, event too
    claim = claim_job(session_factory, job_id=job_id, worker_id="test:1", lease_seconds=30)
    stale = {"job_id": job_id, "fencing_token": claim.fencing_token + 1}
    assert fail_job(session_factory, **stale, error="late", final=True) is False  # fenced: no change

    assert [row.event for row in deliveries(session_factory, user_id=user_id)] == [
        "job.queued",
        "job.started",
    ]


def test_the_event_filter_is_honoured_and_users_without_a_webhook_get_nothing(
    session_factory, new_user, relays, receivers
) -> None:  # type: ignore[no-untyped-def]
    alice, _ = new_user(session_factory, "alice")
    bob, _ = new_user(session_factory, "bob")
    receiver = receivers()
    secret = hook(session_factory, user_id=alice, url=receiver.url, events=("job.cancelled",))
    request = GenerateRequest(
        prompt="a watercolour of my secret garden",
        negative_prompt="",
        n=1,
        steps=2,
        guidance_scale=1.0,
        seed=0,
    )
    with write_transaction(session_factory) as session:
        _, generation_job = create_generate_job(session, user_id=alice, request=request, max_attempts=3)
    queue_training(session_factory, user_id=alice, name="mug")
    request_cancel(session_factory, job_id=generation_job.id)
    request_cancel(session_factory, job_id=queue_training(session_factory, user_id=bob, name="mug"))

    assert [row.event for row in deliveries(session_factory, user_id=alice)] == ["job.cancelled"]
    assert deliveries(session_factory, user_id=bob) == []
    relay = relays()
    run_until(relay, lambda: len(receiver.received) == 1, timeout=10)
    for _ in range(5):
        relay.run_once()
    time.sleep(0.2)
    assert receiver.events() == ["job.cancelled"]
    (sent,) = receiver.received
    assert sent.document["data"]["job"]["id"] == generation_job.id
    assert "garden" not in sent.body
    assert verify(secret, header=sent.headers["mnemo-signature"], body=sent.body)


def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_attempt_with_the_same_key(
    session_factory, new_user, relays, receivers
) -> None:  # type: ignore[no-untyped-def]
    user_id, _ = new_user(session_factory, "alice")
    receiver = receivers(statuses=[500, 503])
    secret = hook(session_factory, user_id=user_id, url=receiver.url)
    queue_training(session_factory, user_id=user_id, name="mug")

    def delivered() -> bool:
        return deliveries(session_factory, user_id=user_id)[0].status == DeliveryStatus.SUCCEEDED.value

    run_until(relays(), delivered, timeout=15)

    (row,) = deliveries(session_factory, user_id=user_id)
    assert (row.attempts, row.last_status_code, row.last_error) == (3, 200, None)
    first, second, third = receiver.received
    assert {request.headers["idempotency-key"] for request in receiver.received} == {row.id}
    assert [request.headers["mnemo-delivery-attempt"] for request in receiver.received] == ["1", "2", "3"]
    assert {request.body for request in receiver.received} == {first.body}  # the same event each time
    assert all(verify(secret, header=r.headers["mnemo-signature"], body=r.body) for r in receiver.received)
    assert second.at - first.at >= 0.5 * BASE  # backed off: 50-100 % of 0.1 s, then of 0.2 s
    assert third.at - second.at >= 0.5 * 2 * BASE


def test_a_receiver_that_never_answers_costs_its_timeout_and_others_still_get_theirs(
    session_factory, new_user, relays, receivers
) -> None:  # type: ignore[no-untyped-def]
    alice, _ = new_user(session_factory, "alice")
    bob, _ = new_user(session_factory, "bob")
    silent, answering = receivers(hang=True), receivers()
    hook(session_factory, user_id=alice, url=silent.url)
    hook(session_factory, user_id=bob, url=answering.url)
    queue_training(session_factory, user_id=alice, name="mug")  # alice's event is the older one
    queue_training(session_factory, user_id=bob, name="mug")
    relay = relays(timeout=1.0, max_attempts=2)

    assert run_until(relay, lambda: len(answering.received) == 1, timeout=5) < 1.0
    assert len(silent.received) == 1  # alice's attempt is still waiting for its answer
    queue_training(session_factory, user_id=bob, name="dog")
    run_until(relay, lambda: len(answering.received) == 2, timeout=5)

    def given_up() -> bool:
        return deliveries(session_factory, user_id=alice)[0].status == DeliveryStatus.FAILED.value

    assert run_until(relay, given_up, timeout=15) >= 1.0
    (row,) = deliveries(session_factory, user_id=alice)
    assert (row.attempts, row.last_status_code, row.last_error) == (2, None, "no answer within 1 s")
    assert [request.headers["idempotency-key"] for request in silent.received] == [row.id, row.id]
    assert [d.status for d in deliveries(session_factory, user_id=bob)] == ["succeeded", "succeeded"]


def test_the_relay_reaches_no_private_address_unless_allowed(
    session_factory, new_user, relays, receivers
) -> None:  # type: ignore[no-untyped-def]
    user_id, _ = new_user(session_factory, "alice")
    receiver = receivers()
    # Stored directly, as if set while the operator allowed it: the relay checks again at send time,
    # also for a host name that resolves to loopback.
    hook(session_factory, user_id=user_id, url=receiver.url.replace("127.0.0.1", "localhost"))
    queue_training(session_factory, user_id=user_id, name="mug")
    relay = relays(allow_private=False, max_attempts=1)

    run_until(relay, lambda: deliveries(session_factory, user_id=user_id)[0].status == "failed", timeout=10)

    (row,) = deliveries(session_factory, user_id=user_id)
    assert row.last_error == "the host resolves to an address that is not public"
    assert receiver.received == []


def test_a_process_with_another_pepper_signs_nothing(session_factory, new_user, relays, receivers) -> None:  # type: ignore[no-untyped-def]
    user_id, _ = new_user(session_factory, "alice")
    receiver = receivers()
    hook(session_factory, user_id=user_id, url=receiver.url)
    queue_training(session_factory, user_id=user_id, name="mug")

    run_until(
        relays(pepper=b"another-pepper", max_attempts=1),
        lambda: deliveries(session_factory, user_id=user_id)[0].status == "failed",
        timeout=10,
    )

    assert deliveries(session_factory, user_id=user_id)[0].last_error == WRONG_PEPPER
    assert receiver.received == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_secrets_are_derived_not_stored(session_factory, new_user) -> None:  # type: ignore[no-untyped-def]
    user_id, _ = new_user(session_factory, "alice")
    secret = hook(session_factory, user_id=user_id, url="https://hooks.example.com/in")
    with session_factory() as session:
        row = session.scalar(select(Webhook).where(Webhook.user_id == user_id))
    assert secret.startswith("whsec_") and secret not in repr(vars(row))
    assert secret_for(pepper=PEPPER, salt=row.secret_salt) == secret
    assert secret_check(secret) == row.secret_check
    assert secret_for(pepper=PEPPER, salt=new_salt()) != secret


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=10, max_seconds=100)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delays = {policy.delay(attempt, rng=rng) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) == 50  # jittered
