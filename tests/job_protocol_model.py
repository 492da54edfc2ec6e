"""The model of the job protocol that ``tests/test_job_protocol_model.py`` runs.

It runs in a ``ModelWorld`` (``tests/job_protocol_world.py``: the database, the clock, the log
of transitions). ``JobProtocolModel`` is the ``RuleBasedStateMachine``: each rule is what a user,
a worker or the reconciler does, compared with what the protocol promises (docs/architecture.md,
"The job protocol"); ``invariants_hold`` runs after every step.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import jobs as protocol
from core.db.enqueue import GenerateRequest, TrainRequest, create_generate_job, create_train_job
from core.db.models import (
    AdapterVersion,
    AuditLog,
    GeneratedImage,
    Generation,
    Job,
    JobKind,
    JobState,
    Outbox,
    Upload,
    User,
    WorkerSeen,
    new_id,
)
from core.db.users import create_user
from core.engine.errors import TaskCancelled
from tests.job_protocol_world import ModelWorld, in_parallel
from worker.outcomes import Outcome, RunResult
from worker.reconciler import redispatch_after_seconds
from worker.runner import run_job
from worker.runtime import Runtime

LEASE_SECONDS = 60
USERS = 2
WORKERS = ("w1", "w2", "w3")
MAX_JOBS = 6  # per example: enough for two users' chains, short enough to explore interleavings
UPLOADS_PER_JOB = 2
FINAL = {state.value for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)}
QUEUED, RUNNING = JobState.QUEUED.value, JobState.RUNNING.value
# The documented transitions (docs/architecture.md, "The job protocol"): a claim takes a queued
# job, or a running one whose lease expired (a new fencing token); a retryable failure queues it
# again; every end is final; a cancel ends a queued job at once.
CLAIMS = {(QUEUED, RUNNING), (RUNNING, RUNNING)}
ENDS = {(RUNNING, QUEUED)} | {(RUNNING, final) for final in FINAL} | {(QUEUED, JobState.CANCELLED.value)}


# ---- what the protocol promises ---------------------------------------------------------------------


@dataclass
class Attempt:
    """One claimed attempt, as its worker sees it."""

    job_id: str
    worker: str
    token: int
    lease_until: datetime | None  # None once its worker learnt that the lease is lost
    saw_cancel: bool = False

    def believes_live(self, now: datetime) -> bool:
        return self.lease_until is not None and self.lease_until >= now


def expected_claim(job: Job, *, predecessors_final: bool, now: datetime) -> tuple[protocol.ClaimOutcome, str]:
    """What a claim of ``job`` must answer at ``now``, and the job's state after it."""
    lease_live = job.state == RUNNING and job.lease_expires_at is not None and job.lease_expires_at >= now
    if job.state in FINAL or lease_live:
        return protocol.ClaimOutcome.SKIP, job.state
    if job.cancel_requested:
        return protocol.ClaimOutcome.SKIP, JobState.CANCELLED.value
    if job.attempts >= job.max_attempts:
        return protocol.ClaimOutcome.SKIP, JobState.FAILED.value
    if job.kind == JobKind.TRAIN.value and not predecessors_final:
        return protocol.ClaimOutcome.WAIT, job.state
    return protocol.ClaimOutcome.CLAIMED, RUNNING


def owns(job: Job, attempt: Attempt) -> bool:
    """The attempt's fencing token is still the running job's: its writes are accepted."""
    return job.state == RUNNING and job.fencing_token == attempt.token


class Fault(enum.StrEnum):
    """What happens inside one delivery through the job runner."""

    NONE = "none"
    ERROR_FINAL = "error_final"  # an error another attempt would meet again (ValueError)
    ERROR_RETRY = "error_retry"  # an internal error: the job is queued again
    CANCEL_WHILE_PRODUCING = "cancel_while_producing"  # the heartbeat sees it
    CANCEL_BEFORE_PUBLISH = "cancel_before_publish"  # after the monitor's last beat
    LEASE_TAKEN = "lease_taken"  # the lease expires and another worker claims; publish is refused
    LEASE_TAKEN_SEEN = "lease_taken_seen"  # ... and the heartbeat notices it first


class ModelWork:
    """The engine's stand-in inside ``worker.runner.run_job``: writes files, injects one fault."""

    def __init__(self, model: JobProtocolModel, *, kind: str, fault: Fault) -> None:
        self.model, self.kind, self.fault = model, kind, fault
        self.taken_over: list[Attempt] = []
        self.produced: list[str] = []

    def produce(self, runtime: Runtime, *, claim: protocol.Claim, monitor: Any) -> Any:
        self.model.assert_predecessors_final(claim.job_id)
        if self.fault is Fault.ERROR_FINAL:
            raise ValueError("invalid parameters")
        if self.fault is Fault.ERROR_RETRY:
            raise RuntimeError("a transient failure")
        if self.fault is Fault.CANCEL_WHILE_PRODUCING:
            self.model.cancel(job_id=claim.job_id)
        if self.fault in (Fault.LEASE_TAKEN, Fault.LEASE_TAKEN_SEEN):
            self.model.world.now += timedelta(seconds=LEASE_SECONDS + 1)
            self.taken_over = list(self.model.claim(job_id=claim.job_id, worker="w-rival").values)
        if self.fault in (Fault.CANCEL_WHILE_PRODUCING, Fault.LEASE_TAKEN_SEEN):
            monitor.beat()  # the heartbeat thread's next beat, now
        if monitor.should_stop():  # the engine checks between steps, before it stores anything
            raise TaskCancelled("stopped")
        product = self.model.produce(claim.job_id)
        self.produced = product.paths
        return product

    def publish(self, runtime: Runtime, *, claim: protocol.Claim, product: Product) -> str:
        if self.fault is Fault.CANCEL_BEFORE_PUBLISH:
            self.model.cancel(job_id=claim.job_id)
        product.publish(claim.fencing_token)
        return claim.job_id

    def discard(self, runtime: Runtime, *, product: Product) -> None:
        runtime.store.delete_many(product.paths)

    def after(self, runtime: Runtime, *, claim: protocol.Claim, detail: str) -> None:
        """Nothing follows."""


def expected_run(claimed: protocol.ClaimOutcome, *, fault: Fault, last_attempt: bool) -> Outcome:
    """What one delivery through the runner ends in, from its claim and its fault."""
    if claimed is protocol.ClaimOutcome.WAIT:
        return Outcome.WAIT
    if claimed is protocol.ClaimOutcome.SKIP:
        return Outcome.SKIPPED
    return {
        Fault.NONE: Outcome.SUCCEEDED,
        Fault.ERROR_FINAL: Outcome.FAILED,
        Fault.ERROR_RETRY: Outcome.FAILED if last_attempt else Outcome.RETRY,
        Fault.CANCEL_WHILE_PRODUCING: Outcome.CANCELLED,
        Fault.CANCEL_BEFORE_PUBLISH: Outcome.CANCELLED,
        Fault.LEASE_TAKEN: Outcome.SKIPPED,
        Fault.LEASE_TAKEN_SEEN: Outcome.SKIPPED,
    }[fault]


@dataclass
class Product:
    """A produced result: files written, referenced by no row until ``publish``."""

    paths: list[str]
    publish: Callable[[int], None]


# ---- the state machine -------------------------------------------------------------------------------


class JobProtocolModel(RuleBasedStateMachine):
    jobs = Bundle("jobs")
    attempts = Bundle("attempts")

    def __init__(self, world: ModelWorld) -> None:
        super().__init__()
        self.world = world
        world.reset()
        self.users = [self._new_user(f"user{i}") for i in range(USERS)]
        self.attempts_of: dict[str, list[Attempt]] = defaultdict(list)
        self.publishes: Counter[str] = Counter()
        self.accepted_cancels: set[str] = set()

    @property
    def factory(self) -> sessionmaker[Session]:
        return self.world.session_factory

    @property
    def now(self) -> datetime:
        return self.world.now

    def _new_user(self, name: str) -> str:
        with self.factory() as session:
            issued = create_user(session, name=name, pepper=self.world.settings.pepper)
            session.commit()
            return issued.user.id

    # ---- users -----------------------------------------------------------------------------------

    @precondition(lambda self: self._job_count() < MAX_JOBS)
    @rule(target=jobs, user=st.integers(0, USERS - 1), max_attempts=st.integers(1, 3))
    def submit_concept(self, user: int, max_attempts: int) -> str:
        store = self.world.store
        uploads = [
            store.write_bytes(store.new_upload_path(), new_id().encode()) for _ in range(UPLOADS_PER_JOB)
        ]
        with self.factory() as session:
            request = TrainRequest(name=f"c{new_id()[:8]}", class_word=None, method="dsc_ewc_dc", steps=None)
            _, job = create_train_job(
                session, user_id=self.users[user], request=request, uploads=uploads, max_attempts=max_attempts
            )
            session.commit()
            return job.id

    @precondition(lambda self: self._job_count() < MAX_JOBS)
    @rule(target=jobs, user=st.integers(0, USERS - 1))
    def submit_generation(self, user: int) -> str:
        request = GenerateRequest(
            prompt="a photo", negative_prompt="", n=1, steps=1, guidance_scale=1.0, seed=0
        )
        with self.factory() as session:
            _, job = create_generate_job(session, user_id=self.users[user], request=request, max_attempts=2)
            session.commit()
            return job.id

    @rule(job=jobs)
    def cancel_job(self, job: str) -> None:
        self.cancel(job_id=job)

    def cancel(self, *, job_id: str) -> Job:
        before = self.world.job(job_id)
        answer = protocol.request_cancel(self.factory, job_id=job_id, now=self.now)
        if before.state in FINAL:
            assert (answer.state, answer.cancel_requested) == (before.state, before.cancel_requested), "final"
        elif before.state == QUEUED:
            assert answer.state == JobState.CANCELLED.value, "a queued job is cancelled at once"
        else:
            assert answer.state == RUNNING and answer.cancel_requested, "a running job is asked to stop"
        if answer.state not in FINAL:
            self.accepted_cancels.add(job_id)
        return answer

    # ---- workers, one protocol call at a time ----------------------------------------------------

    @rule(target=attempts, job=jobs, worker=st.sampled_from(WORKERS))
    def claim_job(self, job: str, worker: str) -> Any:
        return self.claim(job_id=job, worker=worker)

    def claim(self, *, job_id: str, worker: str) -> Any:
        before = self.world.job(job_id)
        expected, state_after = expected_claim(
            before, predecessors_final=self._predecessors_final(job_id), now=self.now
        )
        claim = protocol.claim_job(
            self.factory, job_id=job_id, worker_id=worker, lease_seconds=LEASE_SECONDS, now=self.now
        )
        assert (claim.outcome, self.world.job(job_id).state) == (expected, state_after), claim.reason
        if claim.outcome is not protocol.ClaimOutcome.CLAIMED:
            return multiple()
        return multiple(self._claimed(claim, worker=worker, before=before))

    def _claimed(self, claim: protocol.Claim, *, worker: str, before: Job) -> Attempt:
        assert claim.fencing_token == before.fencing_token + 1 and claim.attempt == before.attempts + 1
        attempt = Attempt(
            job_id=claim.job_id,
            worker=worker,
            token=claim.fencing_token,
            lease_until=self.now + timedelta(seconds=LEASE_SECONDS),
        )
        self.attempts_of[claim.job_id].append(attempt)
        return attempt

    @rule(target=attempts, job=jobs)
    def two_workers_claim_at_once(self, job: str) -> Any:
        before = self.world.job(job)
        expected, _ = expected_claim(before, predecessors_final=self._predecessors_final(job), now=self.now)
        claims = in_parallel(
            *(
                lambda worker=worker: protocol.claim_job(
                    self.factory, job_id=job, worker_id=worker, lease_seconds=LEASE_SECONDS, now=self.now
                )
                for worker in WORKERS[:2]
            )
        )
        won = [
            (c, w)
            for c, w in zip(claims, WORKERS, strict=False)
            if c.outcome is protocol.ClaimOutcome.CLAIMED
        ]
        assert len(won) == (1 if expected is protocol.ClaimOutcome.CLAIMED else 0), claims
        return multiple(*(self._claimed(claim, worker=worker, before=before) for claim, worker in won))

    @rule(attempt=attempts)
    def heartbeat(self, attempt: Attempt) -> None:
        owned = owns(self.world.job(attempt.job_id), attempt)
        beat = protocol.heartbeat(
            self.factory,
            job_id=attempt.job_id,
            fencing_token=attempt.token,
            lease_seconds=LEASE_SECONDS,
            now=self.now,
        )
        assert beat.alive == owned, "a heartbeat extends the lease exactly while the token is the job's"
        attempt.lease_until = self.now + timedelta(seconds=LEASE_SECONDS) if beat.alive else None
        attempt.saw_cancel = attempt.saw_cancel or (beat.alive and beat.cancel_requested)

    @rule(seconds=st.sampled_from([1, LEASE_SECONDS // 2, LEASE_SECONDS + 1]))
    def time_passes(self, seconds: int) -> None:
        self.world.now += timedelta(seconds=seconds)

    @rule(attempt=consumes(attempts))
    def finish(self, attempt: Attempt) -> None:
        """The attempt's worker ends it as the runner does: stop on a cancel it saw, else publish."""
        before = self.world.job(attempt.job_id)
        outcome = self._finish(attempt)
        if isinstance(outcome, protocol.LeaseLostError):
            assert not owns(before, attempt), "an owner's publish is accepted"
        elif isinstance(outcome, protocol.CancelRequestedError):
            assert owns(before, attempt) and before.cancel_requested
        elif outcome == "published":
            assert owns(before, attempt) and not before.cancel_requested
        else:
            assert outcome == ("cancelled" if owns(before, attempt) else "lost"), outcome

    def _finish(self, attempt: Attempt) -> Any:
        """Publish (or mark cancelled); returns what happened, or the protocol's refusal."""
        attempt.lease_until = None  # the attempt ends here, whatever the database answers
        if attempt.saw_cancel:
            ended = protocol.mark_cancelled(
                self.factory, job_id=attempt.job_id, fencing_token=attempt.token, now=self.now
            )
            return "cancelled" if ended else "lost"
        product = self.produce(attempt.job_id)
        try:
            product.publish(attempt.token)
        except (protocol.LeaseLostError, protocol.CancelRequestedError) as refused:
            self.world.store.delete_many(product.paths)
            return refused
        self.publishes[attempt.job_id] += 1
        return "published"

    @rule(attempt=consumes(attempts), final=st.booleans())
    def fail(self, attempt: Attempt, final: bool) -> None:
        before = self.world.job(attempt.job_id)
        attempt.lease_until = None
        ended = protocol.fail_job(
            self.factory,
            job_id=attempt.job_id,
            fencing_token=attempt.token,
            error="x",
            final=final,
            now=self.now,
        )
        assert ended == (owns(before, attempt) and (final or before.attempts >= before.max_attempts))
        if owns(before, attempt) and not ended:
            assert self.world.job(attempt.job_id).state == QUEUED, "a retryable failure queues the job again"

    @precondition(lambda self: self._job_count() > 0)
    @rule()
    def reconcile(self) -> None:
        with self.factory() as session:
            expired = session.scalars(
                select(Job).where(Job.state == RUNNING, Job.lease_expires_at < self.now)
            ).all()
        report = protocol.reconcile(
            self.factory,
            self.world.store,
            redispatch_after_seconds=redispatch_after_seconds(self.world.settings),
            now=self.now,
        )
        with self.factory() as session:
            for job in expired:
                if job.attempts >= job.max_attempts:
                    assert job.id in report.failed
                    continue
                resent = session.scalar(
                    select(func.count())
                    .select_from(Outbox)
                    .where(Outbox.job_id == job.id, Outbox.created_at >= job.lease_expires_at)
                )
                assert resent, "an expired lease is sent again"
            leftovers = session.scalar(
                select(func.count())
                .select_from(Upload)
                .join(Job, Upload.job_id == Job.id)
                .where(Job.state.in_(FINAL))
            )
            assert not leftovers, "the reconciler removes a final job's raw uploads"

    # ---- a rival acts while a worker publishes: two threads ----------------------------------

    @rule(
        target=attempts, attempt=consumes(attempts), rival=st.sampled_from(["cancel", "claim", "reconcile"])
    )
    def rival_races_a_publish(self, attempt: Attempt, rival: str) -> Any:
        rivals: dict[str, Callable[[], Any]] = {
            "cancel": lambda: protocol.request_cancel(self.factory, job_id=attempt.job_id, now=self.now),
            "claim": lambda: protocol.claim_job(
                self.factory,
                job_id=attempt.job_id,
                worker_id="w-rival",
                lease_seconds=LEASE_SECONDS,
                now=self.now,
            ),
            "reconcile": lambda: protocol.reconcile(
                self.factory,
                self.world.store,
                redispatch_after_seconds=redispatch_after_seconds(self.world.settings),
                now=self.now,
            ),
        }
        before = self.world.job(attempt.job_id)
        finished, answer = in_parallel(lambda: self._finish(attempt), rivals[rival])
        event(f"{rival} raced a {before.state} job's end: {type(finished).__name__} {finished}"[:80])
        assert not isinstance(finished, Exception) or isinstance(
            finished, protocol.LeaseLostError | protocol.CancelRequestedError
        ), repr(finished)
        assert not isinstance(answer, Exception), repr(answer)
        if rival == "cancel" and answer.state not in FINAL:
            self.accepted_cancels.add(attempt.job_id)
        if rival == "claim" and answer.outcome is protocol.ClaimOutcome.CLAIMED:
            return multiple(self._claimed(answer, worker="w-rival", before=before))
        return multiple()

    # ---- a whole delivery through the job runner -------------------------------------------------

    @rule(target=attempts, job=jobs, fault=st.sampled_from(Fault))
    def deliver(self, job: str, fault: Fault) -> Any:
        before = self.world.job(job)
        claimed, _ = expected_claim(before, predecessors_final=self._predecessors_final(job), now=self.now)
        work = ModelWork(self, kind=before.kind, fault=fault)
        result: RunResult = run_job(self.world.runtime, job_id=job, work=work)
        last_attempt = before.attempts + 1 >= before.max_attempts
        assert result.outcome is expected_run(claimed, fault=fault, last_attempt=last_attempt), result
        if result.outcome is Outcome.SUCCEEDED:
            self.publishes[job] += 1
        if claimed is protocol.ClaimOutcome.CLAIMED and result.outcome is not Outcome.SUCCEEDED:
            assert not any(self.world.store.exists(p) for p in work.produced), "unpublished files are removed"
        if result.finished:
            with self.factory() as session:
                left = session.scalar(select(func.count()).select_from(Upload).where(Upload.job_id == job))
            assert not left, "the runner removes a final job's raw uploads"
        return multiple(*work.taken_over)

    # ---- producing a result: files, then a publish closure ----------------------------------------

    def produce(self, job_id: str) -> Product:
        job = self.world.job(job_id)
        if job.kind == JobKind.TRAIN.value:
            return self._trained_version(job)
        return self._generated_images(job)

    def _trained_version(self, job: Job) -> Product:
        """A version directory trained from the user's head, as ``worker.training`` reads it."""
        store = self.world.store
        with self.factory() as session:
            chain = protocol.user_lineage(session, user_id=job.user_id)
        version_id = new_id()
        path = store.adapter_dir(user_id=job.user_id, version_id=version_id)
        store.write_bytes(f"{path}/lora.safetensors", version_id.encode())
        store.write_bytes(f"{path}/fisher.safetensors", version_id.encode())
        publication = protocol.Publication(
            version_id=version_id,
            parent_id=chain[-1].id if chain else None,
            task_index=len(chain) + 1,
            path=path,
            files=store.describe_dir(path),
            method="dsc_ewc_dc",
            metrics={},
        )

        def publish(token: int) -> None:
            protocol.publish_training(
                self.factory, job_id=job.id, fencing_token=token, publication=publication, now=self.now
            )

        return Product(paths=[path], publish=publish)

    def _generated_images(self, job: Job) -> Product:
        store = self.world.store
        generation = protocol.ensure_generation(self.factory, job_id=job.id)
        image = store.write_bytes(store.new_image_path(), b"png")
        images = [{"path": image.path, "sha256": image.sha256, "width": 1, "height": 1}]

        def publish(token: int) -> None:
            protocol.publish_generation(
                self.factory,
                job_id=job.id,
                fencing_token=token,
                generation_id=generation.id,
                images=images,
                now=self.now,
            )

        return Product(paths=[image.path], publish=publish)

    # ---- reading the database ---------------------------------------------------------------------

    def _job_count(self) -> int:
        with self.factory() as session:
            return int(session.scalar(select(func.count()).select_from(Job)) or 0)

    def _predecessors_final(self, job_id: str) -> bool:
        with self.factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            states = session.scalars(
                select(Job.state).where(
                    Job.user_id == job.user_id, Job.kind == JobKind.TRAIN.value, Job.seq < job.seq
                )
            )
            return all(state in FINAL for state in states)

    def assert_predecessors_final(self, job_id: str) -> None:
        """A train job runs only when the user's earlier train jobs are final (generations do not wait)."""
        if self.world.job(job_id).kind == JobKind.TRAIN.value:
            assert self._predecessors_final(job_id), "a task started before earlier ones ended"

    # ---- invariants ----------------------------------------------------------------------------------

    @invariant()
    def invariants_hold(self) -> None:
        with self.factory() as session:
            jobs = {job.id: job for job in session.scalars(select(Job))}
            # Loaded whole, so that ``user_lineage`` below reads them from the session, not the database.
            versions = Counter(version.job_id for version in session.scalars(select(AdapterVersion)))
            imaged = set(
                session.scalars(
                    select(Generation.job_id).join(
                        GeneratedImage, GeneratedImage.generation_id == Generation.id
                    )
                )
            )
            uploads = Counter(session.scalars(select(Upload.job_id)))
            chains = {user: protocol.user_lineage(session, user_id=user) for user in self.users}
            heads = {user.id: user.next_task_index for user in session.scalars(select(User))}
            releases = Counter(self._release_records(session))
            busy_workers = session.scalar(
                select(func.count()).select_from(WorkerSeen).where(WorkerSeen.current_job_id.is_not(None))
            )
        self._check_transitions(jobs)
        for job in jobs.values():
            self._check_job(job, versions=versions, imaged=imaged, uploads=uploads)
            assert releases[job.id] == int(job.state in FINAL), (
                f"job {job.id} released {releases[job.id]} times"
            )
        for user, chain in chains.items():
            self._check_lineage(user, chain, jobs=jobs, next_task_index=heads[user])
        assert not busy_workers, "a worker row names a job only while the worker runs it"

    @staticmethod
    def _release_records(session: Session) -> Iterator[str]:
        """The job id of every final transition's audit record (``release`` writes one each)."""
        rows = session.execute(select(AuditLog.action, AuditLog.subject, AuditLog.details))
        for action, subject, details in rows:
            if action == "adapter.publish":
                yield details["job_id"]
            elif action in {f"job.{state}" for state in FINAL}:
                yield subject

    def _check_transitions(self, jobs: dict[str, Job]) -> None:
        """Only documented transitions, tokens bumped by claims only, and per-user order."""
        finished: set[str] = set()
        for step in self.world.transitions():
            move = (step.old_state, step.new_state)
            assert move in CLAIMS | ENDS, f"undocumented transition {move} of job {step.job_id}"
            assert step.new_token == step.old_token + (1 if move in CLAIMS else 0), step
            if step.new_state in FINAL:
                finished.add(step.job_id)
            job = jobs[step.job_id]
            if move in CLAIMS and job.kind == JobKind.TRAIN.value:
                earlier = [j.id for j in jobs.values() if self._precedes(j, job)]
                assert set(earlier) <= finished, "a task started before earlier ones ended"

    @staticmethod
    def _precedes(earlier: Job, job: Job) -> bool:
        return (
            earlier.user_id == job.user_id and earlier.kind == JobKind.TRAIN.value and earlier.seq < job.seq
        )

    def _check_job(
        self, job: Job, *, versions: Counter[str], imaged: set[str], uploads: Counter[str]
    ) -> None:
        succeeded = job.state == JobState.SUCCEEDED.value
        published = versions[job.id] if job.kind == JobKind.TRAIN.value else int(job.id in imaged)
        assert versions[job.id] <= 1 and self.publishes[job.id] <= 1, f"job {job.id} published more than once"
        assert published == int(succeeded), f"job {job.id} is {job.state} with {published} publications"
        assert not (succeeded and job.id in self.accepted_cancels), f"job {job.id} published after its cancel"
        assert not (succeeded and job.cancel_requested), f"job {job.id} published with a cancel requested"
        running = job.state == RUNNING
        assert (job.lease_owner is not None, job.lease_expires_at is not None) == (running, running), (
            job.state
        )
        assert job.fencing_token == job.attempts <= job.max_attempts
        live = [a for a in self.attempts_of[job.id] if a.believes_live(self.now)]
        assert len(live) <= 1, f"two workers hold a live lease of job {job.id}"
        if job.kind == JobKind.TRAIN.value and job.state not in FINAL:
            assert uploads[job.id] == UPLOADS_PER_JOB, "raw images are kept until the job is final"

    def _check_lineage(
        self, user: str, chain: list[AdapterVersion], *, jobs: dict[str, Job], next_task_index: int
    ) -> None:
        """The user's versions form one chain: a version per succeeded task, in task order."""
        succeeded = sorted(
            (
                j
                for j in jobs.values()
                if j.user_id == user and j.kind == JobKind.TRAIN.value and j.state == "succeeded"
            ),
            key=lambda j: j.seq,
        )
        assert [v.job_id for v in chain] == [j.id for j in succeeded], (
            "the lineage is the chain of succeeded tasks"
        )
        assert [v.task_index for v in chain] == list(range(1, len(chain) + 1))
        assert [v.parent_id for v in chain] == [None, *(v.id for v in chain)][: len(chain)]
        assert next_task_index == len(chain) + 1


def run_model(world: ModelWorld, *, hypothesis_settings: Any) -> None:
    """Run the state machine on ``world`` (each example starts from an empty database)."""
    run_state_machine_as_test(lambda: JobProtocolModel(world), settings=hypothesis_settings)
