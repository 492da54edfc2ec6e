"""Raw uploads a crash orphans are swept (issue 20 item 4).

The API writes a concept's re-encoded images, then commits their rows. A SIGKILL between the two
used to leave files under ``uploads/`` that no row names, which neither the orphan sweep nor
``DELETE /v1/me`` ever removed. Here a real ``mnemo api`` process is killed in that window: the
test holds the database's write lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``LOCK TABLE jobs IN
EXCLUSIVE MODE``: reads, such as the quota counts, go on, the insert waits) so the request
blocks right before its commit, waits for the files to appear, and SIGKILLs the process group.
The orphan sweep must then remove them once they are older than the grace period.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from core.cli import processes
from core.db.cleanup import UPLOAD_ORPHAN_GRACE_SECONDS, collect_orphan_uploads
from core.db.jobs import collect_orphans
from core.db.models import Upload, utcnow
from core.db.session import make_engine, write_transaction
from core.db.users import create_user
from core.storage import LocalStore
from core.storage.local import TEMP_PREFIX
from tests.conftest import encode_image

START_TIMEOUT = 90.0


@contextmanager
def write_lock(factory: sa.orm.sessionmaker[sa.orm.Session]) -> Iterator[None]:
    """Hold the lock the API's upload commit needs, until the block ends."""
    with write_transaction(factory) as session:  # SQLite: BEGIN IMMEDIATE, the write lock
        if session.get_bind().dialect.name != "sqlite":
            session.execute(sa.text("LOCK TABLE jobs IN EXCLUSIVE MODE"))
        yield


def start_api(*, data_dir: Path, database_url: str, log: Path) -> tuple[object, str]:
    port = processes.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    env.update(
        MNEMO_DATA_DIR=str(data_dir),
        MNEMO_DATABASE_URL=database_url,
        MNEMO_BROKER_URL=f"sqla+sqlite:///{data_dir / 'broker.sqlite'}",
        MNEMO_API_KEY_PEPPER="test-pepper",
        MNEMO_HOST="127.0.0.1",
        MNEMO_PORT=str(port),
    )
    api = processes.start(processes.mnemo_command("api", "--log-level", "warning"), env=env, log_path=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        processes.wait_http_ok(f"{base_url}/healthz", timeout=START_TIMEOUT, process=api)
    except BaseException:
        processes.kill(api)
        raise
    return api, base_url


def wait_for_files(folder: Path, *, count: int, timeout: float) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = [p for p in folder.glob("*") if p.is_file() and not p.name.startswith(TEMP_PREFIX)]
        if len(files) >= count:
            return files
        time.sleep(0.05)
    raise AssertionError(f"{count} upload files did not appear in {timeout} s")


def post_concept(base_url: str, headers: dict[str, str], images: list[bytes]) -> None:
    files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    with contextlib.suppress(httpx.HTTPError):  # the server dies mid-request
        httpx.post(f"{base_url}/v1/concepts", headers=headers, data={"name": "rex"}, files=files, timeout=60)


def test_sigkill_between_upload_write_and_commit_leaves_nothing_after_the_sweep(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    engine = make_engine(database_url)
    factory = sa.orm.sessionmaker(bind=engine)
    with factory() as session:
        key = create_user(session, name="alice", pepper=b"test-pepper").key
        session.commit()
    headers = {"Authorization": f"Bearer {key}"}
    api, base_url = start_api(data_dir=data_dir, database_url=database_url, log=tmp_path / "api.log")
    try:
        # The key's first use writes last_used_at; do it before the lock is taken.
        assert httpx.get(f"{base_url}/v1/concepts", headers=headers, timeout=30).status_code == 200
        images = [encode_image("PNG", size=(24, 24), color=(10 * i, 90, 200)) for i in range(3)]
        with write_lock(factory):
            request = threading.Thread(target=post_concept, args=(base_url, headers, images), daemon=True)
            request.start()
            written = wait_for_files(data_dir / "uploads", count=3, timeout=60)
            processes.kill_pid(api.pid)  # SIGKILL: no except/finally of the request runs
            api.wait(timeout=30)
        request.join(timeout=30)
    finally:
        processes.kill(api)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
    assert all(path.exists() for path in written)  # the crash left unowned raw bytes

    store = LocalStore(data_dir)
    # Within the grace period the sweep keeps them (a request may still be about to commit).
    assert collect_orphan_uploads(factory, store, older_than_seconds=UPLOAD_ORPHAN_GRACE_SECONDS) == []
    later = utcnow() + timedelta(seconds=UPLOAD_ORPHAN_GRACE_SECONDS + 1)
    # The reconciler's periodic sweep (an hour's age for other leftovers) removes them.
    removed = collect_orphans(factory, store, older_than_seconds=3600, now=later)
    assert sorted(removed) == sorted(f"uploads/{p.name}" for p in written)
    assert not store.raw_upload_bytes_remain()
    engine.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sweep_keeps_owned_uploads_and_removes_stale_temp_files(database_url: str, tmp_path: Path) -> None:
    from core.db.enqueue import TrainRequest, create_train_job

    store = LocalStore(tmp_path / "data")
    engine = make_engine(database_url)
    factory = sa.orm.sessionmaker(bind=engine)
    owned = store.write_bytes(store.new_upload_path(), b"owned raw bytes")
    orphan = store.write_bytes(store.new_upload_path(), b"orphaned raw bytes")
    temp = store.resolve("uploads") / f"{TEMP_PREFIX}killed-mid-write"
    temp.write_bytes(b"half a raw image")  # a write killed before its rename
    with factory() as session:
        user_id = create_user(session, name="alice", pepper=b"p").user.id
        create_train_job(
            session,
            user_id=user_id,
            request=TrainRequest(name="rex", class_word=None, method="ewc", steps=5),
            uploads=[owned],
            max_attempts=3,
        )
        session.commit()
    later = utcnow() + timedelta(seconds=UPLOAD_ORPHAN_GRACE_SECONDS + 1)
    removed = collect_orphan_uploads(
        factory, store, older_than_seconds=UPLOAD_ORPHAN_GRACE_SECONDS, now=later
    )
    assert sorted(removed) == sorted([orphan.path, f"uploads/{temp.name}"])
    assert store.exists(owned.path) and not store.exists(orphan.path) and not temp.exists()
    engine.dispose()
