"""``Idempotency-Key`` on POST /v1/concepts and POST /v1/generate (docs/api.md,
"Idempotency-Key"): one job per key and request, per user, for a window; SQLite and PostgreSQL,
through two app instances standing for two API processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from core.db.models import Concept, IdempotencyKey, Job, Upload, User, utcnow
from core.db.session import IMMEDIATE_OPTION, make_engine
from tests.conftest import encode_image, make_settings

BODY = {"prompt": "a red circle", "n": 2, "seed": 3}


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def count(api: Any, model: Any, *where: Any) -> int:
    with api.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)))


def upload(
    client: Any, headers: dict[str, str], *, name: str = "dog", color: tuple[int, int, int] = (9, 9, 9)
):  # type: ignore[no-untyped-def]
    files = [("images", ("a.png", encode_image("PNG", color=color), "image/png"))] * 2
    return client.post("/v1/concepts", headers=headers, data={"name": name}, files=files)


def test_generate_retry_answers_the_same_job(api: Any) -> None:
    user_id, headers = api.user("alice")
    first = api.client.post("/v1/generate", headers={**headers, **key("k-1")}, json=BODY)
    again = api.client.post("/generate", headers={**headers, **key("k-1")}, json=BODY)  # same handler
    assert first.status_code == again.status_code == 202
    assert again.json()["job"]["id"] == first.json()["job"]["id"]
    assert again.json()["generation_id"] == first.json()["generation_id"]
    assert "idempotent-replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert count(api, Job, Job.user_id == user_id) == 1
    assert len(api.dispatches) == 1  # the replay sends nothing

    other = api.client.post("/v1/generate", headers={**headers, **key("k-1")}, json={**BODY, "seed": 4})
    assert other.status_code == 422
    assert "Idempotency-Key was already used with a different request" in other.json()["detail"]
    assert count(api, Job, Job.user_id == user_id) == 1

    plain = [api.client.post("/v1/generate", headers=headers, json=BODY) for _ in range(2)]
    assert plain[0].json()["job"]["id"] != plain[1].json()["job"]["id"]  # no key: a job each


def test_keys_are_per_user(api: Any) -> None:
    _, alice = api.user("alice")
    _, bob = api.user("bob")
    a = api.client.post("/v1/generate", headers={**alice, **key("shared")}, json=BODY)
    b = api.client.post("/v1/generate", headers={**bob, **key("shared")}, json={**BODY, "seed": 9})
    assert a.status_code == b.status_code == 202
    assert a.json()["job"]["id"] != b.json()["job"]["id"]


def test_an_expired_key_makes_a_new_job(api: Any) -> None:
    _, headers = api.user("alice")
    first = api.client.post("/v1/generate", headers={**headers, **key("old")}, json=BODY).json()
    with api.session_factory() as session:
        session.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    later = api.client.post("/v1/generate", headers={**headers, **key("old")}, json={**BODY, "seed": 5})
    assert later.status_code == 202 and later.json()["job"]["id"] != first["job"]["id"]
    assert count(api, IdempotencyKey) == 1  # the expired row was replaced
    with api.session_factory() as session:
        row = session.scalar(select(IdempotencyKey))
        window = (row.expires_at - row.created_at).total_seconds()
    assert window == api.settings.idempotency_key_seconds == 86400


def test_concept_upload_retry_answers_the_same_concept(api: Any) -> None:
    user_id, headers = api.user("alice")
    first = upload(api.client, {**headers, **key("upload-1")})
    again = upload(api.client, {**headers, **key("upload-1")})
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["job"]["id"] == first.json()["job"]["id"]
    assert again.json()["concept"]["id"] == first.json()["concept"]["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(api, Concept, Concept.user_id == user_id) == 1
    assert count(api, Upload) == 2 and len(api.files_under("uploads")) == 2  # no spare files

    changed = upload(api.client, {**headers, **key("upload-1")}, color=(200, 9, 9))  # other images
    assert changed.status_code == 422 and "different request" in changed.json()["detail"]
    assert len(api.files_under("uploads")) == 2
    renamed = upload(api.client, {**headers, **key("upload-1")}, name="cat")
    assert renamed.status_code == 422


def test_a_retry_at_the_quota_is_still_answered(api: Any) -> None:
    api.settings.quota_unfinished_jobs_per_user = 1
    _, headers = api.user("alice")
    first = api.client.post("/v1/generate", headers={**headers, **key("q")}, json=BODY)
    assert api.client.post("/v1/generate", headers=headers, json=BODY).status_code == 429
    again = api.client.post("/v1/generate", headers={**headers, **key("q")}, json=BODY)
    assert again.status_code == 202 and again.json()["job"]["id"] == first.json()["job"]["id"]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "tab\there"])
def test_a_malformed_key_is_422(api: Any, bad: str) -> None:
    _, headers = api.user("alice")
    answer = api.client.post("/v1/generate", headers={**headers, "Idempotency-Key": bad}, json=BODY)
    assert answer.status_code == 422
    assert count(api, Job) == 0


@contextmanager
def second_app(api: Any, tmp_path: Path) -> Iterator[TestClient]:
    """Another API process on the same database and data directory."""
    from api.app import create_app

    settings = make_settings(data_dir=api.settings.data_dir, database_url=api.settings.database_url)
    app = create_app(settings, dispatcher=lambda: None)
    with TestClient(app) as client:
        yield client
    app.state.services.session_factory.kw["bind"].dispose()


BLOCKED = """
SELECT count(*) FROM pg_stat_activity a
WHERE :holder = ANY(pg_blocking_pids(a.pid))
   OR EXISTS (
       SELECT 1 FROM pg_stat_activity b
       WHERE b.pid = ANY(pg_blocking_pids(a.pid)) AND :holder = ANY(pg_blocking_pids(b.pid))
   )
"""


@contextmanager
def writes_held(database_url: str, *, user_id: str) -> Iterator[Callable[[], int]]:
    """Hold the user's row (PostgreSQL) or the write lock (SQLite) until the block ends; yields a
    function counting the sessions waiting on a lock (PostgreSQL; 0 on SQLite)."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as holder, engine.connect() as observer:
            postgres = engine.dialect.name == "postgresql"
            if postgres:
                holder.execute(select(User.id).where(User.id == user_id).with_for_update())
            else:  # the first statement begins the transaction, taking the write lock
                holder.execution_options(**{IMMEDIATE_OPTION: True}).exec_driver_sql("SELECT 1")

            holder_pid = holder.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() if postgres else 0

            def waiting() -> int:
                """Sessions blocked by the holder, directly or behind one it blocks."""
                if not postgres:
                    return 0
                count = observer.execute(text(BLOCKED), {"holder": holder_pid}).scalar_one()
                observer.rollback()  # pg_stat_activity is a snapshot per transaction
                return int(count)

            yield waiting
            holder.rollback()
    finally:
        engine.dispose()


@pytest.mark.parametrize("route", ["generate", "concepts"])
def test_two_concurrent_requests_with_one_key_make_one_job(api: Any, tmp_path: Path, route: str) -> None:
    """Both requests are in their transactions at once: on PostgreSQL the first waits for the held
    user row, the second for the first's key; then one job is made and both answer it."""
    user_id, headers = api.user("alice")
    headers = {**headers, **key("race")}
    answers: list[Any] = []

    def send(client: Any) -> None:
        if route == "generate":
            answers.append(client.post("/v1/generate", headers=headers, json=BODY))
        else:
            answers.append(upload(client, headers))

    with second_app(api, tmp_path) as other:
        threads = [threading.Thread(target=send, args=(c,)) for c in (api.client, other)]
        with writes_held(api.settings.database_url, user_id=user_id) as waiting:
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 20
            if api.settings.is_sqlite:
                time.sleep(1.0)  # both wait on the write lock (busy timeout)
            else:
                while waiting() < 2:
                    assert time.monotonic() < deadline, "the two requests did not meet in the database"
                    time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=30)
    assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
    assert answers[0].json()["job"]["id"] == answers[1].json()["job"]["id"]
    assert count(api, Job, Job.user_id == user_id) == 1
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    if route == "concepts":
        assert count(api, Upload) == 2 and len(api.files_under("uploads")) == 2
