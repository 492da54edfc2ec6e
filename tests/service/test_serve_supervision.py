"""``mnemo serve`` supervises its worker, and ``/readyz`` reports workers (issue 20, item 6).

Real processes, embedded configuration (SQLite + the SQLAlchemy broker), heartbeats every second:

* a SIGKILLed worker is replaced by ``serve`` (a new main process, the old pool gone) and the new
  one runs a job; ``/readyz`` reports the workers;
* a SIGKILL of ``serve`` itself leaves no worker process behind (the old worker lived on in its
  own session, so a restart ran two);
* ``/readyz`` of an API that requires a worker is 503 until a worker's heartbeat arrives, 200
  while it beats, and 503 again once the worker stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from core.cli import processes
from tests.service.conftest import START_TIMEOUT, Service, _kill_stray_workers, _new_service
from tests.service.test_end_to_end import _wait_final

pytestmark = pytest.mark.slow

HEARTBEAT = {"MNEMO_WORKER_HEARTBEAT_SECONDS": "1"}
WORKER_ARGV = b"core.cli.main\x00worker\x00"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def worker_processes(data_dir: Path) -> dict[int, int]:
    """Live ``mnemo worker`` processes (main and pool) of ``data_dir``: pid -> parent pid."""
    marker = b"MNEMO_DATA_DIR=" + str(data_dir).encode() + b"\x00"
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if WORKER_ARGV not in (entry / "cmdline").read_bytes() + b"\x00":
                continue
            if marker not in (entry / "environ").read_bytes():
                continue
        except OSError:
            continue
        stat = _stat(int(entry.name))
        if stat is not None and stat[0] not in ("Z", "X"):
            found[int(entry.name)] = stat[1]
    return found


def _until(predicate: Callable[[], object], *, timeout: float, what: str, service: Service) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}\n{service.logs()}")


def _wait_gone(service: Service, pids: set[int], *, timeout: float) -> None:
    """Wait until none of ``pids`` runs any more."""
    _until(
        lambda: not any(_alive(pid) for pid in pids),
        timeout=timeout,
        what=f"processes {sorted(pids)} gone ({worker_processes(service.data_dir)} remain)",
        service=service,
    )


def _readyz(service: Service) -> tuple[int, dict[str, str]]:
    response = httpx.get(f"{service.base_url}/readyz", timeout=10)
    return response.status_code, response.json()["checks"]


def _wait_readyz(service: Service, status: int, *, timeout: float) -> dict[str, str]:
    """Wait until ``/readyz`` answers ``status``; returns its checks."""

    def answer() -> dict[str, str] | None:
        code, checks = _readyz(service)
        return checks if code == status else None

    return dict(_until(answer, timeout=timeout, what=f"/readyz answering {status}", service=service))


def _main_worker(service: Service, serve: subprocess.Popen[bytes]) -> int:
    """The pid of serve's current worker main process (waits until there is exactly one)."""

    def current() -> int | None:
        mains = [pid for pid, parent in worker_processes(service.data_dir).items() if parent == serve.pid]
        return mains[0] if len(mains) == 1 else None

    return int(_until(current, timeout=START_TIMEOUT, what="one worker under serve", service=service))


def _worker_and_pool(service: Service) -> set[int]:
    """The pids of the worker's main process and its pool process, once both run."""

    def found() -> set[int] | None:
        pids = set(worker_processes(service.data_dir))
        return pids if len(pids) >= 2 else None

    return set(_until(found, timeout=START_TIMEOUT, what="the worker and its pool", service=service))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[Service, subprocess.Popen[bytes]]]:
    """``mnemo serve --concurrency 1``, ready (its worker live); nothing of it is left afterwards."""
    service = _new_service(tmp_path, **HEARTBEAT)
    try:
        process = service.start("serve", "--concurrency", "1", log="serve")
        processes.wait_http_ok(f"{service.base_url}/readyz", timeout=START_TIMEOUT, process=process)
        service.wait_log("serve", "ready.", timeout=START_TIMEOUT, process=process)
        yield service, process
    finally:
        for child in service.children:
            processes.stop(child, timeout=20)
        strays = _kill_stray_workers(service)
    assert strays == [], f"worker processes left behind: {strays}"


def test_serve_restarts_a_killed_worker_and_the_new_one_runs_jobs(
    serve: tuple[Service, subprocess.Popen[bytes]],
) -> None:
    service, process = serve
    first = _main_worker(service, process)
    first_pool = _worker_and_pool(service)
    os.killpg(first, signal.SIGKILL)  # the worker's own process group: its main process and pool
    _wait_gone(service, first_pool, timeout=30)

    second = _main_worker(service, process)
    assert second not in first_pool and process.poll() is None
    service.wait_log("serve", "worker restarted", timeout=30, process=process)
    assert _wait_readyz(service, 200, timeout=60) == {"database": "ok", "broker": "ok", "workers": "ok"}

    headers = service.create_user("erin")
    with service.client() as http:
        response = http.post("/v1/generate", headers=headers, json={"prompt": "a photo", "n": 1, "steps": 2})
        assert response.status_code == 202, response.text
        job_id = response.json()["job"]["id"]
        job = _wait_final(service, http, headers, [job_id], timeout=300)[job_id]
    assert job["state"] == "succeeded" and job["attempts"] == 1, f"{job}\n{service.logs()}"
    assert set(worker_processes(service.data_dir)) & first_pool == set()


def test_sigkill_of_serve_leaves_no_worker_behind(serve: tuple[Service, subprocess.Popen[bytes]]) -> None:
    service, process = serve
    _main_worker(service, process)
    pool = _worker_and_pool(service)

    process.send_signal(signal.SIGKILL)  # serve alone: its worker is in another process group
    process.wait(timeout=10)
    _wait_gone(service, pool, timeout=15)
    assert worker_processes(service.data_dir) == {}


@pytest.fixture
def api_requiring_a_worker(tmp_path: Path) -> Iterator[Service]:
    """``mnemo api`` with ``MNEMO_READY_REQUIRES_WORKER=1`` and no worker yet (embedded)."""
    service = _new_service(tmp_path, MNEMO_READY_REQUIRES_WORKER="1", **HEARTBEAT)
    try:
        service.run_cli("db", "upgrade")
        api = service.start("api", "--log-level", "warning", log="api")
        processes.wait_http_ok(f"{service.base_url}/healthz", timeout=START_TIMEOUT, process=api)
        yield service
    finally:
        service.stop_all()


def test_readyz_follows_the_worker_heartbeats(api_requiring_a_worker: Service) -> None:
    service = api_requiring_a_worker
    assert _readyz(service) == (503, {"database": "ok", "broker": "ok", "workers": "error: no live worker"})

    worker = service.start_worker(concurrency=1)
    assert _wait_readyz(service, 200, timeout=30)["workers"] == "ok"

    processes.stop(worker, timeout=20)  # a warm shutdown: the heartbeat stops with the worker
    assert _wait_readyz(service, 503, timeout=30)["workers"] == "error: no live worker"
