"""``mnemo export``: a user's adapter version as a zip for diffusers, ComfyUI and A1111 (docs/export.md).

The same zip as ``GET /v1/adapters/{version}/export`` (``core.export.bundle``), read directly from
the database and the artifact store the settings point at, for an operator; no torch needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="an adapter version as a zip: diffusers/kohya LoRA, tokens")
    export.add_argument("version", help="the version's id, or its position in the user's lineage (1 = first)")
    export.add_argument("--user", required=True, help="the user's name or id")
    export.add_argument("--out", "-o", type=Path, default=None, help="zip to write (default: ./<name>.zip)")
    export.add_argument("--data-dir", type=Path, default=None, help="data directory (MNEMO_DATA_DIR)")
    export.add_argument("--database-url", default=None, help="SQLAlchemy URL (MNEMO_DATABASE_URL)")
    export.add_argument("--backbone", default=None, help="backbone named in the card (MNEMO_BACKBONE)")
    export.set_defaults(handler=_export)


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings (``MNEMO_*``), with the options given on the command line."""
    from core.settings import Settings

    given = {"data_dir": args.data_dir, "database_url": args.database_url, "backbone": args.backbone}
    return Settings(**{name: value for name, value in given.items() if value is not None})


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _missing_database(url: str) -> str | None:
    """A one-line reason when ``url`` is a SQLite file that does not exist (never create one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not (parsed.database and Path(parsed.database).exists()):
        return f"no Mnemo database at {parsed.database}: point --data-dir or --database-url at the server's"
    return None


def _export(args: argparse.Namespace) -> int:
    from core.db.session import make_session_factory
    from core.db.users import find_user
    from core.export.bundle import build_export
    from core.export.errors import ExportError, ExportNotFoundError
    from core.storage import make_store

    settings = _settings(args)
    missing = _missing_database(settings.database_url)
    if missing:
        return _fail(missing)
    factory = make_session_factory(settings.database_url)
    try:
        with factory() as session:
            user = find_user(session, ref=args.user)
            if user is None:
                return _fail(f"no user {args.user!r}")
            store = make_store(settings)
            archive = build_export(
                session, store=store, user_id=user.id, ref=args.version, backbone=settings.backbone
            )
    except ExportNotFoundError:
        return _fail(f"user {args.user!r} has no adapter version {args.version!r}")
    except ExportError as error:
        return _fail(str(error))
    finally:
        factory.kw["bind"].dispose()
    out = args.out or Path(archive.filename)
    out.write_bytes(archive.data)
    print(f"wrote {out} ({len(archive.data)} bytes)")
    return 0
