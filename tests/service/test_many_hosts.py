"""Many machines for real (issue 16 items 1, 2): one ``mnemo api``, two ``mnemo worker`` processes
with *separate* data directories (standing for two hosts, each on the device it was given), one
PostgreSQL database, one Redis and the S3 store on moto's server (a real S3 endpoint on loopback).
No directory is shared: every artifact goes through the bucket.

* One user end to end: a concept trained by a real worker on the tiny backbone, an image
  generated and downloaded through the API, the adapter exported through the API, the account
  erased — then the bucket holds nothing of theirs.
* Several users at once: their jobs spread over both workers, each user's tasks still run one
  after another and chain their lineage, every image and adapter is readable through the API, and
  no raw upload byte remains on either host, in the API's data directory, the database, the broker
  or the bucket.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from core.db.models import AdapterVersion, GeneratedImage, WorkerSeen
from core.storage import LocalStore, manifest_sha256, sha256_bytes
from tests.object_store import MotoS3
from tests.service.conftest import REDIS_URL, Service, _new_service, _require_redis
from tests.service.test_end_to_end import FINAL, _residue, _secrets, _ts, _upload, _wait_final

pytestmark = pytest.mark.slow

DEVICES = ("cpu", "cpu:0")  # what each "host" is told to use (``--device``; cuda:N on a GPU host)
PEPPER = "many-hosts-pepper-0123456789abcdef"
TIMEOUT = 300.0


@dataclass
class Deployment:
    service: Service
    hosts: list[Path]  # each worker's own data directory
    moto: MotoS3
    bucket: str
    database_url: str

    def bucket_keys(self) -> list[str]:
        return self.moto.keys(self.bucket)

    def rows(self, statement: Any) -> list[Any]:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(statement))
        finally:
            engine.dispose()

    def claimed_jobs(self, host: int) -> set[str]:
        """Ids of the jobs the worker of ``host`` claimed (its log says so)."""
        log = (self.service.log_dir / f"worker{host}.log").read_text(errors="replace")
        return set(re.findall(r"job ([0-9a-f-]{36}): attempt \d+ claimed by", log))

    def residue(self, secrets: list[bytes]) -> list[str]:
        """Every host file, bucket object and other place that still holds one of ``secrets``."""
        found = _residue(self.service, secrets)
        for host in self.hosts:
            for path in sorted(p for p in host.rglob("*") if p.is_file()):
                if any(secret in path.read_bytes() for secret in secrets):
                    found.append(str(path))
        for key, data in self.moto.objects(self.bucket).items():
            if any(secret in data for secret in secrets):
                found.append(f"s3:{key}")
        return found


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: Any, moto_s3: MotoS3
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("many-hosts")
    database_url = postgres_server.create_database()
    redis_url = f"{REDIS_URL}/{random.randint(1, 15)}"
    _require_redis(redis_url)
    bucket = moto_s3.new_bucket()
    service = _new_service(
        tmp,
        MNEMO_DATABASE_URL=database_url,
        MNEMO_BROKER_URL=redis_url,
        MNEMO_API_KEY_PEPPER=PEPPER,
        **moto_s3.env(bucket, prefix="mnemo"),
    )
    hosts = [tmp / "host-a", tmp / "host-b"]
    try:
        service.run_cli("db", "upgrade")
        service.start_api()
        for host, device in zip(hosts, DEVICES, strict=True):
            host.mkdir()
            env = {"MNEMO_DATA_DIR": str(host)}
            service.start_worker("--device", device, concurrency=1, env=env, wait=False)
        for index in range(len(hosts)):
            service.wait_worker(index)
        yield Deployment(service, hosts, moto_s3, bucket, database_url)
    finally:
        service.stop_all()
        postgres_server.drop_database(database_url)


def _train(
    deployment: Deployment, headers: dict[str, str], *, name: str, images: list[bytes]
) -> dict[str, Any]:
    with deployment.service.client() as http:
        return _upload(http, headers, name=name, images=images)


def _generate(deployment: Deployment, headers: dict[str, str], *, prompt: str) -> list[str]:
    with deployment.service.client() as http:
        body = {"prompt": prompt, "n": 1, "steps": 2, "seed": 3, "wait": 120}
        response = http.post("/v1/generate", headers=headers, json=body)
    assert response.status_code == 200, response.text + deployment.service.logs()
    return [image["id"] for image in response.json()["images"]]


def _image_key(deployment: Deployment, image_id: str) -> str:
    [(path,)] = deployment.rows(select(GeneratedImage.path).where(GeneratedImage.id == image_id))
    return f"mnemo/{path}"


def _check_readable(deployment: Deployment, headers: dict[str, str], *, image_ids: list[str]) -> list[dict]:
    """Every image of ``image_ids`` and every adapter version of the user, through the API,
    matches its object in the bucket; returns the lineage."""
    objects = deployment.moto.objects(deployment.bucket)
    with deployment.service.client() as http:
        for image_id in image_ids:
            response = http.get(f"/v1/images/{image_id}", headers=headers)
            assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
            assert response.content == objects[_image_key(deployment, image_id)]
        versions = http.get("/v1/adapters", headers=headers).json()["versions"]
        for version in versions:
            stored = {
                key.rsplit("/", 1)[-1]: {"sha256": sha256_bytes(data), "bytes": len(data)}
                for key, data in objects.items()
                if f"/{version['id']}/" in key
            }
            assert manifest_sha256(stored) == version["sha256"]  # the bucket holds exactly the version
            export = http.get(f"/v1/adapters/{version['version']}/export", headers=headers)
            assert export.status_code == 200 and export.content.startswith(b"PK"), export.text[:300]
    return versions


def _no_artifacts_on(host: Path) -> list[str]:
    """Artifact files on a worker host: there should be none (its scratch is emptied after each job)."""
    folders = ("uploads", "adapters", "images", "checkpoints", "staging", "work")
    return [str(p) for folder in folders for p in (host / folder).rglob("*") if p.is_file()]


def test_one_user_trains_generates_downloads_and_erases(
    deployment: Deployment, noise_images: Callable[[int, int], list[bytes]]
) -> None:
    headers = deployment.service.create_user("erin")
    with deployment.service.client() as http:
        user_id = http.get("/v1/me", headers=headers).json()["id"]
    images = noise_images(7, 3)
    body = _train(deployment, headers, name="mug", images=images)
    with deployment.service.client() as http:
        [job] = _wait_final(deployment.service, http, headers, [body["job"]["id"]], timeout=TIMEOUT).values()
    assert job["state"] == "succeeded", job
    assert not [k for k in deployment.bucket_keys() if "/uploads/" in k]
    assert deployment.residue(_secrets(images)) == []

    image_ids = _generate(deployment, headers, prompt="a photo of <mug>")
    [version] = _check_readable(deployment, headers, image_ids=image_ids)
    assert any(f"/adapters/{user_id}/{version['id']}/" in k for k in deployment.bucket_keys())

    theirs = {_image_key(deployment, i) for i in image_ids} | {
        k for k in deployment.bucket_keys() if f"/adapters/{user_id}/" in k
    }
    previews = deployment.rows(select(GeneratedImage.path).where(GeneratedImage.user_id == user_id))
    theirs |= {f"mnemo/{path}" for (path,) in previews}
    with deployment.service.client() as http:
        erased = http.delete("/v1/me", headers=headers)
    assert erased.status_code == 200 and erased.json()["erased"] is True, erased.text
    left = deployment.bucket_keys()
    assert theirs & set(left) == set() and not [k for k in left if user_id in k]
    assert deployment.rows(select(AdapterVersion.id).where(AdapterVersion.user_id == user_id)) == []


def test_jobs_of_several_users_spread_over_two_hosts(
    deployment: Deployment, noise_images: Callable[[int, int], list[bytes]]
) -> None:
    users = {who: deployment.service.create_user(who) for who in ("ann", "ben", "cyd")}
    jobs: dict[str, list[str]] = {who: [] for who in users}
    secrets: list[bytes] = []
    for index, name in enumerate(("red", "blue")):  # back to back, interleaved between the users
        for number, (who, headers) in enumerate(users.items()):
            images = noise_images(100 * number + index, 2)
            secrets += _secrets(images)
            jobs[who].append(_train(deployment, headers, name=name, images=images)["job"]["id"])

    finished: dict[str, dict[str, Any]] = {}
    with deployment.service.client() as http:
        for who, headers in users.items():
            finished |= _wait_final(deployment.service, http, headers, jobs[who], timeout=TIMEOUT)
    assert {job["state"] for job in finished.values()} == {"succeeded"}, finished
    assert all(job["attempts"] == 1 for job in finished.values())

    everyone = set(finished)
    claimed = [deployment.claimed_jobs(host) & everyone for host in range(len(deployment.hosts))]
    assert all(claimed) and set.union(*claimed) == everyone, f"work per host: {claimed}"
    _assert_devices(deployment)

    for who, headers in users.items():
        spans = [(_ts(finished[j]["started_at"]), _ts(finished[j]["finished_at"])) for j in jobs[who]]
        for (_, first_done), (second_started, _) in itertools.pairwise(spans):
            assert second_started >= first_done, f"{who}'s tasks overlapped: {spans}"
        image_ids = _generate(deployment, headers, prompt="a photo of <red> and <blue>")
        versions = _check_readable(deployment, headers, image_ids=image_ids)
        assert [v["concept_name"] for v in versions] == ["red", "blue"]
        assert versions[1]["parent_id"] == versions[0]["id"] and versions[0]["parent_id"] is None

    assert deployment.residue(secrets) == []
    assert not deployment.moto.store(deployment.bucket, prefix="mnemo").raw_upload_bytes_remain()
    for host in deployment.hosts:
        assert not LocalStore(host).raw_upload_bytes_remain() and _no_artifacts_on(host) == []
    assert all(job["state"] in FINAL for job in finished.values())


def _assert_devices(deployment: Deployment) -> None:
    """Each worker's pool process ran on the device that worker was given (``--device``)."""
    pool = dict(deployment.rows(select(WorkerSeen.id, WorkerSeen.device).where(WorkerSeen.role == "pool")))
    for host, device in enumerate(DEVICES):
        log = (deployment.service.log_dir / f"worker{host}.log").read_text(errors="replace")
        ids = set(re.findall(r"claimed by (\S+:\d+)", log))
        assert ids and {pool.get(worker_id) for worker_id in ids} == {device}, (host, ids, pool)
