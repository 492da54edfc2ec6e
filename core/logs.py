"""Log lines of the API and the worker: text, or one JSON object per line (``MNEMO_LOG_FORMAT``),
with the request id and the job id of the line's context (docs/api.md, "Logs").

``REQUEST_ID`` is set by the API's ``ErrorBoundaryMiddleware`` for the duration of a request (the
id answered as ``X-Request-ID``), ``JOB_ID`` by the worker around each task; ``ContextFilter``
copies both onto every record. A JSON line holds a fixed set of fields — time, level, logger,
message, request_id, job_id, and a traceback where the code logged one — so nothing a library
attaches to a record (a task's arguments, a request's headers) is written: log messages carry ids
and types, never user content (docs/architecture.md, "Uploads and privacy").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

REQUEST_ID: ContextVar[str] = ContextVar("mnemo_request_id", default="")
JOB_ID: ContextVar[str] = ContextVar("mnemo_job_id", default="")
FIELDS = ("time", "level", "logger", "message", "request_id", "job_id", "exc_info")
FORMATS = ("text", "json")


class ContextFilter(logging.Filter):
    """Puts ``request_id`` and ``job_id`` (empty outside a request or a job) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.job_id = JOB_ID.get()
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per record with only ``FIELDS`` (empty ids left out)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(
            ["levelname", "name", "message"], rename_fields={"levelname": "level", "name": "logger"}
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        for name in ("request_id", "job_id"):
            value = getattr(record, name, "")
            if value:
                log_data[name] = value
            else:
                log_data.pop(name, None)
        for name in [key for key in log_data if key not in FIELDS]:
            del log_data[name]


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Log records made inside the block carry ``job_id``."""
    token = JOB_ID.set(job_id)
    try:
        yield
    finally:
        JOB_ID.reset(token)


def use_format(handler: logging.Handler, *, log_format: str) -> None:
    """Give ``handler`` the context filter and, for ``json``, the JSON formatter."""
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
