"""``core.logs``: JSON lines of a fixed set of fields with the context ids (docs/api.md, "Logs")."""

from __future__ import annotations

import io
import json
import logging

from core.logs import REQUEST_ID, job_context, use_format


def _logger(stream: io.StringIO, log_format: str) -> logging.Logger:
    logger = logging.getLogger(f"test.logs.{log_format}")
    logger.propagate = False
    logger.handlers.clear()
    handler = logging.StreamHandler(stream)
    use_format(handler, log_format=log_format)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger


def test_json_lines_carry_the_ids_and_nothing_a_library_attached() -> None:
    stream = io.StringIO()
    logger = _logger(stream, "json")
    token = REQUEST_ID.set("req-1")
    try:
        with job_context("job-9"):
            logger.info("attempt %d claimed", 1, extra={"data": {"args": ["SENTINEL prompt"]}})
        logger.warning("outside the job")
    finally:
        REQUEST_ID.reset(token)
    logger.error("no context")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "attempt 1 claimed" and first["level"] == "INFO"
    assert first["request_id"] == "req-1" and first["job_id"] == "job-9"
    assert first["logger"] == "test.logs.json" and first["time"].endswith("+00:00")
    assert "data" not in first and "SENTINEL" not in stream.getvalue()
    assert second["request_id"] == "req-1" and "job_id" not in second
    assert set(third) == {"time", "level", "logger", "message"}


def test_text_stays_text() -> None:
    stream = io.StringIO()
    _logger(stream, "text").info("plain %s", "line")
    assert stream.getvalue() == "plain line\n"
