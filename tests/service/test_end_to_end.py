"""End to end over HTTP against real processes, embedded (SQLite + SQLAlchemy broker) and
production (PostgreSQL + Redis): upload → sequential training → raw images gone → generate.

Two users upload three concepts each, back to back, to a worker with two pool processes:
per user the tasks run strictly in order, the two users' tasks overlap in time, each user's
lineage is a chain whose files match their sha256, no byte of any uploaded image remains
anywhere in the data directory, the database or the broker once its task finished, and the
learned tokens generate PNGs (an unknown token is a 422). A worker SIGKILLed mid-task is
replaced; its job is re-run after the lease expires and publishes exactly once.
"""

from __future__ import annotations

import io
import itertools
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from core.cli import processes
from core.db.models import AdapterVersion, Job, Upload
from core.storage import manifest_sha256, sha256_file
from core.uploads import UploadLimits, clean_image

if TYPE_CHECKING:
    from tests.service.conftest import Service

pytestmark = pytest.mark.slow

FINAL = ("succeeded", "failed", "cancelled")
CONCEPTS = ("red", "green", "blue")
STEPS = "4"
LIMITS = UploadLimits(max_bytes=10**7, max_files=20, min_files=1, max_pixels=10**7)


@dataclass
class Uploaded:
    user: str
    name: str
    job_id: str
    concept_id: str
    secrets: list[bytes] = field(default_factory=list)  # uploaded bytes and their re-encoded PNGs


def _database_url(service: Service) -> str:
    return service.env.get("MNEMO_DATABASE_URL") or f"sqlite:///{service.data_dir / 'mnemo.db'}"


def _as_jpeg(png: bytes) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, format="JPEG", quality=95)
    return out.getvalue()


def _upload(
    http: httpx.Client, headers: dict[str, str], *, name: str, images: list[bytes], steps: str = STEPS
) -> dict[str, Any]:
    files = [
        (
            "images",
            (f"photo-{i}.{_extension(data)}", data, "application/octet-stream"),
        )
        for i, data in enumerate(images)
    ]
    response = http.post("/v1/concepts", headers=headers, data={"name": name, "steps": steps}, files=files)
    assert response.status_code == 202, response.text
    return response.json()


def _extension(data: bytes) -> str:
    return "png" if data.startswith(b"\x89PNG") else "jpg"


def _secrets(images: list[bytes]) -> list[bytes]:
    cleaned = [clean_image(data, limits=LIMITS, label="x").png for data in images]
    return list(dict.fromkeys(images + cleaned))


def _residue(service: Service, secrets: list[bytes]) -> list[str]:
    """Every place (file, database dump, broker key) that still holds one of ``secrets``."""
    found = []
    for root in (service.data_dir, service.log_dir):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # a transient file (an SQLite journal) went away meanwhile
                continue
            if any(secret in data for secret in secrets):
                found.append(str(path))
    url = _database_url(service)
    if url.startswith("postgresql"):
        libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        dump = subprocess.run(
            ["pg_dump", "--no-owner", libpq], capture_output=True, timeout=60, check=True
        ).stdout
        if any(secret in dump or secret.hex().encode() in dump for secret in secrets):
            found.append("pg_dump")
    broker = service.env.get("MNEMO_BROKER_URL", "")
    if broker.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(broker)
        for key in client.scan_iter(count=500):
            value = client.dump(key) or b""
            if any(secret in value for secret in secrets):
                found.append(f"redis:{key!r}")
    return found


def _upload_rows(service: Service, job_id: str) -> int:
    engine = create_engine(_database_url(service))
    try:
        with engine.connect() as connection:
            return connection.execute(
                select(func.count()).select_from(Upload).where(Upload.job_id == job_id)
            ).scalar_one()
    finally:
        engine.dispose()


def _wait_final(
    service: Service, http: httpx.Client, headers: dict[str, str], job_ids: list[str], *, timeout: float
) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(job_ids):
        assert time.monotonic() < deadline, f"jobs not final after {timeout} s:\n{service.logs()}"
        for job_id in job_ids:
            if job_id not in done:
                job = http.get(f"/v1/jobs/{job_id}", headers=headers).json()
                if job["state"] in FINAL:
                    done[job_id] = job
        time.sleep(0.5)
    return done


def _wait_images_deleted(http: httpx.Client, headers: dict[str, str], *, concept_id: str) -> None:
    deadline = time.monotonic() + 30
    while not http.get(f"/v1/concepts/{concept_id}", headers=headers).json()["images_deleted_at"]:
        assert time.monotonic() < deadline, (
            f"concept {concept_id}: raw images not deleted 30 s after its task"
        )
        time.sleep(0.1)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _two_users_three_concepts(service: Service, noise_images: Callable[[int, int], list[bytes]]) -> None:
    users = {who: service.create_user(who) for who in ("alice", "bob")}
    uploaded: list[Uploaded] = []
    with service.client() as http:
        for index, name in enumerate(CONCEPTS):  # back to back, interleaved between the users
            for user_index, (who, headers) in enumerate(users.items()):
                images = noise_images(1000 * user_index + index, 3)
                images[-1] = _as_jpeg(images[-1])  # a JPEG too: its re-encoded PNG differs
                body = _upload(http, headers, name=name, images=images)
                assert body["job"]["state"] == "queued"
                uploaded.append(
                    Uploaded(who, name, body["job"]["id"], body["concept"]["id"], _secrets(images))
                )

        # Poll every job; as soon as one is final, nothing of its images may remain anywhere.
        jobs: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 420
        while len(jobs) < len(uploaded):
            assert time.monotonic() < deadline, f"jobs not final in time:\n{service.logs()}"
            for item in uploaded:
                if item.job_id in jobs:
                    continue
                job = http.get(f"/v1/jobs/{item.job_id}", headers=users[item.user]).json()
                if job["state"] not in FINAL:
                    continue
                assert job["state"] == "succeeded", f"{job}\n{service.logs()}"
                # The deletion follows the publish commit at once; the concept says when it happened.
                _wait_images_deleted(http, users[item.user], concept_id=item.concept_id)
                assert _residue(service, item.secrets) == [], f"raw image bytes remain after {item.name}"
                assert _upload_rows(service, item.job_id) == 0
                jobs[item.job_id] = job
            time.sleep(0.5)

        intervals: dict[str, list[tuple[datetime, datetime]]] = {}
        for who, headers in users.items():
            mine = sorted((jobs[u.job_id] for u in uploaded if u.user == who), key=lambda j: j["seq"])
            spans = [(_ts(j["started_at"]), _ts(j["finished_at"])) for j in mine]
            for (_, finished), (started, _) in itertools.pairwise(spans):
                assert started >= finished, f"{who}'s tasks overlapped: {spans}"
            assert all(j["attempts"] == 1 for j in mine)
            intervals[who] = spans
            _check_lineage(service, http, headers)
        overlap = any(max(a[0], b[0]) < min(a[1], b[1]) for a in intervals["alice"] for b in intervals["bob"])
        assert overlap, f"the two users' tasks never ran at the same time: {intervals}"

        _check_generation(http, users["alice"], prompt="a photo of <red> next to <blue>")
        _check_generation(http, users["bob"], prompt="a photo of <green>")
        unknown = http.post(
            "/v1/generate", headers=users["bob"], json={"prompt": "a photo of <purple> and <red>", "wait": 5}
        )
        assert unknown.status_code == 422
        assert unknown.json()["unknown_tokens"] == ["<purple>"]
        assert unknown.json()["your_tokens"] == ["<red>", "<green>", "<blue>"]


def _check_lineage(service: Service, http: httpx.Client, headers: dict[str, str]) -> None:
    lineage = http.get("/v1/adapters", headers=headers).json()
    versions = lineage["versions"]
    assert [v["concept_name"] for v in versions] == list(CONCEPTS)
    assert [v["task_index"] for v in versions] == [1, 2, 3]
    assert [v["parent_id"] for v in versions] == [None, versions[0]["id"], versions[1]["id"]]
    assert lineage["head"] == versions[-1]["id"]
    concepts = http.get("/v1/concepts", headers=headers).json()["concepts"]
    assert all(c["status"] == "ready" and c["images_deleted_at"] for c in concepts)
    user_dirs = list((service.data_dir / "adapters").iterdir())
    for version in versions:
        assert version["sha256"] == manifest_sha256(version["files"])
        (directory,) = [d / version["id"] for d in user_dirs if (d / version["id"]).is_dir()]
        on_disk = {p.name: sha256_file(p) for p in directory.iterdir() if p.is_file()}
        assert on_disk == {name: meta["sha256"] for name, meta in version["files"].items()}
        assert {"adapter.safetensors", "tokens.safetensors", "state.json"} <= set(on_disk)


def _check_generation(http: httpx.Client, headers: dict[str, str], *, prompt: str) -> None:
    response = http.post(
        "/v1/generate", headers=headers, json={"prompt": prompt, "n": 2, "steps": 3, "wait": 120}, timeout=150
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["job"]["state"] == "succeeded" and len(body["images"]) == 2
    for image in body["images"]:
        png = http.get(image["url"], headers=headers)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_embedded_serve_two_users_three_concepts(
    embedded_serve: Service, noise_images: Callable[[int, int], list[bytes]]
) -> None:
    _two_users_three_concepts(embedded_serve, noise_images)
    # Each of the two pool processes loaded the backbone once, for all its tasks.
    loads = re.findall(
        r"backbone \S+ loaded on cpu .* \(pid (\d+)\)", (embedded_serve.log_dir / "serve.log").read_text()
    )
    assert 1 <= len(loads) <= 2 and len(set(loads)) == len(loads), loads
    # The embedded broker deletes a message's row when it delivers it (the file does not grow).
    broker = create_engine(f"sqlite:///{embedded_serve.data_dir / 'broker.sqlite'}")
    try:
        with broker.connect() as connection:
            delivered = connection.exec_driver_sql("SELECT count(*) FROM kombu_message WHERE visible = 0")
            assert delivered.scalar_one() == 0
    finally:
        broker.dispose()


def test_production_postgres_redis_two_users_three_concepts(
    production: Service, noise_images: Callable[[int, int], list[bytes]]
) -> None:
    production.start_worker(concurrency=2)
    _two_users_three_concepts(production, noise_images)


@pytest.mark.parametrize("deployment", ["embedded_split", "production"])
def test_worker_killed_mid_task_is_rerun_and_publishes_once_and_cancel_stops_a_task(
    deployment: str, request: pytest.FixtureRequest, noise_images: Callable[[int, int], list[bytes]]
) -> None:
    service: Service = request.getfixturevalue(deployment)
    worker = service.start_worker(concurrency=1)
    headers = service.create_user("carol")
    with service.client() as http:
        first = _upload(http, headers, name="first", images=noise_images(7, 2), steps="2")
        _wait_final(service, http, headers, [first["job"]["id"]], timeout=180)
        second_images = noise_images(8, 2)
        second = _upload(http, headers, name="second", images=second_images, steps="40")
        job_id = second["job"]["id"]
        deadline = time.monotonic() + 180
        while True:
            assert time.monotonic() < deadline, f"the task never reached training step 8:\n{service.logs()}"
            job = http.get(f"/v1/jobs/{job_id}", headers=headers).json()
            assert job["state"] in ("queued", "running"), f"finished before the kill: {job}"
            if job["progress"]["phase"] == "train" and job["progress"]["step"] >= 8:
                break
            time.sleep(0.2)
        processes.kill(worker)  # SIGKILL the worker's main process and its pool child
        # The tiny preset checkpoints every 5 steps: the re-run resumes from there.
        assert (service.data_dir / "checkpoints" / job_id / "task.ckpt").is_file()
        assert http.get(f"/v1/jobs/{job_id}", headers=headers).json()["state"] == "running"

        service.start_worker(concurrency=1)
        job = _wait_final(service, http, headers, [job_id], timeout=300)[job_id]
        assert job["state"] == "succeeded", f"{job}\n{service.logs()}"
        assert job["attempts"] == 2
        _wait_images_deleted(http, headers, concept_id=second["concept"]["id"])
        lineage = http.get("/v1/adapters", headers=headers).json()["versions"]
        assert [v["concept_name"] for v in lineage] == ["first", "second"]
        assert lineage[1]["parent_id"] == lineage[0]["id"]

        # Cancelling a running task stops it at a step boundary: nothing published, images gone.
        third_images = noise_images(9, 2)
        third = _upload(http, headers, name="third", images=third_images, steps="100")
        cancel_id = third["job"]["id"]
        deadline = time.monotonic() + 120
        while http.get(f"/v1/jobs/{cancel_id}", headers=headers).json()["state"] != "running":
            assert time.monotonic() < deadline, service.logs()
            time.sleep(0.2)
        assert http.post(f"/v1/jobs/{cancel_id}/cancel", headers=headers).status_code == 200
        cancelled = _wait_final(service, http, headers, [cancel_id], timeout=120)[cancel_id]
        assert cancelled["state"] == "cancelled", cancelled
        concept = http.get(f"/v1/concepts/{third['concept']['id']}", headers=headers).json()
        assert concept["status"] == "cancelled" and concept["images_deleted_at"]
        assert len(http.get("/v1/adapters", headers=headers).json()["versions"]) == 2

    engine = create_engine(_database_url(service))
    try:
        with engine.connect() as connection:
            per_job = connection.execute(
                select(func.count()).select_from(AdapterVersion).where(AdapterVersion.job_id == job_id)
            ).scalar_one()
            total = connection.execute(select(func.count()).select_from(AdapterVersion)).scalar_one()
            state = connection.execute(select(Job.state).where(Job.id == job_id)).scalar_one()
    finally:
        engine.dispose()
    assert (per_job, total, state) == (1, 2, "succeeded")
    assert _residue(service, _secrets(second_images) + _secrets(third_images)) == []
    assert not (service.data_dir / "checkpoints" / job_id).exists()
    assert not (service.data_dir / "checkpoints" / cancel_id).exists()
