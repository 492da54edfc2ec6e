"""The world the job-protocol model runs in (``tests/job_protocol_model.py``).

``ModelWorld`` is one migrated database and data directory, shared by the examples of a test,
with a clock the model moves (``now``; the runner reads it through ``Runtime.clock``) and a log
of every change of a job's state or fencing token, written by a trigger in the database's own
order: transitions made inside one step, or by two threads at once, are all seen
(docs/architecture.md, "The job protocol").
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.orm import Session, sessionmaker

from core.db.models import Base, Job, JobState, utcnow
from core.db.session import make_session_factory
from core.settings import Settings
from core.storage import LocalStore
from worker.runtime import Runtime

TRANSITION_LOG = {
    "sqlite": [
        "CREATE TABLE model_transitions (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT,"
        " old_state TEXT, new_state TEXT, old_token BIGINT, new_token BIGINT)",
        "CREATE TRIGGER model_transitions_log AFTER UPDATE ON jobs"
        " WHEN OLD.state IS NOT NEW.state OR OLD.fencing_token IS NOT NEW.fencing_token"
        " BEGIN INSERT INTO model_transitions (job_id, old_state, new_state, old_token, new_token)"
        " VALUES (OLD.id, OLD.state, NEW.state, OLD.fencing_token, NEW.fencing_token); END",
    ],
    "postgresql": [
        "CREATE TABLE model_transitions (id BIGSERIAL PRIMARY KEY, job_id TEXT,"
        " old_state TEXT, new_state TEXT, old_token BIGINT, new_token BIGINT)",
        "CREATE FUNCTION model_log_transition() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO model_transitions (job_id, old_state, new_state, old_token, new_token)"
        " VALUES (OLD.id, OLD.state, NEW.state, OLD.fencing_token, NEW.fencing_token);"
        " RETURN NEW; END $$",
        "CREATE TRIGGER model_transitions_log AFTER UPDATE ON jobs FOR EACH ROW WHEN"
        " (OLD.state IS DISTINCT FROM NEW.state OR OLD.fencing_token IS DISTINCT FROM NEW.fencing_token)"
        " EXECUTE FUNCTION model_log_transition()",
    ],
}
DROP_TRANSITION_LOG = {
    "sqlite": ["DROP TRIGGER IF EXISTS model_transitions_log", "DROP TABLE IF EXISTS model_transitions"],
    "postgresql": [
        "DROP TABLE IF EXISTS model_transitions",
        "DROP FUNCTION IF EXISTS model_log_transition() CASCADE",
    ],
}


@dataclass(frozen=True)
class Transition:
    job_id: str
    old_state: str
    new_state: str
    old_token: int
    new_token: int


@dataclass
class ModelWorld:
    """One migrated database and data directory, shared by the examples of one test."""

    session_factory: sessionmaker[Session]
    settings: Settings
    now: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        self.store = LocalStore(self.settings.data_dir)
        self.runtime = Runtime(settings=self.settings, clock=lambda: self.now)
        self.runtime.session_factory = self.session_factory  # one engine for the model and the runner
        self.runtime.store = self.store

    @property
    def dialect(self) -> str:
        return self.session_factory.kw["bind"].dialect.name

    def _execute(self, statements: list[str]) -> None:
        with self.session_factory.begin() as session:
            for statement in statements:
                session.execute(text(statement))

    def reset(self) -> None:
        """Empty every table and the data directory: each example starts from nothing."""
        with self.session_factory.begin() as session:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(table.delete())
            session.execute(text("DELETE FROM model_transitions"))
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)
        self.now = utcnow()

    def transitions(self) -> list[Transition]:
        query = text(
            "SELECT job_id, old_state, new_state, old_token, new_token FROM model_transitions ORDER BY id"
        )
        with self.session_factory() as session:
            return [Transition(*row) for row in session.execute(query)]

    def job(self, job_id: str) -> Job:
        with self.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def overwrite_state(self, *, job_id: str, state: JobState) -> None:
        """Set a job's state behind the protocol's back (what a lost update did; a sanity check)."""
        with self.session_factory.begin() as session:
            session.execute(update(Job).where(Job.id == job_id).values(state=state.value))


@contextmanager
def model_world(*, database_url: str, settings: Settings) -> Iterator[ModelWorld]:
    """A ``ModelWorld`` with its transition log installed (and removed afterwards)."""
    world = ModelWorld(session_factory=make_session_factory(database_url), settings=settings)
    world._execute(DROP_TRANSITION_LOG[world.dialect] + TRANSITION_LOG[world.dialect])
    try:
        yield world
    finally:
        world._execute(DROP_TRANSITION_LOG[world.dialect])
        world.session_factory.kw["bind"].dispose()


def in_parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released at the same instant; their results (or exceptions)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:  # the caller asserts on it
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results
