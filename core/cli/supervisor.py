"""The worker of ``mnemo serve``, kept running: restarted when it dies, never left behind.

``WorkerSupervisor`` starts ``mnemo worker --parent-pid <serve>`` from one thread that lives as
long as the supervisor, watches it, and starts a new one when it exits, after a growing delay
(a worker that cannot start is not restarted in a tight loop). The worker sits in its own
process group inside serve's session and dies with serve (``processes.exit_with_parent``): the
kernel's parent-death signal is tied to the *thread* that started the child, which is why one
long-lived thread starts every worker. ``stop`` stops the worker (SIGTERM, then SIGKILL of its
process group) and the thread.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from core.cli import processes

RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER_S = 60.0  # a worker that ran this long starts the delays over
CHECK_SECONDS = 0.5


def restart_delay(failures: int) -> float:
    """Seconds before the next start after ``failures`` quick exits in a row (0: at once)."""
    return RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S)) - 1] if failures > 0 else 0.0


def _say(message: str) -> None:
    print(f"mnemo: {message}", flush=True)


class WorkerSupervisor:
    """One supervised worker process (``mnemo worker <args> --parent-pid <this pid>``)."""

    def __init__(
        self,
        *,
        worker_args: list[str],
        env: Mapping[str, str],
        log_path: Path | None = None,
        report: Callable[[str], None] = _say,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self.command = processes.mnemo_command("worker", *worker_args, "--parent-pid", str(os.getpid()))
        self.env = dict(env)
        self.log_path = log_path
        self.report = report
        self.check_seconds = check_seconds
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mnemo-worker-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        """The pid of the current worker process (None before the first start)."""
        process = self._process
        return process.pid if process is not None else None

    def start(self, *, timeout: float = 30.0) -> WorkerSupervisor:
        """Start the thread and wait until it started the first worker."""
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the worker supervisor did not start a worker")
        return self

    def stop(self, *, timeout: float = 15.0) -> None:
        """Stop supervising, then the worker: SIGTERM, SIGKILL of its group after ``timeout`` s."""
        self._stop.set()
        self._thread.join(timeout=timeout + 15.0)
        if self._process is not None:  # the thread did not get to it (it is stuck): do it here
            processes.stop(self._process, timeout=timeout)

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = processes.start(self.command, env=self.env, log_path=self.log_path, new_session=False)
        self._process = process
        self._started.set()
        return process

    def _run(self) -> None:
        process = self._spawn()
        failures = 0
        started = time.monotonic()
        try:
            while not self._stop.wait(self.check_seconds):
                if process.poll() is None:
                    continue
                failures = 0 if time.monotonic() - started >= STABLE_AFTER_S else failures + 1
                delay = restart_delay(failures)
                self.report(
                    f"worker pid {process.pid} exited with code {process.returncode}; "
                    f"starting a new one in {delay:.0f} s"
                )
                if self._stop.wait(delay):
                    break
                process, started = self._spawn(), time.monotonic()
                self.restarts += 1
                self.report(f"worker restarted, pid {process.pid}")
        finally:
            processes.stop(process)
            self._process = None
