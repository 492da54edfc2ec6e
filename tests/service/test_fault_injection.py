"""Crash points armed in real processes (docs/faults.md): each SIGKILLs its API or worker there once,
the test restarts what died, and every job still completes exactly once with nothing left behind.

Every crash point fires once in one of two runs (two concepts and a generation each):

* embedded (SQLite + the SQLAlchemy broker): the API points (mid-upload, every file written but no
  row, committed but no message sent) and the training points (after each phase, mid-checkpoint
  write);
* production (PostgreSQL + Redis servers of the test's own): the points after the work is stored
  (a version, a generation's PNGs), between publish and clean-up and mid-delete — and meanwhile the
  test's Redis is wiped and restarted and its PostgreSQL crashed and restarted.

Two workers run, so that one is warm while the other restarts. After each run: every armed point
fired (the ledger), one adapter version per train job and an intact lineage, no ``uploads`` row, no
byte of any upload in the data directory, the logs, the database files or dump, or Redis, and no
file the service's sweeps leave unaccounted.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.chaos import audit
from bench.chaos.servers import PostgresServer, RedisServer
from core import faults
from core.cli import processes
from core.db.models import Concept, Job
from core.db.session import make_session_factory
from core.storage import LocalStore
from tests.service.conftest import START_TIMEOUT, Service, base_env

pytestmark = pytest.mark.slow

API_POINTS = ("api.upload.partial", "api.upload.before_commit", "api.upload.after_commit")
TRAINING_POINTS = (
    "train.after_prepare",
    "train.checkpoint.mid_write",
    "train.after_train",
    "train.after_dsc",
    "train.after_fisher",
)
OUTPUT_POINTS = (
    "train.after_store",
    "train.after_publish",
    "cleanup.mid_delete",
    "cleanup.after_files",
    "generate.after_store",
    "generate.after_publish",
)
RUNS = {"embedded": API_POINTS + TRAINING_POINTS, "production": OUTPUT_POINTS}
STEPS = "7"  # the tiny preset checkpoints every 5 steps: one checkpoint per train phase


@dataclass
class Deployment:
    service: Service
    database_url: str
    ledger: Path
    points: tuple[str, ...]
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    secrets: list[bytes] = field(default_factory=list)
    accepted: list[audit.Accepted] = field(default_factory=list)
    spawned: int = 0

    def spawn_worker(self) -> None:
        """Start a worker without waiting for it (``mnemo worker``, one pool process)."""
        log = f"worker{self.spawned}"
        self.spawned += 1
        self.service.workers.append(self.service.start("worker", "--concurrency", "1", log=log))

    def session_factory(self) -> sessionmaker[Session]:
        return make_session_factory(self.database_url)

    def upload(self, headers: dict[str, str], *, name: str, seed: int) -> httpx.Response:
        files = []
        for index in range(2):
            data, secrets = audit.sentinel_image(seed * 10 + index)
            self.secrets += secrets
            files.append(("images", (f"{name}-{index}.png", data, "image/png")))
        with self.service.client() as http:
            return http.post(
                "/v1/concepts", headers=headers, data={"name": name, "steps": STEPS}, files=files
            )

    def blobs(self) -> dict[str, bytes]:
        found = {}
        if self.postgres is not None:
            found["pg_dump"] = self.postgres.dump()
        if self.redis is not None:
            found["redis"] = self.redis.dump()
        return found

    def folders(self) -> list[Path]:
        folders = [self.service.data_dir, self.service.log_dir]
        return folders + [s.folder for s in (self.redis, self.postgres) if s is not None]


def _deployment(tmp_path: Path, *, production: bool, points: tuple[str, ...]) -> Deployment:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    extra = {
        faults.ENABLED_ENV: "1",
        faults.ARM_ENV: ",".join(points),
        faults.LEDGER_ENV: str(ledger),
        faults.TIMES_ENV: "1",
        "MNEMO_JOB_MAX_ATTEMPTS": "12",
    }
    redis = postgres = None
    if production:
        redis = RedisServer(folder=tmp_path / "redis").start()
        postgres = PostgresServer().start()
        extra.update(MNEMO_DATABASE_URL=postgres.url, MNEMO_BROKER_URL=redis.url)
    port = processes.free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    service = Service(
        env=base_env(data_dir, port=port, **extra),
        data_dir=data_dir,
        log_dir=tmp_path / "logs",
        base_url=f"http://127.0.0.1:{port}",
    )
    database_url = postgres.url if postgres else f"sqlite:///{data_dir / 'mnemo.db'}"
    return Deployment(
        service=service,
        database_url=database_url,
        ledger=ledger,
        points=points,
        redis=redis,
        postgres=postgres,
    )


@pytest.fixture(params=list(RUNS))
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """A deployment whose processes run with ``RUNS[param]`` armed, migrated, nothing started."""
    made = _deployment(tmp_path, production=request.param == "production", points=RUNS[request.param])
    try:
        made.service.run_cli("db", "upgrade")
        yield made
    finally:
        made.service.stop_all()
        for server in (made.redis, made.postgres):
            if server is not None:
                server.close()


def _restart_dead(deployment: Deployment) -> None:
    """Start a new worker for each one that died (each must have died of SIGKILL)."""
    service = deployment.service
    for worker in [w for w in service.workers if w.poll() is not None]:
        assert worker.returncode == -signal.SIGKILL, (
            f"a worker exited with {worker.returncode}:\n{service.logs()}"
        )
        service.workers.remove(worker)
        deployment.spawn_worker()


def _settle(deployment: Deployment, *, timeout: float) -> None:
    """Until every job is final and no raw upload row remains, restarting dead workers."""
    deadline = time.monotonic() + timeout
    factory = deployment.session_factory()
    try:
        while True:
            assert time.monotonic() < deadline, f"not settled in {timeout} s:\n{deployment.service.logs()}"
            _restart_dead(deployment)
            try:
                with factory() as session:
                    open_jobs = session.scalar(
                        select(Job.id).where(Job.state.in_(("queued", "running"))).limit(1)
                    )
                rows = audit.upload_rows(factory)
            except Exception:  # the database restarting
                time.sleep(0.5)
                continue
            if open_jobs is None and rows == 0 and len(deployment.accepted) <= _job_count(factory):
                return
            time.sleep(0.5)
    finally:
        factory.kw["bind"].dispose()


def _job_count(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return len(session.scalars(select(Job.id)).all())


def _assert_clean(deployment: Deployment) -> None:
    """Exactly once, intact lineage, no raw byte, nothing the sweeps leave unaccounted."""
    for worker in deployment.service.workers:  # stop first: the sweep must race nothing
        processes.stop(worker)
    factory = deployment.session_factory()
    try:
        fates = audit.job_fates(factory, deployment.accepted)
        assert (fates.lost, fates.run_twice) == ([], []), deployment.service.logs()
        assert len(fates.exactly_once) == len(deployment.accepted)
        assert audit.lineage_violations(factory, LocalStore(deployment.service.data_dir)) == []
        assert audit.upload_rows(factory) == 0
        _, left = audit.sweep_orphans(factory, data_dir=deployment.service.data_dir)
        assert left == []
    finally:
        factory.kw["bind"].dispose()
    assert audit.residue(deployment.secrets, folders=deployment.folders(), blobs=deployment.blobs()) == []


def _accept(deployment: Deployment, response: httpx.Response, *, kind: str, images: int = 0) -> str:
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]
    deployment.accepted.append(audit.Accepted(job_id=job_id, kind=kind, images=images))
    return job_id


def test_each_crash_point_kills_its_process_once_and_every_job_completes_once(deployment: Deployment) -> None:
    points = deployment.points
    service = deployment.service
    service.start_api()
    deployment.spawn_worker()  # the second once the first created the embedded broker's tables
    service.wait_log("worker0", "ready.", timeout=START_TIMEOUT, process=service.workers[0])
    deployment.spawn_worker()
    headers = service.create_user("carol")
    if API_POINTS[0] in points:
        _upload_through_api_crashes(deployment, headers, name="first")
    else:
        _accept(deployment, deployment.upload(headers, name="first", seed=1), kind="train")
    _accept(deployment, deployment.upload(headers, name="second", seed=2), kind="train")
    with service.client() as http:
        body = {"prompt": "a photo of a dog", "n": 2, "steps": 2, "seed": 3}
        _accept(deployment, http.post("/v1/generate", headers=headers, json=body), kind="generate", images=2)
    if deployment.postgres is not None:
        _servers_fail(deployment)
    _settle(deployment, timeout=400)

    assert sorted(faults.fired(deployment.ledger)) == sorted(points)
    _assert_clean(deployment)


def _upload_through_api_crashes(deployment: Deployment, headers: dict[str, str], *, name: str) -> None:
    """The API dies at each API point in turn; the request that died after its commit is the job."""
    for attempt, point in enumerate(API_POINTS):
        with pytest.raises(httpx.TransportError):  # the API died mid-request
            deployment.upload(headers, name=name, seed=100 + attempt)
        assert faults.fired(deployment.ledger)[-1] == point
        deployment.service.start_api()
    assert deployment.upload(headers, name=name, seed=1).status_code == 409  # it was committed
    factory = deployment.session_factory()
    try:
        with factory() as session:
            (job_id,) = session.scalars(select(Job.id).join(Concept, Concept.id == Job.concept_id)).all()
    finally:
        factory.kw["bind"].dispose()
    deployment.accepted.append(audit.Accepted(job_id=job_id, kind="train"))


def _servers_fail(deployment: Deployment) -> None:
    """Once a job runs: the broker loses every message and restarts; the database crashes and
    restarts (immediate stop: recovery replays the WAL)."""
    factory = deployment.session_factory()
    try:
        _wait_state(factory, deployment.accepted[0].job_id, ("running", "succeeded"), timeout=120)
    finally:
        factory.kw["bind"].dispose()
    assert deployment.redis is not None and deployment.postgres is not None
    deployment.redis.wipe()
    deployment.redis.restart()
    deployment.postgres.restart()


def _wait_state(
    factory: sessionmaker[Session], job_id: str, states: tuple[str, ...], *, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with factory() as session:
            if session.scalar(select(Job.state).where(Job.id == job_id)) in states:
                return
        assert time.monotonic() < deadline, f"job {job_id} not in {states} after {timeout} s"
        time.sleep(0.2)
