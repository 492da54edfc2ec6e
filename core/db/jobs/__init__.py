"""The SQL job protocol: exactly-once effects on an at-least-once queue.

Celery delivers a job id *at least once*; this package makes the effects happen *once*
(docs/architecture.md, "The job protocol"):

* ``claim``: take a job for one attempt (lease, fencing token, per-user order), or learn why
  not; the heartbeat that keeps the lease;
* ``lifecycle``: how an attempt ends — publish, fail, cancel — through one ``release``;
* ``lineage``: a user's chain of adapter versions (``lineage.lineage``) and the compare-and-swap
  of its head;
* ``inputs``: what a claimed attempt reads (uploads, the generation request);
* ``maintenance``: the reconciler's repairs and the orphan collection.

The public names are re-exported here (``from core.db import jobs as protocol``), with the
clean-up after a final outcome (``core.db.cleanup``).
"""

from core.db.cleanup import delete_raw_uploads
from core.db.jobs.claim import (
    ACTIVE_STATES,
    STARTING_PROGRESS,
    Claim,
    ClaimOutcome,
    Heartbeat,
    claim_job,
    heartbeat,
)
from core.db.jobs.inputs import ensure_generation, upload_paths
from core.db.jobs.lifecycle import (
    CancelRequestedError,
    LeaseLostError,
    Publication,
    fail_job,
    finished_progress,
    mark_cancelled,
    publish_generation,
    publish_training,
    request_cancel,
)
from core.db.jobs.lineage import LineageConflictError, user_lineage
from core.db.jobs.maintenance import ReconcileReport, collect_orphans, reconcile

__all__ = [
    "ACTIVE_STATES",
    "STARTING_PROGRESS",
    "CancelRequestedError",
    "Claim",
    "ClaimOutcome",
    "Heartbeat",
    "LeaseLostError",
    "LineageConflictError",
    "Publication",
    "ReconcileReport",
    "claim_job",
    "collect_orphans",
    "delete_raw_uploads",
    "ensure_generation",
    "fail_job",
    "finished_progress",
    "heartbeat",
    "mark_cancelled",
    "publish_generation",
    "publish_training",
    "reconcile",
    "request_cancel",
    "upload_paths",
    "user_lineage",
]
