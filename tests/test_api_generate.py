"""POST /v1/generate and POST /generate: token checks in SQL, queueing, and `wait`."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from core.db.models import GeneratedImage, Generation, Job, JobState, Outbox, utcnow
from core.storage import LocalStore as ArtifactStore

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_unknown_token_is_422_listing_the_users_tokens(api) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    api.trained_concept(user_id=user_id, name="rex")
    api.trained_concept(user_id=user_id, name="tom")
    # A concept that is still training does not count as known.
    api.client.post(
        "/v1/concepts",
        headers=headers,
        data={"name": "pending"},
        files=[("images", ("a.png", _png(), "image/png"))],
    )
    for path in ("/v1/generate", "/generate"):
        response = api.client.post(path, headers=headers, json={"prompt": "<rex> meets <fido> and <pending>"})
        assert response.status_code == 422
        body = response.json()
        assert body["unknown_tokens"] == ["<fido>", "<pending>"]
        assert body["your_tokens"] == ["<rex>", "<tom>"]
        assert body["detail"] == "unknown token(s) <fido>, <pending> in prompt; your tokens: <rex>, <tom>"
    with api.session_factory() as session:
        assert session.scalars(select(Generation)).all() == []


def test_known_tokens_queue_a_generate_job(api) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    api.trained_concept(user_id=user_id, name="rex")
    body = {"prompt": "a photo of <rex> on a beach", "n": 2, "steps": 3, "guidance_scale": 5.0, "seed": 7}
    for path in ("/v1/generate", "/generate"):
        response = api.client.post(path, headers=headers, json=body)
        assert response.status_code == 202, response.text
        out = response.json()
        assert out["job"]["kind"] == "generate" and out["job"]["state"] == "queued" and out["images"] == []
        with api.session_factory() as session:
            job = session.get(Job, out["job"]["id"])
            assert job.payload["prompt"] == body["prompt"] and job.payload["n"] == 2
            assert job.payload["generation_id"] == out["generation_id"]
            assert session.scalars(select(Outbox.task_name).where(Outbox.job_id == job.id)).all() == [
                "mnemo.generate"
            ]
    assert len(api.dispatches) == 2


def test_a_prompt_without_tokens_needs_no_concept(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    assert (
        api.client.post("/v1/generate", headers=headers, json={"prompt": "a red circle"}).status_code == 202
    )


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"prompt": "x", "n": 99}, "n must be at most"),
        ({"prompt": "x", "steps": 10_000}, "steps must be at most"),
        ({"prompt": "x" * 5000}, "prompts are limited to"),
    ],
)
def test_limits_are_422(api, body: dict, words: str) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    response = api.client.post("/v1/generate", headers=headers, json=body)
    assert response.status_code == 422 and words in response.json()["detail"]


@SQLITE_ONLY
@pytest.mark.parametrize("body", [{}, {"prompt": ""}, {"prompt": "x", "n": 0}, {"prompt": "x", "bogus": 1}])
def test_malformed_bodies_are_422(api, body: dict) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    response = api.client.post("/v1/generate", headers=headers, json=body)
    assert response.status_code == 422 and isinstance(response.json()["detail"], list)


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "green").save(buffer, format="PNG")
    return buffer.getvalue()


def _finish_soon(api, *, delay: float) -> threading.Thread:  # type: ignore[no-untyped-def]
    """Act as a worker: after ``delay`` s, and once the request has written its generation (however
    busy the machine), store one image for the newest generation and succeed."""

    def newest_generation(session):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            generation = session.scalars(select(Generation).order_by(Generation.created_at.desc())).first()
            if generation is not None:
                return generation
            session.rollback()  # a new read transaction sees the request's commit
            time.sleep(0.05)
        raise AssertionError("the request wrote no generation within 60 s")

    def run() -> None:
        time.sleep(delay)
        store = ArtifactStore(api.settings.data_dir)
        with api.session_factory() as session:
            generation = newest_generation(session)
            stored = store.write_bytes(store.new_image_path(), _png())
            session.add(
                GeneratedImage(
                    user_id=generation.user_id,
                    generation_id=generation.id,
                    path=stored.path,
                    sha256=stored.sha256,
                    width=16,
                    height=16,
                )
            )
            job = session.get(Job, generation.job_id)
            job.state, job.finished_at = JobState.SUCCEEDED.value, utcnow()
            session.commit()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_wait_returns_200_with_the_images_when_the_job_finishes_in_time(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    thread = _finish_soon(api, delay=0.5)
    response = api.client.post("/generate", headers=headers, json={"prompt": "a circle", "wait": 10})
    thread.join()
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["job"]["state"] == "succeeded" and len(out["images"]) == 1
    image = api.client.get(out["images"][0]["url"], headers=headers)
    assert image.status_code == 200 and image.content == _png()
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert image.headers["cache-control"] == "no-store"


@SQLITE_ONLY
def test_wait_that_runs_out_answers_202(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    start = time.monotonic()
    response = api.client.post("/v1/generate", headers=headers, json={"prompt": "a circle", "wait": 0.6})
    assert response.status_code == 202
    assert 0.5 < time.monotonic() - start < 5
    assert response.json()["job"]["state"] == "queued"


@SQLITE_ONLY
def test_concurrent_writers_on_sqlite_get_no_5xx(api) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    users = [api.user(f"user{i}") for i in range(4)]

    def hammer(index: int) -> list[int]:
        _, headers = users[index % len(users)]
        codes = []
        for _ in range(5):
            codes.append(
                api.client.post("/v1/generate", headers=headers, json={"prompt": "a square"}).status_code
            )
            codes.append(api.client.get("/v1/concepts", headers=headers).status_code)
        return codes

    with ThreadPoolExecutor(max_workers=12) as pool:
        codes = [code for result in pool.map(hammer, range(12)) for code in result]
    assert sorted(set(codes)) == [200, 202]
    with api.session_factory() as session:
        seqs = session.execute(select(Job.user_id, Job.seq)).all()
    assert len(seqs) == 60 and len(set(seqs)) == 60
