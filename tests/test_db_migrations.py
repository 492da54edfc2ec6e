"""Alembic: `upgrade head` from an empty database on SQLite and PostgreSQL matches the models."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.db.migrate import current_revision, downgrade, head_revision, upgrade
from core.db.models import Base
from core.db.session import make_engine

TABLES = {
    "users",
    "api_keys",
    "concepts",
    "jobs",
    "uploads",
    "adapter_versions",
    "fisher_states",
    "generations",
    "images",
    "outbox",
    "audit_log",
}


def _check_schema(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert set(sa.inspect(connection).get_table_names()) >= TABLES
            diff = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
            )
            assert diff == []
    finally:
        engine.dispose()


def _upgrade_downgrade_upgrade(url: str) -> None:
    assert current_revision(database_url=url) is None
    upgrade(database_url=url)
    assert current_revision(database_url=url) == head_revision()
    _check_schema(url)
    downgrade(database_url=url, revision="base")
    assert current_revision(database_url=url) is None
    engine = make_engine(url)
    with engine.connect() as connection:
        assert not TABLES & set(sa.inspect(connection).get_table_names())
    engine.dispose()
    upgrade(database_url=url)
    _check_schema(url)


def test_sqlite_upgrade_from_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'dir' / 'mnemo.db'}"  # the folder is created too
    _upgrade_downgrade_upgrade(url)


def test_postgres_upgrade_from_empty(fresh_postgres_url: str) -> None:
    _upgrade_downgrade_upgrade(fresh_postgres_url)


def test_alembic_command_line_uses_the_packaged_ini(tmp_path: Path) -> None:
    import subprocess
    import sys

    import migrations

    ini = Path(migrations.__file__).with_name("alembic.ini")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
        env={"MNEMO_DATABASE_URL": url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert current_revision(database_url=url) == head_revision()
