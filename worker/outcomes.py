"""What one delivery of a job ended in (both job kinds; ``worker.runner``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
    # The delivery made the job final (or found it deleted): what it leaves behind is removed.
    finished: bool = False
