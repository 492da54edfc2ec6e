"""Import warm-up of a pool process, and the gate that keeps a task's imports out of its way.

A pool process imports torch, diffusers and the engine in a background thread as soon as it
starts (``worker.signals``), so that its first task does not wait for seconds of imports while
Celery waits for the new process. Two threads importing the same packages at once meet
half-initialised modules (diffusers' lazy ``__init__`` and torch's are not thread-safe:
``ImportError: cannot import name 'DDIMScheduler'``), so a task waits until the warm-up is over
before it imports anything of the engine (``wait_for_warm_up``). Importing does not initialise
CUDA; the backbone is still loaded by the first task that needs it.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time

log = logging.getLogger(__name__)

WARM_IMPORTS = ("torch", "diffusers", "transformers", "peft", "core.engine.task", "core.engine.generate")
SLOW_WAIT_SECONDS = 1.0

_done: threading.Event | None = None


def warm_imports(names: tuple[str, ...] = WARM_IMPORTS) -> None:
    """Import ``names`` in order; stop at the first failure (the task's own import reports it)."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:
            log.warning("warm-up import of %s failed: %s", name, type(error).__name__)
            return


def _run(done: threading.Event, names: tuple[str, ...]) -> None:
    try:
        warm_imports(names)
    finally:
        done.set()


def start_warm_up(names: tuple[str, ...] = WARM_IMPORTS) -> threading.Event:
    """Start the warm-up thread of this process; the event is set when it is over (even on failure).

    Called in the pool process right after the fork, before it receives a task.
    """
    global _done
    done = threading.Event()
    _done = done
    threading.Thread(target=_run, args=(done, names), name="mnemo-warm-imports", daemon=True).start()
    return done


def wait_for_warm_up() -> float:
    """Block until this process's warm-up is over (at once when none was started); seconds waited."""
    done = _done
    if done is None or done.is_set():
        return 0.0
    started = time.perf_counter()
    done.wait()
    waited = time.perf_counter() - started
    if waited >= SLOW_WAIT_SECONDS:
        log.info("task waited %.1f s for the import warm-up", waited)
    return waited
