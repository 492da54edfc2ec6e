"""Access logs carry no query strings (issue 20, item 3: a key sent in a URL landed in the log).

A real ``mnemo api`` process at log level ``info`` answers requests whose query strings hold a
secret; its access lines name method, path and status, and nothing after ``?``.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.cli import processes
from core.cli.access_log import DropQueryString, uvicorn_log_config

SECRET = "mnemo_" + "s3cr3t" * 7


@pytest.fixture
def api_process(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``mnemo api --log-level info`` on an embedded data directory; (base URL, log file)."""
    port = processes.free_port()
    env = processes.embedded_environment(
        data_dir=tmp_path / "data", backbone="toy", preset="toy", port=port, PYTHONUNBUFFERED="1"
    )
    subprocess.run(processes.mnemo_command("db", "upgrade"), env=env, check=True, capture_output=True)
    log_path = tmp_path / "api.log"
    api = processes.start(processes.mnemo_command("api", "--log-level", "info"), env=env, log_path=log_path)
    try:
        base_url = f"http://127.0.0.1:{port}"
        processes.wait_http_ok(f"{base_url}/healthz", timeout=60, process=api)
        yield base_url, log_path
    finally:
        processes.stop(api)


def _wait_for(path: Path, text: str, *, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace")
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged within {timeout} s:\n{path.read_text(errors='replace')}")


def test_the_api_process_logs_requests_without_their_query_strings(api_process: tuple[str, Path]) -> None:
    base_url, log_path = api_process
    with httpx.Client(base_url=base_url, timeout=10) as http:
        assert http.get(f"/healthz?api_key={SECRET}").status_code == 200
        assert http.get(f"/v1/me?key={SECRET}&x=1").status_code == 401
        assert http.get("/readyz?probe=last").status_code in (200, 503)
    log = _wait_for(log_path, "GET /readyz")
    assert '"GET /healthz HTTP/1.1" 200' in log and '"GET /v1/me HTTP/1.1" 401' in log
    assert SECRET not in log and "?" not in log.split("Uvicorn running", 1)[-1], log


def test_the_filter_keeps_everything_but_the_query() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/v1/jobs/abc?key={SECRET}#frag", "1.1", 200),
        None,
    )
    assert DropQueryString().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /v1/jobs/abc HTTP/1.1" 200'
    config = uvicorn_log_config()
    assert config["loggers"]["uvicorn.access"]["filters"] == ["mnemo_drop_query"]
