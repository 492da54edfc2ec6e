"""Webhooks from real processes: ``mnemo api`` + ``mnemo worker`` on PostgreSQL and Redis, with two
receivers on loopback — one that answers and one that accepts every request and never answers.

The silent receiver's user still gets their job trained on time (sending happens in the worker's
main process, never in the pool process that trains), and the other user's webhook gets every
event of their job, signed, while the silent one holds its single attempt (docs/webhooks.md).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import httpx
import pytest

from core.webhooks.signing import verify
from tests.service.conftest import Service
from tests.webhook_receiver import Receiver

TIMEOUT_SECONDS = 60  # a silent receiver holds one attempt this long
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def service_env() -> dict[str, str]:
    """The ``production`` processes' relay settings: loopback allowed, a long timeout, fast passes."""
    return {
        "MNEMO_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
        "MNEMO_WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "MNEMO_WEBHOOK_RELAY_INTERVAL_SECONDS": "0.2",
    }


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    silent, answering = Receiver(hang=True), Receiver()
    yield silent, answering
    silent.close()
    answering.close()


def _upload(http: httpx.Client, headers: dict[str, str], *, images: list[bytes]) -> str:
    files = [("images", (f"photo-{i}.png", data, "image/png")) for i, data in enumerate(images)]
    answer = http.post("/v1/concepts", headers=headers, data={"name": "mug", "steps": "4"}, files=files)
    assert answer.status_code == 202, answer.text
    return answer.json()["job"]["id"]


def _wait_final(service: Service, http: httpx.Client, jobs: dict[str, tuple[dict[str, str], str]]) -> dict:
    done: dict[str, dict] = {}
    deadline = time.monotonic() + 180
    while len(done) < len(jobs):
        assert time.monotonic() < deadline, f"jobs not final:\n{service.logs()}"
        for who, (headers, job_id) in jobs.items():
            job = http.get(f"/v1/jobs/{job_id}", headers=headers).json()
            if job["state"] in FINAL:
                done[who] = job
        time.sleep(0.3)
    return done


def _running_seconds(job: dict) -> float:
    started, finished = (datetime.fromisoformat(job[key]) for key in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def test_a_silent_receiver_blocks_no_worker_and_other_users_get_every_event(
    production: Service,
    receivers: tuple[Receiver, Receiver],
    noise_images: Callable[[int, int], list[bytes]],
) -> None:
    silent, answering = receivers
    alice, bob = production.create_user("alice"), production.create_user("bob")
    with production.client() as http:
        put = http.put("/v1/me/webhook", headers=alice, json={"url": silent.url})
        assert put.status_code == 201, put.text
        bob_secret = http.put("/v1/me/webhook", headers=bob, json={"url": answering.url}).json()["secret"]
        production.start_worker()
        jobs = {
            "alice": (alice, _upload(http, alice, images=noise_images(1, 3))),
            "bob": (bob, _upload(http, bob, images=noise_images(2, 3))),
        }
        done = _wait_final(production, http, jobs)

        assert done["alice"]["state"] == done["bob"]["state"] == "succeeded", production.logs()
        # Sending to the silent receiver inline would have cost the job a minute per event.
        assert _running_seconds(done["alice"]) < TIMEOUT_SECONDS, done["alice"]
        answering.wait_for(5, timeout=30)
        deadline = time.monotonic() + 30
        while answering.events()[-1] != "images.deleted":
            assert time.monotonic() < deadline, answering.events()
            time.sleep(0.1)
        events = answering.events()
        assert events[:2] == ["job.queued", "job.started"] and "job.progress" in events
        assert events[-2:] == ["job.succeeded", "images.deleted"]
        for request in answering.received:
            assert verify(bob_secret, header=request.headers["mnemo-signature"], body=request.body)
        assert {r.document["data"].get("job", {}).get("id") for r in answering.received[:-1]} == {
            jobs["bob"][1]
        }

        # Alice's webhook has one attempt in flight at a time, each held for the whole timeout.
        arrivals = [request.at for request in silent.received]
        assert arrivals and silent.received[0].document["type"] == "job.queued"
        assert all(later - earlier >= TIMEOUT_SECONDS - 1 for earlier, later in itertools.pairwise(arrivals))
        listed = http.get("/v1/me/webhook/deliveries", headers=alice).json()["deliveries"]
        assert {d["status"] for d in listed} == {"pending"}
        assert sum(d["attempts"] for d in listed) == len(arrivals)
