"""JSON logs of real processes (docs/api.md, "Logs"): with ``MNEMO_LOG_FORMAT=json`` every line of
``mnemo api`` and the worker's log lines are JSON objects; an API line carries the request's
``X-Request-ID``, a worker line of a job its ``job_id``; no line holds the prompt."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from core.cli import processes
from tests.service.conftest import START_TIMEOUT, _new_service

PROMPT = "a circle drawn by SENTINEL-5c1e"


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The log's JSON lines (Celery prints its start-up banner as plain text before logging)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_api_and_worker_write_json_lines_with_request_and_job_ids(tmp_path: Path) -> None:
    service = _new_service(tmp_path, MNEMO_LOG_FORMAT="json")
    try:
        service.run_cli("db", "upgrade")
        api = service.start("api", "--log-level", "info", log="api")
        processes.wait_http_ok(f"{service.base_url}/readyz", timeout=START_TIMEOUT, process=api)
        headers = service.create_user("alice")
        service.start_worker(concurrency=1)
        with service.client() as http:
            answer = http.post("/v1/generate", headers=headers, json={"prompt": PROMPT, "n": 1})
            assert answer.status_code == 202, answer.text
            request_id, job_id = answer.headers["X-Request-ID"], answer.json()["job"]["id"]
            deadline = time.monotonic() + 120
            while http.get(f"/v1/jobs/{job_id}", headers=headers).json()["state"] != "succeeded":
                assert time.monotonic() < deadline, service.logs()
                time.sleep(0.5)
        service.wait_log("worker0", "published", timeout=30)
    finally:
        service.stop_all()

    api_log = (service.log_dir / "api.log").read_text()
    api_lines = [json.loads(line) for line in api_log.splitlines() if line.strip()]  # every line
    access = [line for line in api_lines if "POST /v1/generate" in line["message"]]
    assert len(access) == 1 and access[0]["request_id"] == request_id
    assert access[0]["logger"] == "uvicorn.access" and access[0]["level"] == "INFO"
    assert {"time", "level", "logger", "message"} <= set(api_lines[0])

    worker_lines = json_lines(service.log_dir / "worker0.log")
    assert any(line["message"].endswith("ready.") for line in worker_lines)  # the main process
    of_job = [line for line in worker_lines if line.get("job_id") == job_id]
    assert any("claimed" in line["message"] for line in of_job), worker_lines
    assert any("published" in line["message"] for line in of_job)
    assert PROMPT not in api_log and "SENTINEL" not in (service.log_dir / "worker0.log").read_text()
