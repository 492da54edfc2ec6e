"""Shared fixtures: real databases (SQLite file, PostgreSQL), settings, an API client, users.

PostgreSQL: one database per test session, named ``mnemo_test_<random>`` on the server at
``MNEMO_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
created from that maintenance database, migrated once, emptied between tests, dropped at the end.
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

POSTGRES_ADMIN_URL = os.environ.get(
    "MNEMO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@dataclass
class PostgresServer:
    admin_url: str

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"mnemo_test_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
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


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty PostgreSQL database for one test (migration tests)."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A PostgreSQL database at the head revision, shared by the session's tests."""
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

    def files_under(self, folder: str) -> list[Path]:
        base = self.settings.data_dir / folder
        return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    """The API app on ``database_url`` with a data dir in ``tmp_path``; dispatch is recorded, not sent."""
    from fastapi.testclient import TestClient

    from api.app import create_app

    settings = make_settings(data_dir=tmp_path / "data", database_url=database_url)
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
