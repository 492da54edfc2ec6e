"""Celery configuration (docs/architecture.md, "Broker settings"), the torch-free worker parent, and the
``mnemo db``/``users`` commands on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from core.cli.processes import mnemo_command
from core.queue.app import HARD_TIME_LIMIT_S, SOFT_TIME_LIMIT_S, celery_config, create_celery_app
from core.settings import Settings


def test_celery_settings_follow_the_reliability_baseline(tmp_path: Path) -> None:
    config = celery_config(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0"))
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_serializer"] == "json" and config["accept_content"] == ["json"]
    assert config["worker_pool"] == "prefork" and config["task_ignore_result"]
    assert SOFT_TIME_LIMIT_S < HARD_TIME_LIMIT_S == config["task_time_limit"]
    # The visibility timeout is above the hard limit, set in all three places (celery#7651).
    for value in (
        config["broker_transport_options"]["visibility_timeout"],
        config["result_backend_transport_options"]["visibility_timeout"],
        config["visibility_timeout"],
    ):
        assert value > HARD_TIME_LIMIT_S
    # Each task goes to its own queue on its own exchange (no cross-delivery).
    routes = {name: route["queue"] for name, route in config["task_routes"].items()}
    assert routes == {"mnemo.train": "mnemo.train", "mnemo.generate": "mnemo.generate"}
    assert {(q.name, q.exchange.name, q.routing_key) for q in config["task_queues"]} == {
        ("mnemo.train", "mnemo.train", "mnemo.train"),
        ("mnemo.generate", "mnemo.generate", "mnemo.generate"),
    }


def test_embedded_broker_is_the_fast_polling_sqlalchemy_transport(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.broker_url.startswith("sqla+sqlite:///")
    app = create_celery_app(settings)
    with app.connection_for_write() as connection:
        assert type(connection.transport).__module__ == "core.queue.transport"
        assert connection.transport.polling_interval <= 0.1
        connection.ensure_connection(max_retries=1)


def test_the_worker_parent_and_the_sender_never_import_torch() -> None:
    code = (
        "import sys, worker.celery_app, worker.tasks, worker.signals, core.queue.outbox, worker.reconciler;"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def _mnemo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mnemo_command(*args), env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_db_upgrade_and_user_commands(tmp_path: Path, database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    env.update(MNEMO_DATA_DIR=str(tmp_path / "data"), MNEMO_DATABASE_URL=database_url)
    upgraded = _mnemo("db", "upgrade", env=env)
    assert upgraded.returncode == 0 and "revision" in upgraded.stdout, upgraded.stderr

    created = _mnemo("users", "create", "ada", "--admin", env=env)
    assert created.returncode == 0, created.stderr
    (key,) = re.findall(r"mnemo_[A-Za-z0-9_-]{43}", created.stdout)
    assert "(admin)" in created.stdout
    duplicate = _mnemo("users", "create", "ada", env=env)
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr

    rotated = _mnemo("users", "rotate", "ada", env=env)
    (new_key,) = re.findall(r"mnemo_[A-Za-z0-9_-]{43}", rotated.stdout)
    assert new_key != key and "revoked" in rotated.stdout
    assert _mnemo("users", "disable", "ada", env=env).returncode == 0
    listing = _mnemo("users", "list", env=env).stdout
    (row,) = [line for line in listing.splitlines() if line.startswith("ada ")]
    assert row.split()[1:4] == ["admin", "disabled", "1"]  # one active key: the rotated one
    assert key not in listing and new_key not in listing
    assert _mnemo("users", "rotate", "nobody", env=env).returncode == 2


def test_every_setting_is_documented() -> None:
    from core.settings import settings_reference

    text = (Path(__file__).parents[2] / "docs" / "service.md").read_text()
    missing = [name for name, _, _ in settings_reference() if f"`{name}`" not in text]
    assert missing == []


def test_the_runtime_loads_the_backbone_once_per_process(tmp_path: Path) -> None:
    from worker import runtime as runtime_module

    settings = Settings(data_dir=tmp_path, backbone="tiny", engine_preset="tiny")
    runtime_module.set_runtime(runtime_module.Runtime(settings=settings))
    try:
        first = runtime_module.get_runtime()
        assert first is runtime_module.get_runtime()
        assert first.backbone is first.backbone  # cached: one load per process
        assert first.engine_config.train_steps > 0
        empty = first.load_user_state([])
        assert empty.tokens == []
    finally:
        runtime_module.set_runtime(None)
