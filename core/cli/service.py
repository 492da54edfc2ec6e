"""``mnemo serve | api | worker | db upgrade | users ... | demo``: running the service.

* ``serve``  the embedded all-in-one: ``db upgrade``, then a real Celery worker process and the
  HTTP API on one machine, with SQLite and the server-less SQLAlchemy broker by default.
* ``api`` / ``worker``  the two halves, for production (PostgreSQL + Redis) or scaling out.
* ``db upgrade``  Alembic migrations (SQLite and PostgreSQL).
* ``users create|list|rotate|disable``  user administration; a new key is printed once.
* ``demo``  a fresh data directory, three sample concepts trained one after another, images.

Settings come from ``MNEMO_*`` environment variables (``core.settings``); the options below
override them for this command and the processes it starts. Heavy imports (FastAPI, Celery,
torch) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from core.settings import Settings

METRICS_DIR_PREFIX = "mnemo-worker-metrics-"  # docs/api.md, "Worker metrics"
SETTING_OPTIONS = {
    "data_dir": "MNEMO_DATA_DIR",
    "database_url": "MNEMO_DATABASE_URL",
    "broker_url": "MNEMO_BROKER_URL",
    "backbone": "MNEMO_BACKBONE",
    "engine_preset": "MNEMO_ENGINE_PRESET",
    "device": "MNEMO_DEVICE",
    "host": "MNEMO_HOST",
    "port": "MNEMO_PORT",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="all-in-one: API + a Celery worker process (embedded default)"
    )
    _add_setting_options(serve)
    serve.add_argument("--concurrency", type=int, default=1, help="worker pool processes")
    serve.add_argument("--no-upgrade", action="store_true", help="do not run the migrations first")
    serve.set_defaults(handler=_serve)

    api = subparsers.add_parser("api", help="the HTTP API (uvicorn)")
    _add_setting_options(api)
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    api.add_argument("--log-level", default="info", help="uvicorn log level (debug, info, warning)")
    api.set_defaults(handler=_api)

    worker = subparsers.add_parser("worker", help="a Celery worker (training and generation)")
    _add_setting_options(worker, only=tuple(n for n in SETTING_OPTIONS if n not in ("host", "port")))
    worker.add_argument(
        "--concurrency", type=int, default=1, help="pool processes (all on MNEMO_DEVICE; one worker per GPU)"
    )
    worker.add_argument("--queues", default="mnemo.train,mnemo.generate", help="comma-separated queues")
    worker.add_argument("--loglevel", default="info", help="Celery log level (debug, info, warning)")
    worker.add_argument("--hostname", default=None, help="Celery node name (default mnemo-<pid>@<host>)")
    worker.add_argument(
        "--no-reconciler", action="store_true", help="do not run the reconciler thread in this worker"
    )
    worker.add_argument("--max-tasks-per-child", type=int, default=0, help="recycle pool processes")
    worker.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        metavar="PID",
        help="exit (with the pool) when process PID is gone; `mnemo serve` passes its own",
    )
    worker.set_defaults(handler=_worker)

    db = subparsers.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply the Alembic migrations (default: to head)")
    _add_setting_options(upgrade, only=("data_dir", "database_url"))
    upgrade.add_argument("--revision", default="head", help="Alembic revision to upgrade to")
    upgrade.set_defaults(handler=_db_upgrade)

    users = subparsers.add_parser("users", help="user administration")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    create = user_commands.add_parser("create", help="create a user and print its API key (once)")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="give the user the admin role")
    listing = user_commands.add_parser("list", help="list users")
    rotate = user_commands.add_parser("rotate", help="issue a new key (printed once) and revoke the old")
    rotate.add_argument("name")
    rotate.add_argument("--keep-old", action="store_true", help="do not revoke the previous keys")
    disable = user_commands.add_parser("disable", help="disable a user (their keys stop working)")
    disable.add_argument("name")
    disable.add_argument("--enable", action="store_true", help="re-enable instead")
    for sub, handler in (
        (create, _users_create),
        (listing, _users_list),
        (rotate, _users_rotate),
        (disable, _users_disable),
    ):
        _add_setting_options(sub, only=("data_dir", "database_url"))
        sub.set_defaults(handler=handler)

    demo = subparsers.add_parser("demo", help="train three sample concepts and generate images (embedded)")
    demo.add_argument("--data-dir", type=Path, default=None, help="a fresh folder (default: a new temp dir)")
    demo.add_argument("--out", type=Path, default=Path("mnemo-demo"), help="where the PNG grid goes")
    demo.add_argument("--concepts", type=int, default=3, help="how many sample concepts, learned in order")
    demo.add_argument("--steps", type=int, default=None, help="training steps per concept (preset default)")
    demo.add_argument("--backbone", default=None, help="backbone (default: MNEMO_BACKBONE or toy)")
    demo.add_argument("--preset", default=None, help="engine preset (default: MNEMO_ENGINE_PRESET or toy)")
    demo.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    demo.set_defaults(handler=_demo)


def _add_setting_options(parser: argparse.ArgumentParser, *, only: tuple[str, ...] | None = None) -> None:
    helps = {
        "data_dir": "data directory (MNEMO_DATA_DIR)",
        "database_url": "SQLAlchemy URL (MNEMO_DATABASE_URL; default SQLite in the data dir)",
        "broker_url": "Celery broker URL (MNEMO_BROKER_URL; default SQLAlchemy/SQLite in the data dir)",
        "backbone": "toy | tiny | a diffusers SD folder (MNEMO_BACKBONE)",
        "engine_preset": "paper | toy | tiny (MNEMO_ENGINE_PRESET)",
        "device": "cpu | cuda | cuda:N (MNEMO_DEVICE)",
        "host": "bind address (MNEMO_HOST)",
        "port": "port (MNEMO_PORT)",
    }
    metavars = {"data_dir": "DIR", "database_url": "URL", "broker_url": "URL", "backbone": "NAME|DIR"}
    metavars |= {"engine_preset": "PRESET", "device": "DEVICE", "host": "HOST", "port": "PORT"}
    for name in only or tuple(SETTING_OPTIONS):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag, dest=f"setting_{name}", default=None, metavar=metavars[name], help=helps[name]
        )


def _apply_setting_options(args: argparse.Namespace) -> None:
    """Options given on the command line become ``MNEMO_*`` variables (also for child processes)."""
    for name, env in SETTING_OPTIONS.items():
        value = getattr(args, f"setting_{name}", None)
        if value is not None:
            os.environ[env] = str(Path(value).expanduser().resolve()) if name == "data_dir" else str(value)


def _settings_for(args: argparse.Namespace, **env_defaults: str) -> Settings:
    """The settings of a service command: the command-line overrides applied (``env_defaults``
    for variables not set), and this process's files private (``core.cli.private``)."""
    from core.cli.private import make_private
    from core.settings import get_settings

    _apply_setting_options(args)
    for name, value in env_defaults.items():
        os.environ.setdefault(name, value)
    settings = get_settings()
    make_private(settings.data_dir)
    return settings


# ---- serve / api / worker -------------------------------------------------------------------


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    from core.cli.access_log import uvicorn_log_config
    from core.cli.supervisor import WorkerSupervisor

    # This API expects its own worker: /readyz answers 503 while none is alive (docs/service.md).
    settings = _settings_for(args, MNEMO_READY_REQUIRES_WORKER="1")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_upgrade:
        from core.db.migrate import upgrade

        upgrade(database_url=settings.database_url)
    supervisor = WorkerSupervisor(
        worker_args=["--concurrency", str(args.concurrency)], env=os.environ.copy()
    ).start()
    print(
        f"mnemo: API on http://{settings.host}:{settings.port} (docs at /docs), worker pid "
        f"{supervisor.pid} (restarted if it dies), data in {settings.data_dir}",
        flush=True,
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal: make that
    # an exception here, so that the worker is stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        uvicorn.run(
            "api.app:app",
            host=settings.host,
            port=settings.port,
            log_level="info",
            log_config=uvicorn_log_config(settings.log_format),
        )
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from core.cli.access_log import uvicorn_log_config

    settings = _settings_for(args)
    uvicorn.run(
        "api.app:app",
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=uvicorn_log_config(settings.log_format),
        proxy_headers=True,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    settings = _settings_for(args)
    if args.parent_pid is not None:
        from core.cli.processes import exit_with_parent

        exit_with_parent(args.parent_pid)
    # One BLAS/OpenMP pool per pool process, sized so that the processes do not oversubscribe
    # the CPU cores (read by torch when the child imports it).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, args.concurrency))))
    # Idle OpenMP threads sleep instead of spinning: with other processes on the cores, spinning
    # threads made a tiny generation 100x slower here (20 s instead of 0.2 s).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.no_reconciler:
        os.environ["MNEMO_WORKER_RECONCILER"] = "0"
    if settings.worker_metrics_port:
        _private_metrics_dir()
    from core.queue.app import prepare_broker
    from worker.celery_app import app

    prepare_broker(settings)
    hostname = args.hostname or f"mnemo-{os.getpid()}@%h"
    argv = [
        "worker",
        "--pool=prefork",
        f"--concurrency={args.concurrency}",
        f"--queues={args.queues}",
        f"--loglevel={args.loglevel}",
        f"--hostname={hostname}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if args.max_tasks_per_child:
        argv.append(f"--max-tasks-per-child={args.max_tasks_per_child}")
    app.worker_main(argv)
    return 0


def _private_metrics_dir() -> None:
    """A fresh folder for the worker's multiprocess metrics (``worker.metrics``), named in the
    environment before anything imports prometheus_client; the worker removes it at shutdown.
    A folder the operator named in ``PROMETHEUS_MULTIPROC_DIR`` is used as it is."""
    import tempfile

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=METRICS_DIR_PREFIX)


# ---- db / users -----------------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace) -> int:
    from core.db.migrate import current_revision, upgrade

    settings = _settings_for(args)
    upgrade(database_url=settings.database_url, revision=args.revision)
    print(f"database at revision {current_revision(database_url=settings.database_url)}")
    return 0


def _session_and_settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """A write-transaction opener (SQLite: BEGIN IMMEDIATE, so a read-then-write never hits
    SQLITE_BUSY_SNAPSHOT while the service runs) and the settings."""
    from functools import partial

    from core.db.session import make_session_factory, write_transaction

    settings = _settings_for(args)
    _require_database(settings)
    return partial(write_transaction, make_session_factory(settings.database_url)), settings


def _require_database(settings) -> None:  # type: ignore[no-untyped-def]
    """Exit with one line (status 2) when there is no migrated Mnemo database where the settings
    point: a ``users`` command run from another folder must not create an empty one."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    hint = (
        "start `mnemo serve` (it migrates) or run `mnemo db upgrade`, and point --data-dir or "
        "MNEMO_DATA_DIR (or --database-url) at the server's data"
    )
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        _fail(f"no Mnemo database at {url.database}: {hint}")
    engine = create_engine(url)
    try:
        migrated = inspect(engine).has_table("users")
    except Exception as error:  # any connection failure gets the same one line
        _fail(f"cannot open the database ({type(error).__name__}): {hint}")
    finally:
        engine.dispose()
    if not migrated:
        _fail(f"the database at {url.render_as_string(hide_password=True)} has no tables: {hint}")


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _users_create(args: argparse.Namespace) -> int:
    from core.db.users import UserError, create_user

    factory, settings = _session_and_settings(args)
    with factory() as session:
        try:
            issued = create_user(
                session, name=args.name, role="admin" if args.admin else "user", pepper=settings.pepper
            )
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        line = f"user {issued.user.name} ({issued.user.role}) id {issued.user.id}"
    print(line)  # after the commit: the key printed is a key that exists
    print(f"API key (shown once, store it now): {issued.key}")
    return 0


def _users_list(args: argparse.Namespace) -> int:
    from core.db.users import active_key_count, list_users

    factory, _ = _session_and_settings(args)
    with factory() as session:
        users = list_users(session)
        print(f"{'name':<24} {'role':<6} {'state':<9} {'keys':>4}  {'created (UTC)':<19}  id")
        for user in users:
            state = "disabled" if user.disabled else "active"
            keys = active_key_count(session, user_id=user.id)
            created = user.created_at.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{user.name:<24} {user.role:<6} {state:<9} {keys:>4}  {created:<19}  {user.id}")
    return 0


def _users_rotate(args: argparse.Namespace) -> int:
    from core.db.users import find_user, rotate_key

    factory, settings = _session_and_settings(args)
    with factory() as session:
        user = find_user(session, ref=args.name)
        if user is None:
            print(f"error: no user {args.name!r}", file=sys.stderr)
            return 2
        issued = rotate_key(session, user=user, pepper=settings.pepper, revoke_old=not args.keep_old)
        name = user.name
    print(f"new API key for {name} (shown once): {issued.key}")
    if not args.keep_old:
        print("the previous keys are revoked")
    return 0


def _users_disable(args: argparse.Namespace) -> int:
    from core.db.users import find_user, set_disabled

    factory, _ = _session_and_settings(args)
    with factory() as session:
        user = find_user(session, ref=args.name)
        if user is None:
            print(f"error: no user {args.name!r}", file=sys.stderr)
            return 2
        set_disabled(session, user=user, disabled=not args.enable)
        print(f"user {user.name} is {'enabled' if args.enable else 'disabled'}")
    return 0


# ---- demo -----------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from core.cli.demo import run_demo

    return run_demo(args)
