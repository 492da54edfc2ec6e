"""Regression examples of what the job-protocol model found (``tests/test_job_protocol_model.py``).

1. A cancel committed after the worker's last heartbeat still published: the runner's own check
   reads the monitor's flag, which only a heartbeat sets. The publish now refuses, under the row
   lock, a job whose cancel is requested (``CancelRequestedError``), and the runner marks it
   cancelled.
2. On PostgreSQL a cancel, a refused claim or the reconciler that read a running job just before
   its publish committed then overwrote the publish: the cancel flag set on a succeeded job, or
   the job given up as ``failed`` with its adapter published. ``write_transaction`` serialises on
   SQLite (``BEGIN IMMEDIATE``) but not on PostgreSQL, so those reads now lock the row
   (``FOR UPDATE``; docs/architecture.md, "The job protocol"). Each example holds a publish's
   transaction open until the rival waits on it, then commits it; on SQLite the rival waits at
   its ``BEGIN IMMEDIATE`` instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import jobs as protocol
from core.db.enqueue import TrainRequest, create_train_job
from core.db.models import Job, JobState, utcnow
from core.db.session import write_transaction
from core.storage import LocalStore
from tests.conftest import make_settings
from tests.job_protocol_model import Fault, JobProtocolModel
from tests.job_protocol_world import model_world

LEASE = 60.0
BLOCKED_TIMEOUT_SECONDS = 10.0


def _claimed_job(factory: sessionmaker[Session], *, user_id: str) -> tuple[str, protocol.Claim]:
    with factory() as session:
        request = TrainRequest(name="dog", class_word=None, method="dsc_ewc_dc", steps=None)
        _, job = create_train_job(session, user_id=user_id, request=request, uploads=[], max_attempts=1)
        session.commit()
    claim = protocol.claim_job(factory, job_id=job.id, worker_id="w1", lease_seconds=LEASE)
    assert claim.outcome is protocol.ClaimOutcome.CLAIMED
    return job.id, claim


@contextmanager
def publish_in_flight(factory: sessionmaker[Session], *, job_id: str) -> Iterator[Callable[[], bool]]:
    """A transaction that has made the job ``succeeded`` and holds it until the block ends (then
    commits); yields ``rival_waits()``: whether another transaction waits on it."""
    with write_transaction(factory) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state=JobState.SUCCEEDED.value, finished_at=utcnow(), lease_owner=None, lease_expires_at=None
            )
        )
        if session.get_bind().dialect.name != "postgresql":
            yield lambda: time.sleep(0.5) is None  # SQLite: the rival waits at BEGIN IMMEDIATE
            return
        holder = session.scalar(text("SELECT pg_backend_pid()"))

        def rival_waits() -> bool:
            with factory() as probe:
                waiting = "SELECT count(*) FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"
                return bool(probe.scalar(text(waiting), {"holder": holder}))

        yield rival_waits


def _race(factory: sessionmaker[Session], *, job_id: str, rival: Callable[[], Any]) -> Any:
    """Run ``rival`` while a publish of ``job_id`` is in flight; its answer once both committed."""
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(rival()))
    with publish_in_flight(factory, job_id=job_id) as rival_waits:
        thread.start()
        deadline = time.monotonic() + BLOCKED_TIMEOUT_SECONDS
        while not rival_waits():
            assert time.monotonic() < deadline, "the rival never waited on the publish"
            time.sleep(0.02)
    thread.join(timeout=30)
    assert answers, "the rival did not finish"
    return answers[0]


@pytest.mark.parametrize("rival", ["cancel", "claim", "reconcile"])
def test_a_rival_that_read_the_job_before_a_publish_committed_never_overwrites_it(
    session_factory: sessionmaker[Session],
    new_user: Callable[..., tuple[str, str]],
    tmp_path: Path,
    rival: str,
) -> None:
    user_id, _ = new_user(session_factory, "alice")
    job_id, _ = _claimed_job(session_factory, user_id=user_id)
    expired = utcnow() + timedelta(seconds=LEASE + 1)  # the lease ran out; the attempt was the last
    rivals: dict[str, Callable[[], Any]] = {
        "cancel": lambda: protocol.request_cancel(session_factory, job_id=job_id, now=expired),
        "claim": lambda: protocol.claim_job(
            session_factory, job_id=job_id, worker_id="w2", lease_seconds=LEASE, now=expired
        ),
        "reconcile": lambda: protocol.reconcile(
            session_factory, LocalStore(tmp_path / "data"), redispatch_after_seconds=LEASE, now=expired
        ),
    }
    answer = _race(session_factory, job_id=job_id, rival=rivals[rival])
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.state, job.cancel_requested, job.error) == (JobState.SUCCEEDED.value, False, None)
    if rival == "cancel":
        assert answer.state == JobState.SUCCEEDED.value  # the answer says the job had finished
    elif rival == "claim":
        assert (answer.outcome, answer.reason) == (protocol.ClaimOutcome.SKIP, "job is already succeeded")
    else:
        assert answer.failed == [] and answer.redispatched == []


def test_a_cancel_after_the_last_heartbeat_wins_over_the_publish(database_url: str, tmp_path: Path) -> None:
    """Through the runner (the cancel lands inside the kind's ``publish``) and one call at a time."""
    settings = make_settings(data_dir=tmp_path / "data", database_url=database_url)
    with model_world(database_url=database_url, settings=settings) as world:
        machine = JobProtocolModel(world)
        through_runner = machine.submit_concept(user=0, max_attempts=1)
        machine.deliver(job=through_runner, fault=Fault.CANCEL_BEFORE_PUBLISH)  # asserts CANCELLED
        assert world.job(through_runner).state == JobState.CANCELLED.value

        by_hand = machine.submit_generation(user=1)
        (attempt,) = machine.claim(job_id=by_hand, worker="w1").values
        machine.cancel(job_id=by_hand)
        machine.finish(attempt)  # asserts CancelRequestedError: nothing was written
        assert world.job(by_hand).state == JobState.RUNNING.value
        assert protocol.mark_cancelled(world.session_factory, job_id=by_hand, fencing_token=attempt.token)
        machine.invariants_hold()
