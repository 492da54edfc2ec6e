"""The SQL job protocol on SQLite and PostgreSQL, in-process (no Celery, no engine).

Claims respect the per-user order and fence stale attempts; publish is once per job and
compare-and-swaps the user's head; the reconciler re-sends lost work and gives up after the
attempt cap, deleting the raw uploads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import jobs as protocol
from core.db.enqueue import TrainRequest, create_train_job
from core.db.models import AdapterVersion, Concept, FisherState, Job, Outbox, Upload, User, new_id, utcnow
from core.storage import LocalStore as ArtifactStore

LEASE = 60.0


def _train_job(
    factory: sessionmaker[Session], store: ArtifactStore, *, user_id: str, name: str, attempts: int = 3
) -> str:
    stored = [store.write_bytes(store.new_upload_path(), f"{name}-{i}".encode() * 10) for i in range(2)]
    with factory() as session:
        _, job = create_train_job(
            session,
            user_id=user_id,
            request=TrainRequest(name=name, class_word=None, method="dsc_ewc_dc", steps=None),
            uploads=stored,
            max_attempts=attempts,
        )
        session.commit()
        return job.id


def _publication(store: ArtifactStore, *, user_id: str, parent_id: str | None, task_index: int):
    version_id = new_id()
    path = store.adapter_dir(user_id=user_id, version_id=version_id)
    store.write_bytes(f"{path}/adapter.safetensors", f"adapter {version_id}".encode())
    store.write_bytes(f"{path}/fisher.safetensors", f"fisher {version_id}".encode())
    return protocol.Publication(
        version_id=version_id,
        parent_id=parent_id,
        task_index=task_index,
        path=path,
        files=store.describe_dir(path),
        method="dsc_ewc_dc",
        metrics={"final_loss": 0.5},
    )


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "data")


def test_claims_run_a_users_tasks_in_order_and_fence_stale_attempts(
    session_factory: sessionmaker[Session], store: ArtifactStore, new_user: Callable[..., tuple[str, str]]
) -> None:
    alice, _ = new_user(session_factory, "alice")
    bob, _ = new_user(session_factory, "bob")
    first = _train_job(session_factory, store, user_id=alice, name="dog")
    with session_factory() as session:
        first_paths = list(session.scalars(select(Upload.path).where(Upload.job_id == first)))
    second = _train_job(session_factory, store, user_id=alice, name="cat")
    bobs = _train_job(session_factory, store, user_id=bob, name="car")

    waiting = protocol.claim_job(session_factory, job_id=second, worker_id="w1", lease_seconds=LEASE)
    assert waiting.outcome is protocol.ClaimOutcome.WAIT
    claim = protocol.claim_job(session_factory, job_id=first, worker_id="w1", lease_seconds=LEASE)
    assert (claim.outcome, claim.attempt, claim.fencing_token) == (protocol.ClaimOutcome.CLAIMED, 1, 1)
    with session_factory() as session:  # a running job never reads phase "queued"
        assert session.get(Job, first).progress["phase"] == "starting"
    # Another user's job does not wait for alice's.
    other = protocol.claim_job(session_factory, job_id=bobs, worker_id="w2", lease_seconds=LEASE)
    assert other.outcome is protocol.ClaimOutcome.CLAIMED
    # A duplicate delivery while the lease is live does nothing.
    duplicate = protocol.claim_job(session_factory, job_id=first, worker_id="w2", lease_seconds=LEASE)
    assert duplicate.outcome is protocol.ClaimOutcome.SKIP

    # The lease expires (the worker died): a new attempt takes over with a new fencing token.
    later = utcnow() + timedelta(seconds=LEASE + 1)
    retaken = protocol.claim_job(
        session_factory, job_id=first, worker_id="w2", lease_seconds=LEASE, now=later
    )
    assert (retaken.outcome, retaken.attempt, retaken.fencing_token) == (protocol.ClaimOutcome.CLAIMED, 2, 2)
    stale_beat = protocol.heartbeat(session_factory, job_id=first, fencing_token=1, lease_seconds=LEASE)
    assert not stale_beat.alive
    stale = _publication(store, user_id=alice, parent_id=None, task_index=1)
    with pytest.raises(protocol.LeaseLostError):
        protocol.publish_training(session_factory, job_id=first, fencing_token=1, publication=stale)

    live_beat = protocol.heartbeat(
        session_factory,
        job_id=first,
        fencing_token=2,
        lease_seconds=LEASE,
        progress={"phase": "train", "step": 3, "total": 10, "loss": 0.25},
    )
    assert live_beat.alive and not live_beat.cancel_requested
    fresh = _publication(store, user_id=alice, parent_id=None, task_index=1)
    version = protocol.publish_training(session_factory, job_id=first, fencing_token=2, publication=fresh)
    with session_factory() as session:  # done, with the last phase's counter at its total
        assert session.get(Job, first).progress == {"phase": "done", "step": 10, "total": 10, "loss": 0.25}
    # Publishing again (a duplicate that got this far) writes nothing.
    with pytest.raises(protocol.LeaseLostError):
        protocol.publish_training(session_factory, job_id=first, fencing_token=2, publication=fresh)
    assert protocol.delete_raw_uploads(session_factory, store, job_id=first) == 2

    with session_factory() as session:
        assert session.scalar(select(User.current_adapter_version_id).where(User.id == alice)) == version.id
        assert session.scalar(select(func.count()).select_from(AdapterVersion)) == 1
        assert session.scalar(select(func.count()).select_from(FisherState)) == 1
        concept = session.scalar(select(Concept).where(Concept.name == "dog"))
        assert concept is not None and (concept.status, concept.task_index) == ("ready", 1)
        assert concept.images_deleted_at is not None
        assert session.scalar(select(func.count()).select_from(Upload).where(Upload.job_id == first)) == 0
        # Finishing the first task queued a message for alice's next one.
        assert session.scalar(select(func.count()).select_from(Outbox).where(Outbox.job_id == second)) == 2
    assert not store.raw_upload_bytes_remain(first_paths)
    assert store.raw_upload_bytes_remain()  # the second task's images are still needed

    # Now the second task can run, and it must continue from version 1.
    claim2 = protocol.claim_job(session_factory, job_id=second, worker_id="w1", lease_seconds=LEASE)
    assert claim2.outcome is protocol.ClaimOutcome.CLAIMED
    wrong_parent = _publication(store, user_id=alice, parent_id=None, task_index=2)
    with pytest.raises(protocol.LineageConflictError):
        protocol.publish_training(
            session_factory, job_id=second, fencing_token=claim2.fencing_token, publication=wrong_parent
        )
    right = _publication(store, user_id=alice, parent_id=version.id, task_index=2)
    protocol.publish_training(
        session_factory, job_id=second, fencing_token=claim2.fencing_token, publication=right
    )
    with session_factory() as session:
        chain = protocol.user_lineage(session, user_id=alice)
    assert [v.id for v in chain] == [version.id, right.version_id]


def test_reconciler_resends_expired_jobs_and_gives_up_after_the_attempt_cap(
    session_factory: sessionmaker[Session], store: ArtifactStore, new_user: Callable[..., tuple[str, str]]
) -> None:
    alice, _ = new_user(session_factory, "alice")
    job_id = _train_job(session_factory, store, user_id=alice, name="dog", attempts=2)
    with session_factory.begin() as session:  # the API's message went out
        for row in session.scalars(select(Outbox)):
            row.sent_at = utcnow()
    now = utcnow()
    for attempt in (1, 2):
        claim = protocol.claim_job(
            session_factory, job_id=job_id, worker_id="w", lease_seconds=LEASE, now=now
        )
        assert claim.outcome is protocol.ClaimOutcome.CLAIMED and claim.attempt == attempt
        now += timedelta(seconds=LEASE + 1)  # the worker is killed; its lease runs out
        report = protocol.reconcile(session_factory, store, redispatch_after_seconds=LEASE, now=now)
        if attempt == 1:
            assert report.redispatched == [job_id] and not report.failed
            again = protocol.reconcile(session_factory, store, redispatch_after_seconds=LEASE, now=now)
            assert again.redispatched == []  # one message per expiry, not one per pass
    assert report.failed == [job_id] and report.cleaned == [job_id]
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "failed" and "attempts" in (job.error or "")
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
    assert not store.raw_upload_bytes_remain()


def test_cancel_before_the_claim_makes_the_delivery_a_no_op(
    session_factory: sessionmaker[Session], store: ArtifactStore, new_user: Callable[..., tuple[str, str]]
) -> None:
    alice, _ = new_user(session_factory, "alice")
    job_id = _train_job(session_factory, store, user_id=alice, name="dog")
    job = protocol.request_cancel(session_factory, job_id=job_id)
    assert job.state == "cancelled"
    claim = protocol.claim_job(session_factory, job_id=job_id, worker_id="w", lease_seconds=LEASE)
    assert claim.outcome is protocol.ClaimOutcome.SKIP
    report = protocol.reconcile(session_factory, store, redispatch_after_seconds=0, now=utcnow())
    assert report.cleaned == [job_id] and not store.raw_upload_bytes_remain()


def test_orphan_collection_removes_only_old_unreferenced_leftovers(
    session_factory: sessionmaker[Session], store: ArtifactStore, new_user: Callable[..., tuple[str, str]]
) -> None:
    import os

    alice, _ = new_user(session_factory, "alice")
    done = _train_job(session_factory, store, user_id=alice, name="dog")
    claim = protocol.claim_job(session_factory, job_id=done, worker_id="w", lease_seconds=LEASE)
    published = _publication(store, user_id=alice, parent_id=None, task_index=1)
    protocol.publish_training(
        session_factory, job_id=done, fencing_token=claim.fencing_token, publication=published
    )
    running = _train_job(session_factory, store, user_id=alice, name="cat")
    protocol.claim_job(session_factory, job_id=running, worker_id="w", lease_seconds=LEASE)

    orphan_version = _publication(store, user_id=alice, parent_id=None, task_index=1).path  # never published
    leftovers = {
        orphan_version,
        store.write_bytes(f"{store.staging_dir(job_id=done)}/adapter.safetensors", b"x").path.rsplit("/", 1)[
            0
        ],
        store.write_bytes(f"{store.checkpoint_dir(job_id=done)}/task.ckpt", b"x").path.rsplit("/", 1)[0],
        store.write_bytes(store.new_image_path(), b"png").path,
    }
    kept = {
        published.path,
        store.write_bytes(f"{store.checkpoint_dir(job_id=running)}/task.ckpt", b"x").path.rsplit("/", 1)[0],
    }
    for relative in leftovers | kept:
        os.utime(store.resolve(relative), (0, 0))
    fresh = store.write_bytes(store.new_image_path(), b"new").path  # young: may be in flight

    removed = protocol.collect_orphans(session_factory, store, older_than_seconds=3600)
    assert set(removed) == leftovers
    assert not any(store.exists(p) for p in leftovers)
    assert all(store.exists(p) for p in kept | {fresh})


def test_every_final_transition_writes_one_audit_record(
    session_factory: sessionmaker[Session], store: ArtifactStore, new_user: Callable[..., tuple[str, str]]
) -> None:
    from core.db.enqueue import GenerateRequest, create_generate_job
    from core.db.models import AuditLog

    alice, _ = new_user(session_factory, "alice")
    request = GenerateRequest(prompt="a dog", negative_prompt="", n=1, steps=1, guidance_scale=1.0, seed=0)
    with session_factory() as session:
        generation, job = create_generate_job(session, user_id=alice, request=request, max_attempts=3)
        session.commit()
        generated, generation_id = job.id, generation.id
    claim = protocol.claim_job(session_factory, job_id=generated, worker_id="w", lease_seconds=LEASE)
    image = store.write_bytes(store.new_image_path(), b"png")
    protocol.publish_generation(
        session_factory,
        job_id=generated,
        fencing_token=claim.fencing_token,
        generation_id=generation_id,
        images=[{"path": image.path, "sha256": image.sha256, "width": 1, "height": 1}],
    )
    trained = _train_job(session_factory, store, user_id=alice, name="dog")
    claim = protocol.claim_job(session_factory, job_id=trained, worker_id="w", lease_seconds=LEASE)
    publication = _publication(store, user_id=alice, parent_id=None, task_index=1)
    protocol.publish_training(
        session_factory, job_id=trained, fencing_token=claim.fencing_token, publication=publication
    )
    failed = _train_job(session_factory, store, user_id=alice, name="cat")
    claim = protocol.claim_job(session_factory, job_id=failed, worker_id="w", lease_seconds=LEASE)
    protocol.fail_job(
        session_factory, job_id=failed, fencing_token=claim.fencing_token, error="x", final=True
    )
    cancelled = _train_job(session_factory, store, user_id=alice, name="owl")
    protocol.request_cancel(session_factory, job_id=cancelled)

    with session_factory() as session:
        entries = session.execute(
            select(AuditLog.action, AuditLog.subject, AuditLog.details).where(
                AuditLog.action.in_(["job.succeeded", "job.failed", "job.cancelled", "adapter.publish"])
            )
        ).all()
    by_action = {action: (subject, details) for action, subject, details in entries}
    assert len(entries) == len(by_action) == 4
    assert by_action["job.succeeded"] == (generated, {"kind": "generate", "images": 1})
    assert by_action["adapter.publish"] == (publication.version_id, {"job_id": trained, "task_index": 1})
    assert by_action["job.failed"] == (failed, {"kind": "train"})
    assert by_action["job.cancelled"] == (cancelled, {"kind": "train"})
