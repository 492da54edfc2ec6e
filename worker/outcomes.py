"""What one delivery of a job ended in, and how a failed attempt is recorded (both job kinds)."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from core.db import jobs as protocol

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # final
    RETRY = "retry"  # this attempt failed; the job is queued again
    CANCELLED = "cancelled"
    WAIT = "wait"  # an earlier task of the user runs: deliver again later
    SKIPPED = "skipped"  # duplicate / late / final / lease lost


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    detail: str = ""


def record_failure(
    session_factory, *, kind: str, claim: protocol.Claim, error: Exception, final: bool, message: str
) -> bool:
    """Log the attempt's failure and write it to the job row (fenced); True if it was the last attempt.

    ``message`` is what the user reads: typed engine messages or only the error's type name,
    never a traceback. The log gets the traceback for unexpected errors only; it names code,
    not data (messages carry ids only), which is what an operator needs.
    """
    log.warning(
        "%s job %s: attempt %d failed: %s",
        kind,
        claim.job_id,
        claim.attempt,
        type(error).__name__,
        exc_info=None if final else error,
    )
    return protocol.fail_job(
        session_factory, job_id=claim.job_id, fencing_token=claim.fencing_token, error=message, final=final
    )
