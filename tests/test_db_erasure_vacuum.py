"""After an erasure the user's text is in no table file of the database (issue 20 item 7).

PostgreSQL keeps deleted rows as dead tuples, and a plain VACUUM leaves their bytes in the page's
free space; SQLite keeps them in free pages and the -wal file unless told otherwise. Each test
writes sentinel strings (user name, concept name, prompt, negative prompt) for one user, checks
that they are in the files, erases the user and checks that no byte of them is left — in the
heap, TOAST and index files of every table (PostgreSQL, read after a CHECKPOINT with
``pg_read_binary_file``) or in ``mnemo.db*`` (SQLite) — while another user's rows survive.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db.enqueue import GenerateRequest, TrainRequest, create_generate_job, create_train_job
from core.db.erasure import erase_user
from core.db.models import Concept, Generation, User
from core.db.users import create_user
from core.storage import LocalStore


def seed_user(factory: sessionmaker[Session], *, name: str, concept: str, prompt: str) -> str:
    """A user with one queued concept and two generations; returns the user id."""
    with factory() as session:
        user_id = create_user(session, name=name, pepper=b"p").user.id
        request = TrainRequest(name=concept, class_word="dog", method="ewc", steps=5)
        create_train_job(session, user_id=user_id, request=request, uploads=[], max_attempts=1)
        for seed in range(2):
            generate = GenerateRequest(
                prompt=f"a photo of {prompt}",
                negative_prompt=f"blurry {prompt}",
                n=1,
                steps=1,
                guidance_scale=1.0,
                seed=seed,
            )
            create_generate_job(session, user_id=user_id, request=generate, max_attempts=1)
        session.commit()
    return user_id


def postgres_relation_bytes(engine: sa.Engine) -> bytes:
    """Every heap, TOAST and index file of the schema's tables, as on disk after a checkpoint."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("CHECKPOINT")
        relations = connection.exec_driver_sql(
            "SELECT c.oid FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace "
            "AND c.relkind IN ('r', 'i') "
            "UNION SELECT c.reltoastrelid FROM pg_class c "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.reltoastrelid <> 0 "
            "UNION SELECT i.indexrelid FROM pg_class c JOIN pg_index i ON i.indrelid = c.reltoastrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace"
        ).scalars()
        chunks = []
        for oid in relations:
            path = connection.exec_driver_sql("SELECT pg_relation_filepath(%s)", (oid,)).scalar()
            if path:
                chunks.append(
                    connection.exec_driver_sql("SELECT pg_read_binary_file(%s::text)", (path,)).scalar()
                    or b""
                )
        return b"".join(chunks)


def database_bytes(engine: sa.Engine) -> bytes:
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())
    return postgres_relation_bytes(engine)


def test_erased_text_leaves_every_table_file(session_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = uuid.uuid4().hex[:20]
    sentinels = {
        "user name": f"u{marker}",
        "concept name": f"c{marker}",
        "prompt": f"PROMPT-{marker}",
    }
    alice = seed_user(
        session_factory,
        name=sentinels["user name"],
        concept=sentinels["concept name"],
        prompt=sentinels["prompt"],
    )
    bob = seed_user(session_factory, name="bob", concept="rex", prompt="a plain dog")
    engine = session_factory.kw["bind"]
    before = database_bytes(engine)
    assert all(value.encode() in before for value in sentinels.values())

    report = erase_user(session_factory, store=LocalStore(tmp_path / "data"), user_id=alice)

    after = database_bytes(engine)
    assert [what for what, value in sentinels.items() if value.encode() in after] == []
    assert report.rows_user == 1 and report.compacted
    with session_factory() as session:
        assert session.get(User, bob) is not None
        assert (
            session.scalar(select(func.count()).select_from(Generation).where(Generation.user_id == bob)) == 2
        )
        assert session.scalar(select(Concept.name).where(Concept.user_id == bob)) == "rex"
