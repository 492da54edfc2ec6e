"""A daemon thread of the worker's main process that runs until ``stop()`` (the reconciler, the
presence heartbeat)."""

from __future__ import annotations

import threading
from typing import Self

STOP_JOIN_SECONDS = 10.0


class DaemonLoop:
    """Runs ``_run`` in a named daemon thread; ``_run`` returns once ``self._stop`` is set."""

    thread_name = "mnemo-loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_JOIN_SECONDS)

    def _run(self) -> None:
        raise NotImplementedError
