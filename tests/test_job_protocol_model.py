"""A Hypothesis state-machine model of the job protocol (issue 20, "Then prove it under faults").

The rules drive the project's real code on SQLite and PostgreSQL — the SQL protocol
(``core.db.jobs``), job creation (``core.db.enqueue``), the job runner (``worker.runner.run_job``
with a stand-in for the engine; it records its worker in ``core.db.workers``) and the
reconciler's repair at the worker's re-send interval (``worker.reconciler``) — under a clock the
model moves (every protocol function takes ``now``, the runner reads ``Runtime.clock``), so a
lease expires without sleeping. Workers claim (duplicates, late and early deliveries, two at once
from two threads), heartbeat, lose their lease, wake up after it was taken, publish or fail;
users cancel, also while a worker publishes. ``tests/job_protocol_model.py`` holds the rules,
what each must answer, and the invariants checked after every step (docs/architecture.md,
"The job protocol").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from core.db.models import JobState
from tests.conftest import make_settings
from tests.job_protocol_model import LEASE_SECONDS, JobProtocolModel, run_model
from tests.job_protocol_world import model_world

# Bounded for CI (a fixed seed), about 30 s per database on two shared cores: a PostgreSQL step
# costs about four SQLite ones here (a round trip per statement), so it runs fewer examples.
MODEL_SETTINGS = settings(
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
EXAMPLES = {"sqlite": 25, "postgresql": 12}


def _world(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings_ = make_settings(
        data_dir=tmp_path / "data", database_url=database_url, job_lease_seconds=LEASE_SECONDS
    )
    return model_world(database_url=database_url, settings=settings_)


def test_the_job_protocol_keeps_its_invariants_under_any_interleaving(
    database_url: str, tmp_path: Path
) -> None:
    with _world(database_url, tmp_path) as world:
        run_model(world, hypothesis_settings=settings(MODEL_SETTINGS, max_examples=EXAMPLES[world.dialect]))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_model_catches_a_publish_overwritten(database_url: str, tmp_path: Path) -> None:
    """The invariants are not vacuous: a succeeded job made ``failed`` (the lost update the model
    found on PostgreSQL, ``tests/test_job_protocol_races.py``) fails them."""
    with _world(database_url, tmp_path) as world:
        machine = JobProtocolModel(world)
        job = machine.submit_concept(user=0, max_attempts=1)
        (attempt,) = machine.claim(job_id=job, worker="w1").values
        machine.finish(attempt)
        machine.invariants_hold()
        world.overwrite_state(job_id=job, state=JobState.FAILED)
        with pytest.raises(AssertionError, match=r"undocumented transition \('succeeded', 'failed'\)"):
            machine.invariants_hold()
