"""An unhandled database error is logged without user content (issue 20 item 3, the error log).

Before the fix, a database error escaped to uvicorn, which logged ``Exception in ASGI
application`` with the traceback — and SQLAlchemy's message carries the statement's parameters:
the user's prompt. Now the error is answered as the one 500 and logged by its type, route and
request id, and the engines hide SQL parameters from every error message. On SQLite and
PostgreSQL, through a real uvicorn server (only a real server writes that log).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.app import create_app
from core.db.migrate import upgrade
from core.db.session import make_engine, make_session_factory
from core.db.users import create_user
from core.settings import Settings
from tests.conftest import make_settings
from tests.served_api import serve

# Statements that make every insert into generations fail, after the request's reads succeeded.
REFUSE_GENERATIONS = {
    "sqlite": "CREATE TRIGGER refuse BEFORE INSERT ON generations BEGIN SELECT RAISE(ABORT, 'refused'); END",
    "postgresql": "ALTER TABLE generations ADD CONSTRAINT refuse CHECK (false)",
}


@pytest.fixture(params=["sqlite", "postgres"])
def broken_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database that refuses every generation row: a generate request fails in SQL,
    in the statement whose parameters hold the prompt."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'mnemo.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")  # its own schema: dropped afterwards
    upgrade(database_url=url)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(REFUSE_GENERATIONS[engine.dialect.name])
    finally:
        engine.dispose()
    yield url


@pytest.fixture
def narrow_prompt_database(fresh_postgres_url: str) -> str:
    """PostgreSQL whose prompt column holds 8 characters: a longer prompt is a DataError."""
    upgrade(database_url=fresh_postgres_url)
    engine = make_engine(fresh_postgres_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE generations ALTER COLUMN prompt TYPE varchar(8)")
    finally:
        engine.dispose()
    return fresh_postgres_url


def _bearer(settings: Settings) -> dict[str, str]:
    factory = make_session_factory(settings.database_url)
    try:
        with factory() as session:
            issued = create_user(session, name="alice", pepper=settings.pepper)
            session.commit()
    finally:
        factory.kw["bind"].dispose()
    return {"Authorization": f"Bearer {issued.key}"}


def _generate_via_uvicorn(database_url: str, *, data_dir: Path, prompt: str) -> httpx.Response:
    """``POST /v1/generate`` with ``prompt`` as a new user, through a real uvicorn server."""
    settings = make_settings(data_dir=data_dir, database_url=database_url)
    headers = _bearer(settings)
    app = create_app(settings, dispatcher=lambda: None)
    try:
        with serve(app) as base_url:
            url = f"{base_url}/v1/generate"
            return httpx.post(url, headers=headers, json={"prompt": prompt}, timeout=60)
    finally:
        app.state.services.session_factory.kw["bind"].dispose()


def test_a_database_error_answers_500_and_logs_no_prompt(  # type: ignore[no-untyped-def]
    broken_database: str, tmp_path: Path, caplog
) -> None:
    secret = f"a photo of my secret {uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    response = _generate_via_uvicorn(broken_database, data_dir=tmp_path / "data", prompt=secret)
    assert response.status_code == 500
    assert secret not in caplog.text  # caplog.text includes every record's formatted traceback
    assert "secret" not in caplog.text
    body = response.json()
    assert body == {"detail": "internal error", "request_id": response.headers["x-request-id"]}
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unhandled")]
    assert f"in POST /v1/generate (request {body['request_id']})" in line
    assert line.split()[1] == "IntegrityError"  # the trigger's abort, the CHECK's violation
    assert "api/routes/generate.py" in line  # the frames say where, without values


def test_engines_hide_sql_parameters_from_error_messages(database_url: str) -> None:
    secret = f"my secret prompt {uuid.uuid4().hex}"
    engine = make_engine(database_url)
    try:
        with pytest.raises(sa.exc.DBAPIError) as raised, engine.connect() as connection:
            connection.execute(
                sa.text("INSERT INTO no_such_table (prompt) VALUES (:prompt)"), {"prompt": secret}
            )
    finally:
        engine.dispose()
    assert secret not in str(raised.value)
    assert "parameters hidden" in str(raised.value)


def test_every_answer_carries_its_own_request_id(api) -> None:  # type: ignore[no-untyped-def]
    ids = {api.client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    ids.add(api.client.get("/v1/me").headers["x-request-id"])  # an error answer has one too
    assert len(ids) == 4 and all(len(i) == 32 for i in ids)


def test_a_value_the_database_refuses_is_422_and_logged_without_it(  # type: ignore[no-untyped-def]
    narrow_prompt_database: str, tmp_path: Path, caplog
) -> None:
    secret = f"secret {uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    response = _generate_via_uvicorn(narrow_prompt_database, data_dir=tmp_path / "data", prompt=secret)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("a value could not be stored")
    assert secret not in caplog.text
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("database refused")]
    assert "StringDataRightTruncation in POST /v1/generate" in line
