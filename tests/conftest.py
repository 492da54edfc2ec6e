"""Shared fixtures: real databases (SQLite file, PostgreSQL), settings, an API client, users.

PostgreSQL: a uniquely named schema ``mnemo_test_<random>`` in the database at
``MNEMO_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``):
one per test session, migrated once, emptied between tests, dropped at the end (migration
tests get their own empty schema).
CI runs PostgreSQL; a missing server is a test error, not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from core.db.migrate import upgrade
from core.db.models import Base
from core.db.session import make_engine, make_session_factory
from core.db.users import create_user
from core.settings import Settings
from tests.object_store import MotoS3

POSTGRES_ADMIN_URL = os.environ.get(
    "MNEMO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@dataclass
class PostgresServer:
    """The test server; each "database" a test gets is a fresh schema in the ``test`` database.

    (A schema is created and dropped in milliseconds; CREATE/DROP DATABASE needs checkpoints.)
    """

    admin_url: str

    def create_database(self) -> str:
        """A fresh, empty schema; returns a URL whose connections use it as their search path."""
        name = f"mnemo_test_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        finally:
            engine.dispose()
        url = make_url(self.admin_url).update_query_dict({"options": f"-csearch_path={name}"})
        return url.render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = make_url(url).query["options"].split("=", 1)[1]
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    engine = sa.create_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as error:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error.orig}")
    finally:
        engine.dispose()
    return PostgresServer(admin_url=POSTGRES_ADMIN_URL)


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """A real S3 endpoint: moto's server mode on a spare loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    from core.cli.processes import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield MotoS3(endpoint_url=f"http://127.0.0.1:{port}")
    server.stop()


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty PostgreSQL schema for one test (migration tests)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A PostgreSQL schema at the head revision, shared by the session's tests."""
    url = postgres_server.create_database()
    upgrade(database_url=url)
    yield url
    postgres_server.drop_database(url)


def _truncate_postgres(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            connection.exec_driver_sql(f"TRUNCATE {tables} CASCADE")
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: a SQLite file, then PostgreSQL (each test runs on both)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'mnemo.db'}"
        upgrade(database_url=url)
        yield url
        return
    url = request.getfixturevalue("migrated_postgres_url")
    _truncate_postgres(url)
    yield url
    _truncate_postgres(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated, empty SQLite database (for tests where the backend does not matter)."""
    url = f"sqlite:///{tmp_path / 'db' / 'mnemo.db'}"
    upgrade(database_url=url)
    return url


def make_settings(*, data_dir: Path, database_url: str, **overrides: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=f"sqla+sqlite:///{data_dir / 'broker.sqlite'}",
        api_key_pepper="test-pepper",
        **overrides,
    )


@pytest.fixture
def session_factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    factory = make_session_factory(database_url)
    yield factory
    factory.kw["bind"].dispose()


@pytest.fixture
def new_user(tmp_path: Path) -> Callable[..., tuple[str, str]]:
    """``new_user(factory, name, role="user") -> (user_id, api_key)``."""

    def create(factory: sessionmaker[Session], name: str, role: str = "user") -> tuple[str, str]:
        with factory() as session:
            issued = create_user(session, name=name, role=role, pepper=b"test-pepper")
            session.commit()
            return issued.user.id, issued.key

    return create


def encode_image(
    fmt: str = "PNG",
    *,
    size: tuple[int, int] = (32, 32),
    color: tuple[int, int, int] = (200, 30, 30),
    **save: object,
) -> bytes:
    """A small real image in ``fmt`` (PNG, JPEG, WEBP, GIF, BMP, TIFF, ...)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.fixture
def image_bytes() -> Callable[..., bytes]:
    """``image_bytes(fmt="PNG", size=(32, 32), color=(r, g, b), **pillow_save_options) -> bytes``."""
    return encode_image


@dataclass
class ApiHarness:
    """A FastAPI TestClient over a real database and data directory, plus direct DB access."""

    client: object  # fastapi.testclient.TestClient
    settings: Settings
    session_factory: sessionmaker[Session]
    dispatches: list[int]

    def user(self, name: str, role: str = "user") -> tuple[str, dict[str, str]]:
        """Create a user; returns (user id, Authorization headers)."""
        with self.session_factory() as session:
            issued = create_user(session, name=name, role=role, pepper=self.settings.pepper)
            session.commit()
            return issued.user.id, {"Authorization": f"Bearer {issued.key}"}

    def trained_concept(self, *, user_id: str, name: str) -> dict[str, str]:
        """Rows and files as a worker leaves them after training (ids: concept, job, version)."""
        return seed_trained_concept(self, user_id=user_id, name=name)

    def generated_image(self, *, user_id: str, prompt: str = "a photo") -> dict[str, str]:
        """A finished generate job with one stored PNG (ids: job, generation, image)."""
        return seed_generated_image(self, user_id=user_id, prompt=prompt)

    def files_under(self, folder: str) -> list[Path]:
        base = self.settings.data_dir / folder
        return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    """The API app on ``database_url`` with a data dir in ``tmp_path``; dispatch is recorded, not sent."""
    yield from serve_api(make_settings(data_dir=tmp_path / "data", database_url=database_url))


def serve_api(settings: Settings) -> Iterator[ApiHarness]:
    """The API app of ``settings`` in a TestClient, for the duration of a fixture."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    dispatches: list[int] = []
    app = create_app(settings, dispatcher=lambda: dispatches.append(1))
    with TestClient(app) as client:
        yield ApiHarness(
            client=client,
            settings=settings,
            session_factory=app.state.services.session_factory,
            dispatches=dispatches,
        )
    app.state.services.session_factory.kw["bind"].dispose()


def seed_trained_concept(harness: ApiHarness, *, user_id: str, name: str) -> dict[str, str]:
    """Rows and files as a worker leaves them after training ``name`` (a stand-in for the worker).

    Returns ids: concept, job, version.
    """
    from core.db.enqueue import TrainRequest, create_train_job
    from core.db.models import AdapterVersion, ConceptStatus, FisherState, Job, JobState, User, utcnow
    from core.storage import make_store, manifest_sha256

    store = make_store(harness.settings)
    with harness.session_factory() as session:
        concept, job = create_train_job(
            session,
            user_id=user_id,
            request=TrainRequest(name=name, class_word=None, method="dsc_ewc_dc", steps=None),
            uploads=[],
            max_attempts=3,
        )
        user = session.get(User, user_id)
        version = AdapterVersion(
            user_id=user_id,
            concept_id=concept.id,
            job_id=job.id,
            parent_id=user.current_adapter_version_id,
            task_index=user.next_task_index,
            method=concept.method,
            path="",
            sha256="",
            size_bytes=0,
        )
        session.add(version)
        session.flush()
        version.path = store.adapter_dir(user_id=user_id, version_id=version.id)
        store.write_bytes(f"{version.path}/lora.safetensors", f"weights of {name}".encode())
        store.write_bytes(f"{version.path}/fisher.safetensors", f"fisher of {name}".encode())
        version.files = store.describe_dir(version.path)
        version.sha256 = manifest_sha256(version.files)
        version.size_bytes = sum(f["bytes"] for f in version.files.values())
        fisher = version.files["fisher.safetensors"]
        session.add(
            FisherState(
                user_id=user_id,
                adapter_version_id=version.id,
                job_id=job.id,
                path=f"{version.path}/fisher.safetensors",
                sha256=fisher["sha256"],
                bytes=fisher["bytes"],
            )
        )
        concept.status = ConceptStatus.READY.value
        concept.task_index = user.next_task_index
        concept.images_deleted_at = utcnow()
        user.next_task_index += 1
        user.current_adapter_version_id = version.id
        db_job = session.get(Job, job.id)
        db_job.state = JobState.SUCCEEDED.value
        db_job.finished_at = utcnow()
        session.commit()
        return {"concept": concept.id, "job": job.id, "version": version.id}


def seed_generated_image(harness: ApiHarness, *, user_id: str, prompt: str = "a photo") -> dict[str, str]:
    """A finished generate job with one stored PNG (a stand-in for the worker). Returns ids."""
    from core.db.enqueue import GenerateRequest, create_generate_job
    from core.db.models import GeneratedImage, Job, JobState, utcnow
    from core.storage import make_store

    store = make_store(harness.settings)
    with harness.session_factory() as session:
        request = GenerateRequest(prompt=prompt, negative_prompt="", n=1, steps=2, guidance_scale=1.0, seed=0)
        generation, job = create_generate_job(session, user_id=user_id, request=request, max_attempts=3)
        stored = store.write_bytes(store.new_image_path(), encode_image("PNG", size=(16, 16)))
        image = GeneratedImage(
            user_id=user_id,
            generation_id=generation.id,
            path=stored.path,
            sha256=stored.sha256,
            width=16,
            height=16,
        )
        session.add(image)
        session.flush()
        db_job = session.get(Job, job.id)
        db_job.state = JobState.SUCCEEDED.value
        db_job.finished_at = utcnow()
        db_job.result = {"images": [image.id]}
        session.commit()
        return {"job": job.id, "generation": generation.id, "image": image.id}
