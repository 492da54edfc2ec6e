"""The API's outbox dispatch through the real ``core.queue.outbox`` relay (no worker consuming)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from api.app import create_app
from core.db.models import Job, Outbox
from core.db.users import create_user
from core.settings import Settings

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "orange").save(buffer, format="PNG")
    return buffer.getvalue()


def _client(settings: Settings) -> tuple[TestClient, dict[str, str]]:
    app = create_app(settings)  # the default dispatcher: core.queue.outbox.flush_outbox
    with app.state.services.session_factory() as session:
        key = create_user(session, name="alice", pepper=settings.pepper).key
        session.commit()
    return TestClient(app), {"Authorization": f"Bearer {key}"}


@SQLITE_ONLY
def test_committed_jobs_are_sent_to_the_embedded_broker(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, api_key_pepper="p")
    client, headers = _client(settings)
    with client:
        response = client.post(
            "/v1/concepts",
            headers=headers,
            data={"name": "dog"},
            files=[("images", ("a.png", _png(), "image/png"))],
        )
        assert response.status_code == 202
        generated = client.post("/v1/generate", headers=headers, json={"prompt": "a dog"})
        assert generated.status_code == 202
        factory = client.app.state.services.session_factory
    with factory() as session:
        rows = session.scalars(select(Outbox)).all()
        assert len(rows) == 2 and all(row.sent_at is not None for row in rows)
        assert (tmp_path / "data" / "broker.sqlite").exists()


@SQLITE_ONLY
def test_broker_down_keeps_the_job_queued_for_the_reconciler(database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url="redis://127.0.0.1:1/0",
        api_key_pepper="p",
    )
    client, headers = _client(settings)
    with client:
        start = time.monotonic()
        response = client.post(
            "/v1/concepts",
            headers=headers,
            data={"name": "dog"},
            files=[("images", ("a.png", _png(), "image/png"))],
        )
        elapsed = time.monotonic() - start
        factory = client.app.state.services.session_factory
    assert response.status_code == 202
    assert elapsed < 30
    with factory() as session:
        job = session.get(Job, response.json()["job"]["id"])
        assert job.state == "queued"
        outbox = session.scalars(select(Outbox).where(Outbox.job_id == job.id)).one()
        assert outbox.sent_at is None
