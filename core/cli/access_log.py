"""uvicorn's logging for ``mnemo serve`` and ``mnemo api``: access lines without query strings.

uvicorn's access log prints the request target with its query string, and a query string may
hold a secret (a key pasted into a URL, a prompt): docs/architecture.md, "Uploads and privacy".
``DropQueryString`` cuts the target at ``?`` before any handler formats the line, so an access
line reads ``GET /v1/jobs/<id> HTTP/1.1 200`` whatever followed the path.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

ACCESS_LOGGER = "uvicorn.access"
FILTER_NAME = "mnemo_drop_query"
TARGET_ARG = 2  # uvicorn logs (client, method, target, http version, status)
CONTEXT_FILTER = "mnemo_context"
SERVICE_LOGGERS = ("api", "core", "worker", "mnemo")  # their INFO lines too, in JSON mode


def without_query(target: str) -> str:
    """The request target without its query string (and fragment)."""
    return target.split("?", 1)[0].split("#", 1)[0]


class DropQueryString(logging.Filter):
    """Rewrites uvicorn's access records in place: the target's query string is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > TARGET_ARG and isinstance(args[TARGET_ARG], str):
            record.args = (*args[:TARGET_ARG], without_query(args[TARGET_ARG]), *args[TARGET_ARG + 1 :])
        return True


def uvicorn_log_config(log_format: str = "text") -> dict[str, Any]:
    """uvicorn's default logging configuration with ``DropQueryString`` on the access logger.

    ``json`` (``MNEMO_LOG_FORMAT``) writes every line — uvicorn's, the access log's and the
    service's own loggers' — as one JSON object with the request id (``core.logs``).
    """
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})[FILTER_NAME] = {"()": f"{__name__}.DropQueryString"}
    config["loggers"][ACCESS_LOGGER].setdefault("filters", []).append(FILTER_NAME)
    if log_format == "json":
        _as_json(config)
    return config


def _as_json(config: dict[str, Any]) -> None:
    """Every handler formats JSON with the context ids; the service's loggers log through them."""
    config["filters"][CONTEXT_FILTER] = {"()": "core.logs.ContextFilter"}
    for formatter in config["formatters"]:
        config["formatters"][formatter] = {"()": "core.logs.JsonFormatter"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append(CONTEXT_FILTER)
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    for name in SERVICE_LOGGERS:
        config["loggers"][name] = {"level": "INFO"}
