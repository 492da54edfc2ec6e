"""Starting and stopping the service's own processes (``mnemo serve``, ``mnemo demo``, tests).

Each child runs ``python -m core.cli.main <command>`` in its own process group, so that
stopping it also stops the Celery pool children it forked. A supervised child (the worker of
``mnemo serve``) also dies with its parent (``exit_with_parent``): a SIGKILLed parent must not
leave it running. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_CHECK_SECONDS = 1.0


def mnemo_command(*args: str) -> list[str]:
    """The argv that runs ``mnemo <args>`` with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "core.cli.main", *args]


def start(
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a child in a new process group; its output goes to ``log_path`` (else inherited).

    ``new_session=False`` keeps the child in this process's session (a new process group only):
    for a child that must not outlive this process, so that it cannot escape with its session.
    """
    stream: IO[bytes] | int | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "ab")  # noqa: SIM115 (closed by the child's exit)
    try:
        return subprocess.Popen(
            args,
            env=dict(env) if env is not None else None,
            stdout=stream,
            stderr=subprocess.STDOUT if stream is not None else None,
            cwd=cwd,
            start_new_session=new_session,
            process_group=None if new_session else 0,
        )
    finally:
        if stream is not None and not isinstance(stream, int):
            stream.close()


def stop(process: subprocess.Popen[bytes], *, timeout: float = 15.0) -> int | None:
    """SIGTERM the child (a warm shutdown), then SIGKILL its process group after ``timeout`` s."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    kill(process)
    return process.returncode


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group (the main process and any pool children)."""
    _signal_group(process, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def wait_http_ok(url: str, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``GET url`` answers 200; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with code {process.returncode}")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s ({last})")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_pid(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (or the process alone if it leads none)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def embedded_environment(
    *, data_dir: Path, backbone: str, preset: str, port: int, **extra: str
) -> dict[str, str]:
    """The environment of an embedded ``mnemo serve`` on loopback; also exported to this process.

    Every inherited ``MNEMO_*`` variable is dropped first, so the child sees only these settings.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    env.update(
        MNEMO_DATA_DIR=str(data_dir),
        MNEMO_BACKBONE=backbone,
        MNEMO_ENGINE_PRESET=preset,
        MNEMO_HOST="127.0.0.1",
        MNEMO_PORT=str(port),
        **extra,
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith("MNEMO_")})
    return env


# ---- a child that dies with its parent ---------------------------------------------------------


def exit_with_parent(parent_pid: int, *, interval: float = PARENT_CHECK_SECONDS) -> None:
    """Make this process (and its process group, when it leads one) die with ``parent_pid``.

    Two mechanisms: on Linux the kernel sends SIGKILL when the parent goes (``PR_SET_PDEATHSIG``;
    Celery's pool processes have the same on their main process), and a watch thread notices a
    changed parent pid within ``interval`` s elsewhere, or if the parent died before this call.
    """
    _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:
        _kill_own_group()
    threading.Thread(
        target=_watch_parent, args=(parent_pid, interval), name="mnemo-parent-watch", daemon=True
    ).start()


def _set_parent_death_signal(sig: signal.Signals) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)`` on Linux; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(int(sig)), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, interval: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    log.warning("parent process %d is gone: exiting", parent_pid)
    _kill_own_group()


def _kill_own_group() -> None:
    """SIGKILL this process's group if it leads one (its pool children too), else itself."""
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
