"""What a run under faults must leave: every accepted job done once, intact lineages, no raw byte,
no orphan (docs/faults.md, "What is checked"). Used by the fault-injection tests and the soak.

* **exactly once**: a job the API accepted is ``succeeded`` and its effect exists once — one
  adapter version and one ``adapter.publish`` record for a train job, the requested number of
  images for a generation, one final-transition audit record; **lost**: accepted but missing,
  unfinished or failed; **run twice**: any effect present more than once;
* **lineage**: per user, the versions form one chain from task 1 to the head (parent of task n is
  task n−1, the head is the newest), one version per ready concept, every file matching its sha256;
* **raw bytes**: no sentinel of an upload in any file under the given folders or in the given
  blobs (database dumps, Redis), and no ``uploads`` row;
* **orphans**: the service's own sweeps (``core.db.jobs.collect_orphans``, the workspace sweep) run
  as if their grace periods had passed; what still lies in the store that no row or unfinished job
  accounts for is an orphan left.
"""

from __future__ import annotations

import io
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db.jobs import collect_orphans
from core.db.models import (
    AdapterVersion,
    AuditLog,
    Concept,
    GeneratedImage,
    Generation,
    Job,
    Upload,
    User,
    utcnow,
)
from core.storage import LocalStore, sha256_file
from core.storage.base import ADAPTERS, CHECKPOINTS, IMAGES, STAGING, UPLOADS
from worker.workspace import STAGED, Workspace

FINAL_ACTIONS = ("job.succeeded", "job.failed", "job.cancelled")
SWEEP_AFTER = timedelta(hours=2)  # past every grace period of the orphan sweeps


@dataclass(frozen=True)
class Accepted:
    """A job the API answered 202 for: its id, kind and (generations) the images it asked for."""

    job_id: str
    kind: str
    images: int = 0


@dataclass(frozen=True)
class Fates:
    exactly_once: list[str]
    lost: list[str]
    run_twice: list[str]


def sentinel_image(seed: int, *, side: int = 24) -> tuple[bytes, list[bytes]]:
    """A random-noise PNG with a unique trailer, and the byte strings that betray it anywhere.

    The trailer (``MNEMO-SENTINEL-<uuid>``) travels with the raw request; the API re-encodes from
    pixels and drops it, so the stored upload is found by a slice of its own compressed pixel data
    (unique for noise) — both are searched.
    """
    import numpy as np
    from PIL import Image

    from core.uploads import UploadLimits, clean_image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    trailer = f"MNEMO-SENTINEL-{uuid.uuid4().hex}".encode()
    stored = clean_image(
        buffer.getvalue(),
        limits=UploadLimits(max_bytes=10**7, max_files=1, min_files=1, max_pixels=10**7),
        label="x",
    ).png
    middle = len(stored) // 2
    return buffer.getvalue() + trailer, [trailer, stored[middle - 24 : middle + 24]]


def job_fates(session_factory: sessionmaker[Session], accepted: Iterable[Accepted]) -> Fates:
    """Sort the accepted jobs into done exactly once, lost, and run twice."""
    once, lost, twice = [], [], []
    with session_factory() as session:
        finals = Counter(session.scalars(select(AuditLog.subject).where(AuditLog.action.in_(FINAL_ACTIONS))))
        publishes = Counter(
            row.details.get("job_id") or row.subject
            for row in session.scalars(select(AuditLog).where(AuditLog.action == "adapter.publish"))
        )
        for item in accepted:
            job = session.get(Job, item.job_id)
            effects = _effects(session, item)
            if finals[item.job_id] + publishes[item.job_id] > 1 or effects > 1:
                twice.append(item.job_id)
            elif job is None or job.state != "succeeded" or effects == 0:
                lost.append(item.job_id)
            else:
                once.append(item.job_id)
    return Fates(exactly_once=once, lost=lost, run_twice=twice)


def _effects(session: Session, item: Accepted) -> int:
    """How many times the job's effect exists (1 is right; a generation counts its image sets)."""
    if item.kind == "train":
        return int(
            session.scalar(
                select(func.count()).select_from(AdapterVersion).where(AdapterVersion.job_id == item.job_id)
            )
        )
    images = session.scalar(
        select(func.count())
        .select_from(GeneratedImage)
        .join(Generation, Generation.id == GeneratedImage.generation_id)
        .where(Generation.job_id == item.job_id)
    )
    return -(-int(images) // max(item.images, 1))  # ceil: n images are one set, n+1 are two


def lineage_violations(session_factory: sessionmaker[Session], store: LocalStore) -> list[str]:
    """What breaks a user's lineage: a fork, a gap, a wrong head, a missing or altered file."""
    problems = []
    with session_factory() as session:
        for user in session.scalars(select(User)):
            versions = list(
                session.scalars(
                    select(AdapterVersion)
                    .where(AdapterVersion.user_id == user.id)
                    .order_by(AdapterVersion.task_index)
                )
            )
            ready = session.scalar(
                select(func.count())
                .select_from(Concept)
                .where(Concept.user_id == user.id, Concept.status == "ready")
            )
            problems += _chain_problems(user, versions, ready=int(ready), store=store)
    return problems


def _chain_problems(
    user: User, versions: list[AdapterVersion], *, ready: int, store: LocalStore
) -> list[str]:
    problems = []
    if [v.task_index for v in versions] != list(range(1, len(versions) + 1)):
        problems.append(f"user {user.id}: task indices {[v.task_index for v in versions]}")
    for parent, child in zip([None, *versions], versions, strict=False):
        if child.parent_id != (parent.id if parent else None):
            problems.append(f"version {child.id}: parent {child.parent_id}, expected {parent and parent.id}")
    head = versions[-1].id if versions else None
    if user.current_adapter_version_id != head:
        problems.append(f"user {user.id}: head {user.current_adapter_version_id}, newest {head}")
    if len(versions) != ready or user.next_task_index != len(versions) + 1:
        problems.append(f"user {user.id}: {len(versions)} versions, {ready} ready concepts")
    for version in versions:
        for name, meta in version.files.items():
            path = store.resolve(f"{version.path}/{name}")
            if not path.is_file() or sha256_file(path) != meta["sha256"]:
                problems.append(f"version {version.id}: {name} missing or altered")
    return problems


def residue(secrets: Iterable[bytes], *, folders: Iterable[Path], blobs: dict[str, bytes]) -> list[str]:
    """Every file under ``folders`` and every named blob that holds one of ``secrets``."""
    secrets = [s for s in secrets if s]
    found = []
    for folder in folders:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            try:
                data = path.read_bytes()
            except OSError:  # a transient file (a journal) went away meanwhile
                continue
            if any(secret in data for secret in secrets):
                found.append(str(path))
    for name, blob in blobs.items():
        if any(secret in blob or secret.hex().encode() in blob for secret in secrets):
            found.append(name)
    return found


def upload_rows(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Upload)))


def sweep_orphans(session_factory: sessionmaker[Session], *, data_dir: Path) -> tuple[int, list[str]]:
    """Run the service's sweeps as if their grace had passed; returns (removed, still unaccounted)."""
    store = LocalStore(data_dir)
    removed = collect_orphans(session_factory, store, older_than_seconds=3600.0, now=utcnow() + SWEEP_AFTER)
    removed += Workspace(root=data_dir).sweep(older_than_seconds=-SWEEP_AFTER.total_seconds())
    return len(removed), unaccounted_files(session_factory, data_dir=data_dir)


def unaccounted_files(session_factory: sessionmaker[Session], *, data_dir: Path) -> list[str]:
    """Files in the store's folders that no row names and no unfinished job owns."""
    with session_factory() as session:
        named = set(session.scalars(select(Upload.path))) | set(session.scalars(select(GeneratedImage.path)))
        versions = set(session.scalars(select(AdapterVersion.path)))
        unfinished = set(session.scalars(select(Job.id).where(Job.state.in_(("queued", "running")))))
    left = []
    for folder in (UPLOADS, IMAGES, ADAPTERS, STAGING, CHECKPOINTS, STAGED):
        for path in sorted(p for p in (data_dir / folder).rglob("*") if p.is_file()):
            relative = path.relative_to(data_dir).as_posix()
            parts = relative.split("/")
            if relative in named or "/".join(parts[:3]) in versions:
                continue
            if folder in (STAGING, CHECKPOINTS) and len(parts) > 1 and parts[1] in unfinished:
                continue
            left.append(relative)
    return left
