"""The worker's Celery app: ``celery -A worker.celery_app worker`` (or ``mnemo worker``).

Configured from the environment by ``core.queue.app``, with the task modules this process
consumes; the parent process never imports torch (docs/architecture.md, "Processes").
"""

from __future__ import annotations

from core.queue.app import create_celery_app

TASK_MODULES = ("worker.tasks", "worker.signals", "worker.logs", "worker.metrics")

app = create_celery_app(imports=TASK_MODULES)
