"""DELETE /v1/me: every row and file of the user goes; other users are untouched."""

from __future__ import annotations

import io

from PIL import Image
from sqlalchemy import func, select

from core.db.models import (
    AdapterVersion,
    ApiKey,
    AuditLog,
    Concept,
    FisherState,
    GeneratedImage,
    Generation,
    Job,
    JobState,
    Outbox,
    Upload,
    User,
    utcnow,
)

USER_TABLES = (ApiKey, Concept, Job, Upload, AdapterVersion, FisherState, Generation, GeneratedImage)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "purple").save(buffer, format="PNG")
    return buffer.getvalue()


def _rows_of(session, user_id: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    counts = {}
    for model in USER_TABLES:
        if hasattr(model, "user_id"):
            query = select(func.count()).select_from(model).where(model.user_id == user_id)
        else:  # uploads hang off jobs
            query = select(func.count()).select_from(Upload).join(Job).where(Job.user_id == user_id)
        counts[model.__tablename__] = session.scalar(query)
    return counts


def test_delete_me_erases_rows_and_files(api) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = api.user("alice")
    bob_id, bob = api.user("bob")
    for user_id in (alice_id, bob_id):
        api.trained_concept(user_id=user_id, name="rex")
        api.trained_concept(user_id=user_id, name="tom")
        api.generated_image(user_id=user_id)
    # Alice also has a queued concept with raw uploads, and a running job with a checkpoint.
    queued = api.client.post(
        "/v1/concepts",
        headers=alice,
        data={"name": "new"},
        files=[("images", ("a.png", _png(), "image/png"))],
    ).json()
    running = api.client.post(
        "/v1/concepts",
        headers=alice,
        data={"name": "run"},
        files=[("images", ("b.png", _png(), "image/png"))],
    ).json()
    with api.session_factory() as session:
        job = session.get(Job, running["job"]["id"])
        job.state, job.started_at = JobState.RUNNING.value, utcnow()
        session.commit()
    checkpoint = api.settings.data_dir / "checkpoints" / running["job"]["id"] / "ckpt-1.safetensors"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"checkpoint")
    bob_files_before = {
        p: p.read_bytes() for p in api.settings.data_dir.rglob("*") if p.is_file() and bob_id in str(p)
    }
    assert bob_files_before  # bob's adapter files exist
    with api.session_factory() as session:
        before = _rows_of(session, alice_id)
        bob_rows_before = _rows_of(session, bob_id)
    assert all(before.values()), before
    assert len(api.files_under("uploads")) == 2 and len(api.files_under("images")) == 2

    response = api.client.delete("/v1/me", headers=alice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["erased"] is True and body["jobs"] == 5 and body["running_jobs_stopped"] == 1
    assert body["files_deleted"] >= 5

    # Alice's key is dead, her ids are gone.
    assert api.client.get("/v1/concepts", headers=alice).status_code == 401
    assert api.client.get(f"/v1/jobs/{queued['job']['id']}", headers=bob).status_code == 404
    with api.session_factory() as session:
        assert set(_rows_of(session, alice_id).values()) == {0}
        assert session.get(User, alice_id) is None
        assert (
            session.scalar(select(func.count()).select_from(Outbox).join(Job).where(Job.user_id == alice_id))
            == 0
        )
        erasure = session.scalars(select(AuditLog).where(AuditLog.action == "user.erase")).one()
        assert alice_id not in (erasure.subject or "") and erasure.actor_user_id is None
        assert all(
            alice_id not in str(a.subject) and alice_id not in str(a.details)
            for a in session.scalars(select(AuditLog))
        )
        assert _rows_of(session, bob_id) == bob_rows_before
    # No file of Alice's remains; Bob's files are byte-identical.
    remaining = [p for p in api.settings.data_dir.rglob("*") if p.is_file()]
    assert not [p for p in remaining if alice_id in str(p)]
    assert not checkpoint.exists() and not checkpoint.parent.exists()
    assert api.files_under("uploads") == []
    assert len(api.files_under("images")) == 1
    assert {p: p.read_bytes() for p in remaining if bob_id in str(p)} == bob_files_before
    # Bob still works.
    assert len(api.client.get("/v1/adapters", headers=bob).json()["versions"]) == 2
