"""GET /v1/jobs/{id}, the SSE event stream, and cancel."""

from __future__ import annotations

import io
import json
import threading
import time

from PIL import Image
from sqlalchemy import select

from api.routes import jobs as jobs_route
from core.db.models import Concept, Job, JobState, Upload, utcnow


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "blue").save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(api, headers, name: str = "dog") -> dict:  # type: ignore[no-untyped-def]
    response = api.client.post(
        "/v1/concepts",
        headers=headers,
        data={"name": name},
        files=[("images", ("a.png", _png(), "image/png")), ("images", ("b.png", _png(), "image/png"))],
    )
    assert response.status_code == 202, response.text
    return response.json()


def test_cancel_a_queued_job_deletes_its_raw_images(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    created = _upload(api, headers)
    job_id, concept_id = created["job"]["id"], created["concept"]["id"]
    assert len(api.files_under("uploads")) == 2
    response = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled" and response.json()["finished_at"] is not None
    assert api.files_under("uploads") == []
    concept = api.client.get(f"/v1/concepts/{concept_id}", headers=headers).json()
    assert concept["status"] == "cancelled" and concept["images_deleted_at"] is not None
    with api.session_factory() as session:
        assert session.scalars(select(Upload)).all() == []
    # Cancelling again changes nothing.
    again = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert again.status_code == 200 and again.json()["state"] == "cancelled"


def test_cancel_a_running_job_only_asks_it_to_stop(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    job_id = _upload(api, headers)["job"]["id"]
    with api.session_factory() as session:
        job = session.get(Job, job_id)
        job.state, job.started_at, job.fencing_token = JobState.RUNNING.value, utcnow(), 1
        session.commit()
    response = api.client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    assert response.status_code == 200
    assert response.json()["state"] == "running" and response.json()["cancel_requested"] is True
    assert len(api.files_under("uploads")) == 2  # the worker deletes them when it stops


def test_job_events_stream_progress_until_final(api, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    job_id = _upload(api, headers)["job"]["id"]
    api.settings.events_poll_seconds = 0.02
    first_snapshot = threading.Event()
    snapshot = jobs_route._job_snapshot

    def observed(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = snapshot(*args, **kwargs)
        first_snapshot.set()
        return result

    # The fake worker starts once the stream has read the queued job, however busy the machine.
    monkeypatch.setattr(jobs_route, "_job_snapshot", observed)

    def worker() -> None:
        steps = [("running", {"phase": "train", "step": s, "total": 3, "loss": 0.5 / s}) for s in (1, 2, 3)]
        steps.append(("succeeded", {"phase": "done", "step": 3, "total": 3, "loss": None}))
        assert first_snapshot.wait(timeout=60)
        for state, progress in steps:
            time.sleep(0.15)
            with api.session_factory() as session:
                job = session.get(Job, job_id)
                job.state, job.progress = state, progress
                if state == "succeeded":
                    job.finished_at = utcnow()
                    session.get(Concept, job.concept_id).status = "ready"
                session.commit()

    thread = threading.Thread(target=worker)
    thread.start()
    with api.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    thread.join()
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append((lines["event"], json.loads(lines["data"])))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "job" and kinds[-1] == "end" and kinds.count("end") == 1
    jobs = [data for kind, data in events if kind == "job"]
    assert jobs[0]["state"] == "queued" and jobs[-1]["state"] == "succeeded"
    steps = [j["progress"]["step"] for j in jobs if j["state"] == "running"]
    assert steps == sorted(steps) and steps[-1] == 3
    assert events[-1][1] == {"state": "succeeded"}


def test_get_job(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    job = _upload(api, headers)["job"]
    got = api.client.get(f"/v1/jobs/{job['id']}", headers=headers)
    assert got.status_code == 200 and got.json() == job
