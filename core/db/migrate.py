"""Run the Alembic migrations shipped in ``migrations/`` (``mnemo db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

ALEMBIC_INI = Path(migrations.__file__).with_name("alembic.ini")


def alembic_config(*, database_url: str, configure_logging: bool = False) -> Config:
    """An Alembic ``Config`` for the packaged migrations, pointed at ``database_url``."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_INI.parent))
    # ConfigParser interpolation: a literal '%' in a URL (escaped password) must be doubled.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = configure_logging
    return config


def upgrade(*, database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision`` (creates a SQLite file's folder)."""
    if database_url.startswith("sqlite"):
        from core.db.session import make_engine

        make_engine(database_url).dispose()  # creates the parent directory
    command.upgrade(alembic_config(database_url=database_url), revision)


def downgrade(*, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url=database_url), revision)


def current_revision(*, database_url: str) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    from core.db.session import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(database_url="sqlite://")).get_current_head()
