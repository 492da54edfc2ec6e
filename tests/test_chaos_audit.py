"""The checks of a run under faults (``bench.chaos.audit``, docs/faults.md, "What is checked") find
what they are for, on SQLite and PostgreSQL: a job lost or run twice, a broken lineage, a sentinel
byte anywhere, and an orphan the service's sweeps leave behind."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select, update

from bench.chaos import audit
from core.db.audit import record
from core.db.models import AdapterVersion, GeneratedImage, Job, User
from core.storage import LocalStore
from core.uploads import UploadLimits, clean_image
from tests.conftest import ApiHarness


def _trained(api: ApiHarness, *, user: str, names: tuple[str, ...]) -> list[dict[str, str]]:
    user_id, _ = api.user(user)
    return [api.trained_concept(user_id=user_id, name=name) for name in names]


def test_a_clean_history_passes_every_check(api: ApiHarness) -> None:
    trained = _trained(api, user="alice", names=("dog", "cat"))
    generated = api.generated_image(user_id=_user_id(api, "alice"))
    accepted = [audit.Accepted(job_id=t["job"], kind="train") for t in trained]
    accepted.append(audit.Accepted(job_id=generated["job"], kind="generate", images=1))
    fates = audit.job_fates(api.session_factory, accepted)
    assert (len(fates.exactly_once), fates.lost, fates.run_twice) == (3, [], [])
    assert audit.lineage_violations(api.session_factory, LocalStore(api.settings.data_dir)) == []
    assert audit.sweep_orphans(api.session_factory, data_dir=api.settings.data_dir) == (0, [])


def test_lost_and_twice_run_jobs_are_told_apart(api: ApiHarness) -> None:
    (once, failed, republished) = _trained(api, user="bob", names=("a", "b", "c"))
    generated = api.generated_image(user_id=_user_id(api, "bob"))
    with api.session_factory() as session:
        session.execute(update(Job).where(Job.id == failed["job"]).values(state="failed"))
        again = {"job_id": republished["job"]}
        for _ in range(2):  # the seed writes no publish record; a real publish writes one
            record(session, action="adapter.publish", subject=republished["version"], details=again)
        image = session.get(GeneratedImage, generated["image"])
        session.add(  # a second set of images for the same generation
            GeneratedImage(
                user_id=image.user_id,
                generation_id=image.generation_id,
                path="images/x.png",
                sha256="0",
                width=1,
                height=1,
            )
        )
        session.commit()
    accepted = [audit.Accepted(job_id=t["job"], kind="train") for t in (once, failed, republished)]
    accepted += [audit.Accepted(job_id=generated["job"], kind="generate", images=1)]
    accepted += [audit.Accepted(job_id="00000000-0000-0000-0000-000000000000", kind="train")]
    fates = audit.job_fates(api.session_factory, accepted)
    assert fates.exactly_once == [once["job"]]
    assert fates.lost == [failed["job"], "00000000-0000-0000-0000-000000000000"]
    assert fates.run_twice == [republished["job"], generated["job"]]


def test_a_broken_lineage_and_an_altered_file_are_violations(api: ApiHarness) -> None:
    (first, second) = _trained(api, user="carol", names=("a", "b"))
    store = LocalStore(api.settings.data_dir)
    with api.session_factory() as session:
        version_dir = session.get(AdapterVersion, first["version"]).path
        session.execute(
            update(User).where(User.name == "carol").values(current_adapter_version_id=first["version"])
        )
        session.commit()
    store.resolve(f"{version_dir}/lora.safetensors").write_bytes(b"tampered")
    problems = audit.lineage_violations(api.session_factory, store)
    assert any("head" in p for p in problems) and any("missing or altered" in p for p in problems)
    assert second["version"] in " ".join(problems)


def test_a_sentinel_is_found_in_files_and_blobs(tmp_path: Path) -> None:
    data, secrets = audit.sentinel_image(3)
    stored = clean_image(
        data, limits=UploadLimits(max_bytes=10**6, max_files=1, min_files=1, max_pixels=10**6), label="x"
    )
    assert secrets[0] in data and secrets[0] not in stored.png and secrets[1] in stored.png
    (tmp_path / "a.log").write_bytes(b"... " + secrets[1] + b" ...")
    assert audit.residue(
        secrets, folders=[tmp_path], blobs={"redis": b"", "pg_dump": secrets[0].hex().encode()}
    ) == [
        str(tmp_path / "a.log"),
        "pg_dump",
    ]


def test_unaccounted_files_are_what_no_row_and_no_unfinished_job_owns(api: ApiHarness) -> None:
    (trained,) = _trained(api, user="dave", names=("a",))
    store = LocalStore(api.settings.data_dir)
    with api.session_factory() as session:
        running = session.get(Job, trained["job"])
        running.state = "running"
        session.commit()
    owned = store.write_bytes(f"{store.checkpoint_dir(job_id=trained['job'])}/task.ckpt", b"x").path
    orphans = [
        store.write_bytes(store.new_upload_path(), b"raw").path,
        store.write_bytes(store.new_image_path(), b"png").path,
        store.write_bytes(f"{store.staging_dir(job_id='5d1c3b5e-0000-4000-8000-000000000000')}/x", b"x").path,
    ]
    left = audit.unaccounted_files(api.session_factory, data_dir=api.settings.data_dir)
    assert sorted(left) == sorted(orphans) and owned not in left


def test_the_sweeps_remove_crash_leftovers_and_temporary_files_of_killed_writes(api: ApiHarness) -> None:
    """Regression: a worker killed inside ``write_bytes`` of a generated PNG left ``images/.tmp-*``,
    which the orphan sweep skipped for ever (it took temporary files only under ``uploads/``)."""
    (trained,) = _trained(api, user="erin", names=("a",))
    store = LocalStore(api.settings.data_dir)
    leftovers = [
        store.write_bytes(store.new_upload_path(), b"raw").path,  # an upload request killed before its commit
        store.write_bytes(store.new_image_path(), b"png").path,  # a generation that never published
        store.write_bytes(f"{store.staging_dir(job_id=trained['job'])}/x", b"x").path,
    ]
    killed_write = api.settings.data_dir / "images" / ".tmp-killed"  # as tempfile.mkstemp names it
    killed_write.write_bytes(b"half a png")
    for path in [store.resolve(p) for p in leftovers] + [killed_write]:
        os.utime(path, (0, 0))
    removed, left = audit.sweep_orphans(api.session_factory, data_dir=api.settings.data_dir)
    assert not any(store.exists(p) for p in leftovers) and not killed_write.exists()
    assert removed >= len(leftovers) + 1 and left == []


def _user_id(api: ApiHarness, name: str) -> str:
    with api.session_factory() as session:
        return session.scalar(select(User.id).where(User.name == name))
