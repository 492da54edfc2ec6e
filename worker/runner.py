"""One delivery of a job, for both kinds: claim → monitor → produce → publish (or fail), then clean up.

A kind (``worker.training.TRAINING``, ``worker.generation.GENERATION``) says how to *produce* its
result (the expensive part, files written but referenced by no row), how to *publish* it (one
fenced transaction), how to *discard* the files of a result that will not be published, and what
to do *after* a publish (best effort). Everything else is the same for both kinds and lives here
(docs/architecture.md, "The job protocol"):

* a duplicate, early or late delivery returns without work (``Outcome.SKIPPED`` / ``WAIT``);
* the monitor extends the lease and carries progress and cancel requests until the publish commits;
* a cancel stops the attempt (a cancel that arrives after the last step still wins over publishing);
* a lost lease ends the attempt without writing anything;
* any other error fails the attempt: at once for errors a new attempt would meet again
  (``is_final``), else the job is queued for another attempt until its attempts run out;
* when the job is final, ``core.db.cleanup.delete_raw_uploads`` removes what it leaves behind —
  the one call site in the worker — before the kind's follow-ups (previews) run.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from core.db import jobs as protocol
from core.db.cleanup import delete_raw_uploads
from core.db.models import Job
from core.engine.errors import EngineError, TaskCancelled
from worker.monitor import JobMonitor
from worker.outcomes import Outcome, RunResult
from worker.runtime import CorruptVersionError, Runtime

log = logging.getLogger(__name__)


class Work(Protocol):
    """What one job kind does inside a claimed attempt."""

    kind: str

    def produce(self, runtime: Runtime, *, claim: protocol.Claim, monitor: JobMonitor) -> Any:
        """Compute and store the result; raises ``TaskCancelled`` when ``monitor`` asks to stop."""

    def publish(self, runtime: Runtime, *, claim: protocol.Claim, product: Any) -> str:
        """Make ``product`` visible in one fenced transaction; returns the outcome's detail."""

    def discard(self, runtime: Runtime, *, product: Any) -> None:
        """Delete the files of a ``product`` that no row will reference."""

    def after(self, runtime: Runtime, *, claim: protocol.Claim, detail: str) -> None:
        """Follow-ups of a publish that never change the job's result."""


def is_final(error: Exception) -> bool:
    """An error that another attempt would meet again: the engine's typed errors (bad images, an
    invalid concept or method, an unknown token, non-finite numbers, an unusable backbone), a
    corrupt stored adapter version, or invalid parameters."""
    return isinstance(error, EngineError | CorruptVersionError | ValueError)


def public_message(error: Exception) -> str:
    """An error text for the job row: typed messages, else only the type name (never a traceback)."""
    if isinstance(error, EngineError | CorruptVersionError | ValueError | protocol.LineageConflictError):
        return str(error)[:500]
    return f"internal error ({type(error).__name__}); the job is retried"


def run_job(runtime: Runtime, *, job_id: str, work: Work) -> RunResult:
    """Run one delivery of job ``job_id``; never raises for a job-level failure."""
    result, claim = _deliver(runtime, job_id=job_id, work=work)
    if result.finished:
        _clean_up(runtime, job_id=job_id)
    if result.outcome is Outcome.SUCCEEDED:
        work.after(runtime, claim=claim, detail=result.detail)
    return result


def _clean_up(runtime: Runtime, *, job_id: str) -> None:
    """The job is final: remove what it leaves behind (the reconciler retries an interrupted one),
    in the store and in this host's workspace."""
    try:
        delete_raw_uploads(runtime.session_factory, runtime.store, job_id=job_id)
    except Exception as error:
        log.warning("job %s: clean-up left to the reconciler (%s)", job_id, type(error).__name__)
    finally:
        runtime.workspace.forget_job(runtime.store, job_id=job_id)


def _deliver(runtime: Runtime, *, job_id: str, work: Work) -> tuple[RunResult, protocol.Claim]:
    claim = protocol.claim_job(
        runtime.session_factory,
        job_id=job_id,
        worker_id=runtime.worker_id,
        lease_seconds=runtime.settings.job_lease_seconds,
        now=runtime.clock(),
    )
    if claim.outcome is protocol.ClaimOutcome.WAIT:
        return RunResult(Outcome.WAIT, claim.reason), claim
    if claim.outcome is protocol.ClaimOutcome.SKIP:
        return RunResult(Outcome.SKIPPED, claim.reason, finished=claim.finalized), claim
    log.info("%s job %s: attempt %d claimed by %s", work.kind, job_id, claim.attempt, runtime.worker_id)
    monitor = JobMonitor(
        session_factory=runtime.session_factory,
        job_id=job_id,
        fencing_token=claim.fencing_token,
        lease_seconds=runtime.settings.job_lease_seconds,
        heartbeat_seconds=runtime.settings.job_heartbeat_seconds,
        worker=runtime.worker_info,
        clock=runtime.clock,
    )
    try:
        with monitor:
            return _attempt(runtime, claim=claim, monitor=monitor, work=work), claim
    except protocol.LeaseLostError:
        return _lease_lost(runtime, job_id=job_id), claim
    except Exception as error:  # SystemExit / KeyboardInterrupt propagate: the lease expires
        return _fail(runtime, claim=claim, error=error, kind=work.kind), claim


def _attempt(runtime: Runtime, *, claim: protocol.Claim, monitor: JobMonitor, work: Work) -> RunResult:
    try:
        product = work.produce(runtime, claim=claim, monitor=monitor)
    except TaskCancelled:
        return _stopped(runtime, claim=claim, monitor=monitor)
    if monitor.should_stop():  # the monitor runs until the publish commits: a late cancel still wins
        work.discard(runtime, product=product)
        return _stopped(runtime, claim=claim, monitor=monitor)
    try:
        detail = work.publish(runtime, claim=claim, product=product)
    except protocol.CancelRequestedError:  # committed after the monitor's last beat: it still wins
        work.discard(runtime, product=product)
        return _stopped(runtime, claim=claim, monitor=monitor)
    except (protocol.LeaseLostError, protocol.LineageConflictError):
        work.discard(runtime, product=product)  # nothing was written: no row will reference it
        raise
    finally:
        monitor.stop()
    log.info("%s job %s: published %s", work.kind, claim.job_id, detail)
    return RunResult(Outcome.SUCCEEDED, detail, finished=True)


def _stopped(runtime: Runtime, *, claim: protocol.Claim, monitor: JobMonitor) -> RunResult:
    """The attempt stopped early: the lease went to another attempt, or the user cancelled."""
    monitor.stop()
    if monitor.lease_lost:
        return _lease_lost(runtime, job_id=claim.job_id)
    cancelled = protocol.mark_cancelled(runtime.session_factory, **claim.fence, now=runtime.clock())
    return RunResult(Outcome.CANCELLED, "cancelled", finished=cancelled)


def _lease_lost(runtime: Runtime, *, job_id: str) -> RunResult:
    """Another attempt owns the job (leave its files alone), or the job is gone (its user erased
    the account): then what this attempt wrote for it goes too."""
    with runtime.session_factory() as session:
        exists = session.get(Job, job_id) is not None
    if exists:
        return RunResult(Outcome.SKIPPED, "lease lost to another attempt")
    return RunResult(Outcome.SKIPPED, "the job was deleted", finished=True)


def _fail(runtime: Runtime, *, claim: protocol.Claim, error: Exception, kind: str) -> RunResult:
    """Write the attempt's failure to the job row (fenced); FAILED when it was the last attempt.

    The log gets the traceback for unexpected errors only; it names code, not data (messages
    carry ids only), which is what an operator needs.
    """
    final, message = is_final(error), public_message(error)
    log.warning(
        "%s job %s: attempt %d failed: %s",
        kind,
        claim.job_id,
        claim.attempt,
        type(error).__name__,
        exc_info=None if final else error,
    )
    ended = protocol.fail_job(
        runtime.session_factory, **claim.fence, error=message, final=final, now=runtime.clock()
    )
    return RunResult(Outcome.FAILED if ended else Outcome.RETRY, message, finished=ended)
