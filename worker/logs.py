"""The worker's log lines: ``MNEMO_LOG_FORMAT`` (text or JSON, ``core.logs``) and the job id of
the task that logs them (docs/api.md, "Logs").

Celery sets up its handlers itself; the ``after_setup_*`` signals hand them the context filter
and, for ``json``, the JSON formatter, in the main process and (inherited through the fork) in
each pool process. ``task_prerun`` sets the job id — a task's one argument — for the records the
task's own thread makes, and ``task_postrun`` clears it.
"""

from __future__ import annotations

import logging
from contextvars import Token
from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

from core.logs import JOB_ID, use_format
from core.settings import get_settings

_tokens: dict[str, Token[str]] = {}


@after_setup_logger.connect
@after_setup_task_logger.connect
def format_handlers(logger: logging.Logger, **_: Any) -> None:
    """Every handler of the logger Celery just set up gets the configured format."""
    log_format = get_settings().log_format
    for handler in logger.handlers:
        use_format(handler, log_format=log_format)


@task_prerun.connect
def enter_job(task_id: str, args: tuple[Any, ...] | None = None, **_: Any) -> None:
    if args:
        _tokens[task_id] = JOB_ID.set(str(args[0]))


@task_postrun.connect
def leave_job(task_id: str, **_: Any) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        JOB_ID.reset(token)
