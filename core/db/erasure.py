"""Erasing an account (``DELETE /v1/me``): every row and file of the user.

One transaction deletes the user row; ``ON DELETE CASCADE`` removes keys, concepts, jobs, uploads,
adapter versions, Fisher states, generations, images and outbox rows. The files go right after
the commit (``core.db.cleanup.remove_files``), with every job's checkpoints and staging output.
What remains is one audit entry keyed by a hash of the user id, with no personal data
(docs/architecture.md, "Clean-up").

Deleted rows are not yet gone from the database files, so the erasure ends by compacting them
(docs/privacy.md, "What erasure guarantees"): SQLite (``secure_delete`` on) checkpoints its WAL
into the main file; PostgreSQL waits for transactions that may still see the rows, then runs
``VACUUM (FULL)`` of every table that held them — a plain VACUUM frees dead tuples but leaves their
bytes in the pages' free space; a full one rewrites the table and its indexes into new files.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.db.audit import record
from core.db.cleanup import job_output_paths, remove_files
from core.db.models import (
    AdapterVersion,
    AuditLog,
    Base,
    FisherState,
    GeneratedImage,
    Job,
    JobState,
    Upload,
    User,
)
from core.db.session import write_transaction
from core.storage import ArtifactStore

log = logging.getLogger(__name__)
# A full VACUUM needs an exclusive lock: it gives up rather than queue every other query behind it.
LOCK_TIMEOUT = "5s"
SNAPSHOT_WAIT_SECONDS = 10.0  # at most this long for transactions that may still see the rows
POLL_SECONDS = 0.1
# Client sessions of this database whose transaction or snapshot began before the erasure committed.
OLDER_TRANSACTIONS = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
    "AND (age(backend_xmin) >= age(CAST(:xid AS xid8)::xid) "
    "OR age(backend_xid) >= age(CAST(:xid AS xid8)::xid))"
)


@dataclass(frozen=True)
class ErasureReport:
    rows_user: int
    jobs: int
    running_jobs_stopped: int
    paths_deleted: int
    paths_failed: int
    compacted: bool = True  # the database files no longer hold the erased rows' bytes


def erasure_subject(user_id: str) -> str:
    """The audit subject of an erased user: a hash, not the id."""
    return "sha256:" + hashlib.sha256(user_id.encode()).hexdigest()


def erase_user(
    session_factory: sessionmaker[Session], *, store: ArtifactStore, user_id: str
) -> ErasureReport:
    """Delete the user's rows (one transaction), then the user's files; safe to re-run."""
    with write_transaction(session_factory) as session:
        xid = _transaction_id(session)
        # Lock the user's jobs before the user row: the same order as the worker's publish
        # (job, then user), so erasure and publish serialise instead of deadlocking.
        jobs = list(session.scalars(select(Job).where(Job.user_id == user_id).with_for_update()))
        job_ids = [job.id for job in jobs]
        running = [job.id for job in jobs if job.state == JobState.RUNNING.value]
        # Tell running workers to stop (they also lose their row when the user goes).
        if running:
            session.execute(update(Job).where(Job.id.in_(running)).values(cancel_requested=True))
        paths: list[str] = []
        if job_ids:
            paths += session.scalars(select(Upload.path).where(Upload.job_id.in_(job_ids)))
        paths += session.scalars(select(GeneratedImage.path).where(GeneratedImage.user_id == user_id))
        paths += session.scalars(select(FisherState.path).where(FisherState.user_id == user_id))
        paths += session.scalars(select(AdapterVersion.path).where(AdapterVersion.user_id == user_id))
        paths.append(store.user_adapters_dir(user_id=user_id))
        for job_id in job_ids:
            paths += job_output_paths(store, job_id=job_id)
        # Earlier audit entries about the user keep only the hashed id.
        session.execute(
            update(AuditLog).where(AuditLog.subject == user_id).values(subject=erasure_subject(user_id))
        )
        session.execute(update(User).where(User.id == user_id).values(current_adapter_version_id=None))
        deleted = session.execute(delete(User).where(User.id == user_id)).rowcount
        record(
            session,
            action="user.erase",
            subject=erasure_subject(user_id),
            details={"jobs": len(job_ids), "running_jobs": len(running)},
        )
    removal = remove_files(store, paths)
    engine = session_factory.kw["bind"]
    compacted = _compact_sqlite(engine) if xid is None else _compact_postgres(engine, xid=xid)
    return ErasureReport(
        rows_user=deleted,
        jobs=len(job_ids),
        running_jobs_stopped=len(running),
        paths_deleted=removal.removed,
        paths_failed=removal.failed,
        compacted=compacted,
    )


def erased_tables() -> list[str]:
    """The tables an erasure deletes from: ``users``, every table that refers to it (directly or
    through another), and the audit log (whose subjects it rewrites)."""
    reached = {User.__tablename__, AuditLog.__tablename__}
    grown = True
    while grown:
        before = len(reached)
        reached |= {
            table.name
            for table in Base.metadata.sorted_tables
            if any(fk.column.table.name in reached for fk in table.foreign_keys)
        }
        grown = len(reached) > before
    return [table.name for table in Base.metadata.sorted_tables if table.name in reached]


def _transaction_id(session: Session) -> str | None:
    """PostgreSQL: the erasing transaction's id (to wait for older ones); None on SQLite."""
    if session.get_bind().dialect.name == "sqlite":
        return None
    return str(session.scalar(text("SELECT pg_current_xact_id()::text")))


def _compact_sqlite(engine: Engine) -> bool:
    """SQLite: fold the WAL into the (secure_delete) main file so erased bytes leave the -wal file;
    False when a reader kept the checkpoint from finishing."""
    with engine.connect() as connection:
        busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").scalar()
    return not busy


def _compact_postgres(engine: Engine, *, xid: str) -> bool:
    """PostgreSQL: rewrite every erased table (outside a transaction); False if one could not be."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        settled = _wait_for_older_transactions(connection, xid=xid)
        connection.exec_driver_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        try:
            rewritten = [_vacuum_full(connection, table=table) for table in erased_tables()]
        finally:
            connection.exec_driver_sql("RESET lock_timeout")
    return settled and all(rewritten)


def _wait_for_older_transactions(connection: Connection, *, xid: str) -> bool:
    """Wait until no session (that this role may see) can still see the erased rows: a full VACUUM
    keeps those. False after ``SNAPSHOT_WAIT_SECONDS``."""
    deadline = time.monotonic() + SNAPSHOT_WAIT_SECONDS
    while connection.execute(OLDER_TRANSACTIONS, {"xid": xid}).scalar():
        if time.monotonic() > deadline:
            log.warning("erasure: a transaction older than the erasure is still open; compacting anyway")
            return False
        time.sleep(POLL_SECONDS)
    return True


def _vacuum_full(connection: Connection, *, table: str) -> bool:
    """Rewrite ``table``; True when it got a new file (a role that does not own the table gets
    only a warning from PostgreSQL, and the old file stays)."""
    before = _filenode(connection, table=table)
    try:
        connection.exec_driver_sql(f'VACUUM (FULL) "{table}"')
    except OperationalError:  # lock_timeout: the table is busy; the next erasure compacts it
        log.warning("erasure: %s was not compacted (lock timeout)", table)
        return False
    if _filenode(connection, table=table) == before:
        log.warning("erasure: %s was not compacted (does this role own it?)", table)
        return False
    return True


def _filenode(connection: Connection, *, table: str) -> int:
    return int(
        connection.execute(text("SELECT pg_relation_filenode(CAST(:t AS regclass))"), {"t": table}).scalar()
    )
