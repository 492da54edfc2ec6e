"""The Celery tasks: thin wrappers that hand a job id to the SQL job protocol.

``mnemo.train`` and ``mnemo.generate`` take one argument, the job id (messages carry no
personal data). All state lives in SQL: a task's return value is informational only and no
result backend is used. A train job whose user still has an earlier task running is
delivered again later (``retry`` with a growing countdown); duplicates return at once. A task
first waits for its pool process's import warm-up (``worker.warmup``), before it claims the job.
"""

from __future__ import annotations

import logging

from celery import Task
from sqlalchemy.exc import InterfaceError, OperationalError

from core.queue.names import GENERATE_TASK_NAME, TRAIN_TASK_NAME
from core.queue.outbox import flush_outbox
from worker.celery_app import app
from worker.runtime import get_runtime
from worker.warmup import wait_for_warm_up

log = logging.getLogger(__name__)

WAIT_COUNTDOWN_S = (1, 2, 3, 5, 8, 13, 20, 30)


def _after(runtime_outcome: str) -> str:
    """Send the messages this attempt queued (next task of the user, a retry) right away."""
    runtime = get_runtime()
    try:
        flush_outbox(session_factory=runtime.session_factory, settings=runtime.settings, app=app)
    except Exception as error:  # the reconciler sends them later
        log.warning("outbox flush after a task failed: %s", type(error).__name__)
    return runtime_outcome


# The database briefly unreachable (restart, failover): deliver again with backoff instead of
# dropping the message (the reconciler would re-send it too, later).
DB_UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_OPTIONS = {"retry_backoff": 2, "retry_backoff_max": 60, "retry_jitter": True}


@app.task(
    name=TRAIN_TASK_NAME,
    bind=True,
    max_retries=None,
    ignore_result=True,
    autoretry_for=DB_UNAVAILABLE,
    **RETRY_OPTIONS,
)
def train(self: Task, job_id: str) -> str:
    wait_for_warm_up()  # before any engine import: two importing threads break each other
    from worker.outcomes import Outcome
    from worker.training import run_train_job

    result = run_train_job(get_runtime(), job_id=str(job_id))
    if result.outcome is Outcome.WAIT:
        retries = self.request.retries or 0
        countdown = WAIT_COUNTDOWN_S[min(retries, len(WAIT_COUNTDOWN_S) - 1)]
        raise self.retry(countdown=countdown)
    return _after(result.outcome.value)


@app.task(
    name=GENERATE_TASK_NAME,
    bind=True,
    max_retries=20,
    ignore_result=True,
    autoretry_for=DB_UNAVAILABLE,
    **RETRY_OPTIONS,
)
def generate(self: Task, job_id: str) -> str:
    wait_for_warm_up()
    from worker.generation import run_generate_job

    return _after(run_generate_job(get_runtime(), job_id=str(job_id)).outcome.value)
