"""The relational model on SQLite and PostgreSQL: seqs, constraints, cascades, time zones, locking."""

from __future__ import annotations

import threading
from datetime import UTC

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.db.enqueue import TrainRequest, allocate_job_seq, create_train_job
from core.db.models import AdapterVersion, ApiKey, Concept, Job, Outbox, User
from core.db.session import write_transaction
from core.db.users import UserError, authenticate, create_user, rotate_key

PEPPER = b"pepper"


def _user(factory, name: str = "alice") -> str:  # type: ignore[no-untyped-def]
    with factory() as session:
        user_id = create_user(session, name=name, pepper=PEPPER).user.id
        session.commit()
        return user_id


def test_job_seqs_are_per_user_and_unique_under_concurrency(session_factory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = _user(session_factory, "alice"), _user(session_factory, "bob")
    seqs: dict[str, list[int]] = {alice: [], bob: []}
    errors: list[BaseException] = []

    def allocate(user_id: str) -> None:
        try:
            for _ in range(10):
                with write_transaction(session_factory) as session:
                    seqs[user_id].append(allocate_job_seq(session, user_id=user_id))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=allocate, args=(u,)) for u in (alice, alice, bob, bob)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(seqs[alice]) == list(range(1, 21))
    assert sorted(seqs[bob]) == list(range(1, 21))


def test_train_job_rows_and_constraints(session_factory) -> None:  # type: ignore[no-untyped-def]
    user_id = _user(session_factory)
    request = TrainRequest(name="rex", class_word="dog", method="ewc", steps=10)
    with session_factory() as session:
        concept, job = create_train_job(session, user_id=user_id, request=request, uploads=[], max_attempts=3)
        session.commit()
        assert concept.token == "<rex>" and job.seq == 1 and job.state == "queued"
        assert session.scalars(select(Outbox.task_name).where(Outbox.job_id == job.id)).all() == [
            "mnemo.train"
        ]
        stored = session.get(Job, job.id)
        assert stored.created_at.tzinfo is not None and stored.created_at.utcoffset() == UTC.utcoffset(None)
    # Concept names are unique per user.
    with session_factory() as session, pytest.raises(IntegrityError):
        session.add(Concept(user_id=user_id, name="rex", token="<rex>", method="ewc"))
        session.commit()
    # One adapter version per job.
    with session_factory() as session:
        for _ in range(2):
            session.add(
                AdapterVersion(
                    user_id=user_id,
                    job_id=job.id,
                    task_index=1,
                    method="ewc",
                    path="p",
                    sha256="0",
                    size_bytes=0,
                )
            )
        with pytest.raises(IntegrityError):
            session.commit()
    # Check constraints hold on both backends.
    with session_factory() as session, pytest.raises(IntegrityError):
        session.add(Job(user_id=user_id, kind="train", seq=99, state="exploded"))
        session.commit()


def test_deleting_a_user_cascades(session_factory) -> None:  # type: ignore[no-untyped-def]
    user_id = _user(session_factory)
    with session_factory() as session:
        create_train_job(
            session,
            user_id=user_id,
            request=TrainRequest(name="rex", class_word=None, method="ewc", steps=None),
            uploads=[],
            max_attempts=3,
        )
        session.commit()
        session.delete(session.get(User, user_id))
        session.commit()
        for model in (ApiKey, Concept, Job, Outbox):
            assert session.scalar(select(func.count()).select_from(model)) == 0


def test_keys_authenticate_until_rotated(session_factory) -> None:  # type: ignore[no-untyped-def]
    with session_factory() as session:
        issued = create_user(session, name="alice", pepper=PEPPER)
        session.commit()
        assert authenticate(session, key=issued.key, pepper=PEPPER)[0].id == issued.user.id
        assert authenticate(session, key=issued.key, pepper=b"other pepper") is None
        assert authenticate(session, key=issued.key[:-1] + "x", pepper=PEPPER) is None
        new = rotate_key(session, user=issued.user, pepper=PEPPER)
        session.commit()
        assert authenticate(session, key=issued.key, pepper=PEPPER) is None
        assert authenticate(session, key=new.key, pepper=PEPPER)[0].id == issued.user.id
        assert authenticate(session, key=new.key + "\n", pepper=PEPPER) is None  # a full match


def test_user_names_are_full_matches(session_factory) -> None:  # type: ignore[no-untyped-def]
    """"x\n" matched the old ``^...$`` pattern and created a user beside "x" (issue 20, item 1)."""
    with session_factory() as session:
        for name in ("alice\n", "alice\nbob", "", "-alice", "a" * 65):
            with pytest.raises(UserError):
                create_user(session, name=name, pepper=PEPPER)
        assert create_user(session, name="a" * 64, pepper=PEPPER).user.name == "a" * 64


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_write_transactions_serialise_read_then_write(session_factory) -> None:  # type: ignore[no-untyped-def]
    user_id = _user(session_factory)

    def bump() -> None:
        for _ in range(15):
            with write_transaction(session_factory) as session:
                user = session.get(User, user_id, populate_existing=True)
                user.next_task_index = user.next_task_index + 1  # read, then write

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with session_factory() as session:
        assert session.get(User, user_id).next_task_index == 1 + 45
        pragmas = {
            name: session.connection().exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous", "secure_delete")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 30000,
        "synchronous": 2,
        "secure_delete": 1,
    }
