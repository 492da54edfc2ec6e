"""Named crash points: a test or the chaos soak arms one to SIGKILL the process there (docs/faults.md).

``crash_point(name)`` is a no-op unless both of these are set in the process's environment:

* ``MNEMO_FAULTS_ENABLED=1`` — a second, separate switch, so that a stray ``MNEMO_CRASH_AT`` in a
  production environment does nothing (and is reported once in the log);
* ``MNEMO_CRASH_AT=<name>[@<probability>][,...]`` — the points to arm; ``*`` arms every point,
  ``<probability>`` (default 1) fires it on that fraction of passes.

``MNEMO_CRASH_LEDGER=<folder>`` with ``MNEMO_CRASH_TIMES=<n>`` (default 1) lets each point crash
the processes that share the folder ``n`` times in all: a crash first takes one of the point's
numbered slot files (created exclusively), so a restarted process does not die at the same place
for ever, and the test reads which points fired (``fired``). Without a ledger an armed point fires
on every pass.

A crash is ``SIGKILL`` of the process's whole process group (the worker's main process and its pool
children; the API's server): nothing runs after it, no ``finally``, no ``atexit`` — as a power cut
or an OOM kill would leave things. The module imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
from pathlib import Path

log = logging.getLogger(__name__)

ENABLED_ENV = "MNEMO_FAULTS_ENABLED"
ARM_ENV = "MNEMO_CRASH_AT"
LEDGER_ENV = "MNEMO_CRASH_LEDGER"
TIMES_ENV = "MNEMO_CRASH_TIMES"

# Every crash point, where it is and what a crash there leaves (docs/faults.md lists the same).
POINTS: dict[str, str] = {
    "api.upload.partial": "the API wrote the first upload file of a request, not the others",
    "api.upload.before_commit": "the API wrote every upload file, no row names them yet",
    "api.upload.after_commit": "the concept and job rows are committed, no message was sent",
    "train.after_prepare": "a task's latents and prior are ready, no step trained",
    "train.after_train": "the train phase finished (a checkpoint may hold an earlier step)",
    "train.after_dsc": "the DSC phase finished",
    "train.after_fisher": "the Fisher phase finished, the version is not written",
    "train.checkpoint.mid_write": "a checkpoint's temporary file is written, not renamed into place",
    "train.after_store": "the new version directory is in the store, not published",
    "train.after_publish": "the version is published (job succeeded), raw uploads not deleted",
    "generate.after_store": "a generation's PNGs are stored, not published",
    "generate.after_publish": "a generation is published",
    "cleanup.mid_delete": "a final job's first raw upload file is deleted, the others are not",
    "cleanup.after_files": "a final job's raw upload files are deleted, their rows are not",
}

_warned = False


def crash_point(name: str) -> None:
    """SIGKILL this process's group here when ``name`` is armed (docs/faults.md); else nothing."""
    armed = os.environ.get(ARM_ENV)
    if not armed:
        return
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if os.environ.get(ENABLED_ENV) != "1":
        _warn_disarmed()
        return
    probability = armed_probability(armed, name)
    if probability <= 0 or random.random() >= probability:
        return
    if not _take_slot(name):
        return
    _die()


def armed_probability(spec: str, name: str) -> float:
    """The probability ``spec`` (a ``MNEMO_CRASH_AT`` value) arms ``name`` with; 0 if it does not."""
    best = 0.0
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, _, probability = item.partition("@")
        if point in (name, "*"):
            best = max(best, float(probability) if probability else 1.0)
    return best


def fired(ledger: Path) -> list[str]:
    """The points that crashed a process sharing ``ledger``, oldest crash first."""
    slots = sorted(ledger.glob("*.crash-*"), key=lambda path: path.stat().st_mtime_ns)
    return [path.name.split(".crash-", 1)[0] for path in slots]


def _take_slot(name: str) -> bool:
    """True when this crash may happen: no ledger, or one of the point's free slots taken."""
    folder = os.environ.get(LEDGER_ENV)
    if not folder:
        return True
    for slot in range(int(os.environ.get(TIMES_ENV, "1"))):
        try:
            fd = os.open(Path(folder) / f"{name}.crash-{slot}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        os.fsync(fd)
        os.close(fd)
        return True
    return False


def _die() -> None:
    """SIGKILL the process group (falling back to the process alone when it leads none)."""
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _warn_disarmed() -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("%s is set but %s is not 1: crash points stay disarmed", ARM_ENV, ENABLED_ENV)
