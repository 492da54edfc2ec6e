"""Real service processes for the end-to-end tests: ``mnemo serve``, ``mnemo api``, ``mnemo worker``.

Every process is started in its own process group and killed by the fixture's finalizer;
every wait is bounded. The tiny backbone and engine preset keep a task to seconds on CPU.
Two deployments:

* embedded: SQLite + the server-less SQLAlchemy broker in the data directory;
* production: a fresh PostgreSQL database + Redis (a random DB index: stale messages from
  other runs name jobs this database does not have, and the SQL claim ignores them).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.cli import processes

REDIS_URL = os.environ.get("MNEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379")
LEASE_SECONDS = 5
START_TIMEOUT = 90.0


@dataclass
class Service:
    """A running deployment: its environment, processes, URL and data directory."""

    env: dict[str, str]
    data_dir: Path
    log_dir: Path
    base_url: str = ""
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # ---- processes ------------------------------------------------------------------------
    def run_cli(self, *args: str, timeout: float = 120.0) -> str:
        result = subprocess.run(
            processes.mnemo_command(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"mnemo {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def start(self, *args: str, log: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """``mnemo *args`` with this deployment's environment (and ``env`` on top of it)."""
        process = processes.start(
            processes.mnemo_command(*args),
            env={**self.env, **(env or {})},
            log_path=self.log_dir / f"{log}.log",
        )
        self.children.append(process)
        return process

    def start_api(self) -> None:
        api = self.start("api", "--log-level", "warning", log="api")
        processes.wait_http_ok(f"{self.base_url}/readyz", timeout=START_TIMEOUT, process=api)

    def start_worker(
        self, *args: str, concurrency: int = 2, env: dict[str, str] | None = None, wait: bool = True
    ) -> subprocess.Popen[bytes]:
        """``mnemo worker`` (more options in ``args``), logging to ``worker<N>.log``; waits until
        it is ready unless not ``wait`` (then ``wait_worker(N)``)."""
        worker = self.start(
            "worker",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "info",
            *args,
            log=f"worker{len(self.workers)}",
            env=env,
        )
        self.workers.append(worker)
        if wait:
            self.wait_worker(len(self.workers) - 1)
        return worker

    def wait_worker(self, index: int) -> None:
        """Until the ``index``-th worker started by ``start_worker`` is ready."""
        self.wait_log(f"worker{index}", "ready.", timeout=START_TIMEOUT, process=self.workers[index])

    def wait_log(
        self, log: str, text: str, *, timeout: float, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        path = self.log_dir / f"{log}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text(errors="replace"):
                return
            if process is not None and process.poll() is not None:
                raise AssertionError(f"{log} exited ({process.returncode}):\n{self.logs()}")
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not in {log}.log after {timeout} s:\n{self.logs()}")

    def stop_all(self) -> None:
        for process in reversed(self.children):
            processes.kill(process)

    def logs(self, tail: int = 4000) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    # ---- users and HTTP -------------------------------------------------------------------
    def create_user(self, name: str) -> dict[str, str]:
        """``mnemo users create`` (the key is printed once); returns Authorization headers."""
        out = self.run_cli("users", "create", name)
        match = re.search(r"(mnemo_[A-Za-z0-9_-]{43})", out)
        assert match, out
        return {"Authorization": f"Bearer {match.group(1)}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0)


def base_env(data_dir: Path, *, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    env.update(
        MNEMO_DATA_DIR=str(data_dir),
        MNEMO_BACKBONE="tiny",
        MNEMO_ENGINE_PRESET="tiny",
        MNEMO_HOST="127.0.0.1",
        MNEMO_PORT=str(port),
        MNEMO_JOB_LEASE_SECONDS=str(LEASE_SECONDS),
        MNEMO_JOB_HEARTBEAT_SECONDS="1",
        MNEMO_GENERATE_DEFAULT_STEPS="4",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _new_service(tmp_path: Path, **extra: str) -> Service:
    port = processes.free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return Service(
        env=base_env(data_dir, port=port, **extra),
        data_dir=data_dir,
        log_dir=tmp_path / "logs",
        base_url=f"http://127.0.0.1:{port}",
    )


@pytest.fixture
def service_env() -> dict[str, str]:
    """Extra ``MNEMO_*`` settings of the ``production`` deployment (a test module overrides this
    fixture to configure its processes, e.g. the webhook tests' relay)."""
    return {}


@pytest.fixture
def embedded_serve(tmp_path: Path) -> Iterator[Service]:
    """``mnemo serve --concurrency 2``: SQLite, SQLAlchemy broker, API + a real worker process."""
    service = _new_service(tmp_path)
    try:
        serve = service.start("serve", "--concurrency", "2", log="serve")
        processes.wait_http_ok(f"{service.base_url}/readyz", timeout=START_TIMEOUT, process=serve)
        service.wait_log("serve", "ready.", timeout=START_TIMEOUT, process=serve)
        yield service
    finally:
        # serve stops its worker on SIGTERM; anything left over is killed and reported.
        for process in service.children:
            processes.stop(process, timeout=20)
        strays = _kill_stray_workers(service)
    assert strays == [], f"mnemo serve left worker processes behind: {strays}"


@pytest.fixture
def embedded_split(tmp_path: Path) -> Iterator[Service]:
    """The embedded configuration as separate ``mnemo api`` and ``mnemo worker`` processes
    (so that a test can kill the worker alone)."""
    service = _new_service(tmp_path)
    try:
        service.run_cli("db", "upgrade")
        service.start_api()
        yield service
    finally:
        service.stop_all()


@pytest.fixture
def production(tmp_path: Path, postgres_server: Any, service_env: dict[str, str]) -> Iterator[Service]:
    """PostgreSQL + Redis: ``mnemo db upgrade``, ``mnemo api``, ``mnemo worker``."""
    database_url = postgres_server.create_database()
    redis_url = f"{REDIS_URL}/{random.randint(1, 15)}"
    _require_redis(redis_url)
    service = _new_service(
        tmp_path, MNEMO_DATABASE_URL=database_url, MNEMO_BROKER_URL=redis_url, **service_env
    )
    service.env["MNEMO_TEST_DATABASE_URL"] = database_url
    try:
        service.run_cli("db", "upgrade")
        service.start_api()
        yield service
    finally:
        service.stop_all()
        postgres_server.drop_database(database_url)


def _require_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is not reachable at {url}: {error}")


def _kill_stray_workers(service: Service) -> list[int]:
    """Kill worker processes started by ``serve`` (own process group) if serve did not stop them."""
    marker = str(service.data_dir).encode()
    killed = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            environ = (pid_dir / "environ").read_bytes()
            cmdline = (pid_dir / "cmdline").read_bytes()
        except OSError:
            continue
        if b"core.cli.main\x00worker" in cmdline and b"MNEMO_DATA_DIR=" + marker + b"\x00" in environ:
            processes.kill_pid(int(pid_dir.name))
            killed.append(int(pid_dir.name))
    return killed


@pytest.fixture
def noise_images() -> Callable[[int, int], list[bytes]]:
    """``noise_images(seed, count)``: distinct random-noise PNGs (their bytes are searchable)."""
    import io

    import numpy as np
    from PIL import Image

    def make(seed: int, count: int) -> list[bytes]:
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(count):
            pixels = rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            out.append(buffer.getvalue())
        return out

    return make
