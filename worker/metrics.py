"""Prometheus metrics of the worker (docs/api.md, "Worker metrics"): seconds per job phase, jobs
by outcome, the queue's depth, and GPU memory on CUDA.

Jobs run in the pool processes, so the metrics use prometheus_client's multiprocess mode: every
process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by ``mnemo worker``
before anything imports prometheus_client, ``core.cli.service``), and the main process serves
their sum on ``MNEMO_WORKER_METRICS_PORT`` together with the queue depth it reads from SQL at
scrape time. The main process never imports torch; GPU memory is read by a pool process after
each job, only when its device is CUDA — on a CPU worker the series does not exist.

A phase runs from the engine's first progress report of it (``JobMonitor.progress``) to the
next phase's; ``starting`` runs from the task's start (claim, loading the user's state) to the
first report, and the last phase ends with the task. Labels are kinds, phases, outcomes and
states: no ids, no user data.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_process_shutdown, worker_ready, worker_shutdown
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from core.cli.service import METRICS_DIR_PREFIX
from core.db.admin import queue_depth
from core.db.session import make_session_factory
from core.queue.names import GENERATE_TASK_NAME, TRAIN_TASK_NAME
from core.settings import get_settings

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
KINDS = {TRAIN_TASK_NAME: "train", GENERATE_TASK_NAME: "generate"}
RAN = ("succeeded", "failed", "retry", "cancelled")  # outcomes of a delivery that did the work
SECONDS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600)

PHASE_SECONDS = Histogram(
    "mnemo_worker_job_phase_seconds", "Seconds a job spent in each phase", ["kind", "phase"], buckets=SECONDS
)
JOB_SECONDS = Histogram(
    "mnemo_worker_job_seconds", "Seconds of a job delivery that ran, start to end", ["kind"], buckets=SECONDS
)
DELIVERIES = Counter("mnemo_worker_deliveries", "Job deliveries by what they ended in", ["kind", "outcome"])
GPU_MEMORY = Gauge(
    "mnemo_worker_gpu_memory_bytes",
    "CUDA memory of a pool process after its last job: peak allocated, and reserved",
    ["device", "kind"],
    multiprocess_mode="livemax",
)


@dataclass
class PhaseClock:
    """The phases of the running task and when each began."""

    kind: str
    started: float = field(default_factory=time.monotonic)
    phases: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, phase: str) -> None:
        if not self.phases or self.phases[-1][0] != phase:
            self.phases.append((phase, time.monotonic()))

    def durations(self, *, end: float) -> Iterator[tuple[str, float]]:
        """``(phase, seconds)``, ``starting`` first; a phase seen twice counts both stretches."""
        marks = [("starting", self.started), *self.phases]
        for (phase, begun), (_, until) in zip(marks, [*marks[1:], ("", end)], strict=True):
            yield phase, until - begun


_clock: ContextVar[PhaseClock | None] = ContextVar("mnemo_phase_clock", default=None)


def mark_phase(phase: str) -> None:
    """The engine reported ``phase`` (a no-op outside a task)."""
    clock = _clock.get()
    if clock is not None:
        clock.mark(phase)


@task_prerun.connect
def start_clock(sender: Any = None, **_: Any) -> None:
    kind = KINDS.get(getattr(sender, "name", ""))
    if kind is not None:
        _clock.set(PhaseClock(kind=kind))


@task_postrun.connect
def record_delivery(retval: Any = None, **_: Any) -> None:
    """Count the delivery; for one that did the work, its phases and the GPU memory it used."""
    clock = _clock.get()
    if clock is None:
        return
    _clock.set(None)
    outcome = retval if isinstance(retval, str) else "requeued"  # a Retry: delivered again later
    DELIVERIES.labels(clock.kind, outcome).inc()
    if outcome not in RAN:
        return
    end = time.monotonic()
    JOB_SECONDS.labels(clock.kind).observe(end - clock.started)
    for phase, seconds in clock.durations(end=end):
        PHASE_SECONDS.labels(clock.kind, phase).observe(seconds)
    record_gpu_memory(device=get_settings().device)


def record_gpu_memory(*, device: str) -> None:
    """Peak allocated and reserved CUDA memory since the last job (nothing on another device)."""
    torch = sys.modules.get("torch")  # loaded by the job; never imported here
    if torch is None or not device.startswith("cuda") or not torch.cuda.is_available():
        return
    GPU_MEMORY.labels(device, "peak_allocated").set(torch.cuda.max_memory_allocated(device))
    GPU_MEMORY.labels(device, "reserved").set(torch.cuda.memory_reserved(device))
    torch.cuda.reset_peak_memory_stats(device)


class QueueCollector(Collector):
    """``mnemo_worker_queue_jobs{state}`` and ``mnemo_worker_queue_unsent_messages``, from SQL."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("mnemo_worker_queue_jobs", "Jobs waiting or running", labels=["state"])
        unsent = GaugeMetricFamily("mnemo_worker_queue_unsent_messages", "Outbox rows not yet sent")
        try:
            with self.session_factory() as session:
                depth = queue_depth(session)
        except Exception as error:  # a scrape must not fail because the database blips
            log.info("queue depth not read: %s", type(error).__name__)
            return
        jobs.add_metric(["queued"], float(depth.queued))
        jobs.add_metric(["running"], float(depth.running))
        unsent.add_metric([], float(depth.unsent_messages))
        yield jobs
        yield unsent


@worker_ready.connect
def serve_metrics(**_: Any) -> None:
    """The main process serves every process's metrics and the queue depth, when a port is set."""
    settings = get_settings()
    if not settings.worker_metrics_port:
        return
    if not os.environ.get(MULTIPROC_ENV):
        log.warning("worker metrics off: %s is not set (start the worker with `mnemo worker`)", MULTIPROC_ENV)
        return
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(QueueCollector(make_session_factory(settings.database_url)))
    start_http_server(settings.worker_metrics_port, addr=settings.host, registry=registry)
    log.info("worker metrics on http://%s:%d/metrics", settings.host, settings.worker_metrics_port)


@worker_process_shutdown.connect
def forget_process(pid: int | None = None, **_: Any) -> None:
    """A pool process ended: its live gauges (GPU memory) leave the sum."""
    if os.environ.get(MULTIPROC_ENV):
        mark_process_dead(pid or os.getpid())


@worker_shutdown.connect
def remove_metrics_dir(**_: Any) -> None:
    """The main process stops: the folder ``mnemo worker`` made for this run goes."""
    folder = os.environ.get(MULTIPROC_ENV, "")
    if os.path.basename(folder.rstrip("/")).startswith(METRICS_DIR_PREFIX):
        shutil.rmtree(folder, ignore_errors=True)
