"""Engines and session factories from a database URL.

SQLite (the embedded default) gets WAL, ``synchronous=FULL`` (a 2xx promises durability),
``busy_timeout``, ``foreign_keys=ON`` and ``secure_delete=ON`` on every connection
(docs/architecture.md, "Database settings"). ``write_transaction(factory)`` opens a transaction
that takes the write lock at its start (SQLite ``BEGIN IMMEDIATE``), for read-then-write
sequences such as claims and seq allocation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, manage transactions (so BEGIN IMMEDIATE works).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
    finally:
        cursor.close()


IMMEDIATE_OPTION = "mnemo_sqlite_immediate"


def _begin_sqlite(connection: Any) -> None:
    # Emit our own BEGIN (pysqlite's transaction handling is off, see above); a connection
    # with the IMMEDIATE_OPTION execution option takes the write lock at BEGIN.
    immediate = connection.get_execution_options().get(IMMEDIATE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; creates the parent folder of a SQLite file.

    SQL parameters are hidden from the engine's errors and logs (``hide_parameters``): they are
    prompts, names and ids, and an error's message ends up in a log (docs/architecture.md,
    "Uploads and privacy").
    """
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_session_factory(engine_or_url: Engine | str) -> sessionmaker[Session]:
    """A session factory; objects stay readable after commit (``expire_on_commit=False``)."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    return sessionmaker(bind=engine, expire_on_commit=False, future=True)


@contextmanager
def write_transaction(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction holds the write lock from the start (SQLite: BEGIN IMMEDIATE).

    Commits on success, rolls back on error. Use it for read-then-write sequences that
    must not interleave (claims, seq allocation, publish, erasure).
    """
    session = session_factory()
    try:
        if session.get_bind().dialect.name == "sqlite":
            session.connection(execution_options={IMMEDIATE_OPTION: True})
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(session_factory: sessionmaker[Session]) -> None:
    """Raise if the database cannot answer ``SELECT 1``."""
    with session_factory() as session:
        session.execute(text("SELECT 1"))
