"""The Celery application factory and its configuration (no torch, no CUDA in this module).

Celery only *delivers* job ids; the SQL database owns job state (docs/architecture.md, "The job
protocol"). The configuration makes delivery safe for long, expensive tasks
(docs/architecture.md, "Broker settings"): late acks, re-queue when a pool child dies, prefetch 1,
JSON only, no result backend, and a broker visibility timeout above the hard time limit so that
a long task is never handed to a second worker while it runs.

The worker builds its consuming app in ``worker.celery_app``; the API and the reconciler build a
sending app through ``core.queue.outbox``. Both come from ``create_celery_app``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from core.queue.names import QUEUES, TASK_QUEUES, TRAIN_QUEUE
from core.queue.transport import install as install_sqla_transport
from core.settings import Settings, get_settings

install_sqla_transport()

# Hard limit of one task; a training run longer than this is killed (the job is retried from
# its checkpoint). The soft limit comes first so the task can stop cleanly.
SOFT_TIME_LIMIT_S = 6 * 3600
HARD_TIME_LIMIT_S = SOFT_TIME_LIMIT_S + 600
VISIBILITY_TIMEOUT_S = HARD_TIME_LIMIT_S + 1800


def celery_config(settings: Settings, *, imports: tuple[str, ...] = ()) -> dict[str, Any]:
    """The Celery configuration for ``settings`` (asserted by tests); ``imports``: task modules."""
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "result_backend": None,
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        "task_soft_time_limit": SOFT_TIME_LIMIT_S,
        "task_time_limit": HARD_TIME_LIMIT_S,
        "worker_pool": "prefork",
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        # A dropped broker connection does not kill running training: duplicates are harmless
        # because the SQL claim fences them (docs/architecture.md, "Broker settings").
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        "task_default_queue": TRAIN_QUEUE,
        "task_routes": {name: {"queue": queue, "routing_key": queue} for name, queue in TASK_QUEUES.items()},
        "task_default_exchange": TRAIN_QUEUE,
        "task_default_routing_key": TRAIN_QUEUE,
        "task_create_missing_queues": False,
        "imports": imports,
        "timezone": "UTC",
        "enable_utc": True,
    }
    config.update(_transport_options(settings))
    return config


def _transport_options(settings: Settings) -> dict[str, Any]:
    """Broker-specific options: Redis's visibility timeout (in all three places), filesystem folders."""
    if settings.broker_url.startswith(("redis://", "rediss://", "sentinel://")):
        transport = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
        return {
            "broker_transport_options": transport,
            "result_backend_transport_options": dict(transport),
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
        }
    if settings.broker_url.startswith("filesystem://"):
        folders = broker_folders(settings)
        return {
            "broker_transport_options": {
                "data_folder_in": str(folders[0]),
                "data_folder_out": str(folders[0]),
                "processed_folder": str(folders[1]),
                "store_processed": False,
            }
        }
    return {}


def broker_folders(settings: Settings) -> list[Path]:
    """Local folders a server-less broker needs (the filesystem transport's message folders)."""
    if settings.broker_url.startswith("filesystem://"):
        return [settings.data_dir / "broker" / "out", settings.data_dir / "broker" / "processed"]
    return []


def prepare_broker(settings: Settings) -> None:
    """Create what an embedded broker needs on disk (the data directory, message folders)."""
    if settings.embedded_broker:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        for folder in broker_folders(settings):
            folder.mkdir(parents=True, exist_ok=True)


def create_celery_app(settings: Settings | None = None, *, imports: tuple[str, ...] = ()) -> Celery:
    """A Celery app configured from ``settings`` (default: the environment)."""
    settings = settings or get_settings()
    app = Celery("mnemo")
    app.config_from_object(celery_config(settings, imports=imports))
    return app
