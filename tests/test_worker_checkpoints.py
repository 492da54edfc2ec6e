"""A task's checkpoint reaches the object store as it changes, and an attempt on another host
starts from it; with the local store nothing is copied (the workspace is the store)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch

from core.db.cleanup import job_output_paths, remove_files
from core.engine.checkpoint import FILENAME, Checkpointer
from core.storage import LocalStore
from tests.object_store import MotoS3
from worker.checkpoints import CHECKPOINT_FILE, CheckpointMirror
from worker.workspace import Workspace


def _save(folder: Path, step: int) -> None:
    Checkpointer(folder, fingerprint="task-1").save({"step": step, "params": {"w": torch.full((3,), step)}})


def test_the_checkpoint_follows_the_task_to_another_host(tmp_path: Path, moto_s3: MotoS3) -> None:
    assert CHECKPOINT_FILE == FILENAME
    bucket = moto_s3.new_bucket()
    store, job_id = moto_s3.store(bucket), str(uuid.uuid4())
    host_a = CheckpointMirror(store=store, workspace=Workspace(root=tmp_path / "a"), job_id=job_id)
    reports: list[tuple] = []
    progress = host_a.watch(lambda *args: reports.append(args))

    folder = host_a.restore()  # nothing stored yet: an empty start
    assert folder == tmp_path / "a" / "checkpoints" / job_id and not folder.exists()
    progress("train", 1, 10, 0.5)
    assert moto_s3.keys(bucket) == []  # no checkpoint yet, nothing copied
    _save(folder, 5)
    progress("train", 6, 10, 0.4)
    key = f"checkpoints/{job_id}/{CHECKPOINT_FILE}"
    assert moto_s3.keys(bucket) == [key] and reports == [("train", 1, 10, 0.5), ("train", 6, 10, 0.4)]
    assert not host_a.push()  # unchanged: not copied again
    _save(folder, 10)
    assert host_a.push() and len(moto_s3.keys(bucket)) == 1

    host_b = CheckpointMirror(store=store, workspace=Workspace(root=tmp_path / "b"), job_id=job_id)
    resumed = Checkpointer(host_b.restore(), fingerprint="task-1").load()
    assert (
        resumed is not None
        and resumed["step"] == 10
        and torch.equal(resumed["params"]["w"], torch.full((3,), 10))
    )
    assert not host_b.push()  # what was fetched is not sent back
    assert Checkpointer(host_b.folder, fingerprint="another task").load() is None

    remove_files(store, job_output_paths(store, job_id=job_id))  # the job is final
    assert moto_s3.keys(bucket) == []


def test_with_the_local_store_the_workspace_is_the_store(tmp_path: Path) -> None:
    store, job_id = LocalStore(tmp_path), str(uuid.uuid4())
    mirror = CheckpointMirror(store=store, workspace=Workspace(root=tmp_path), job_id=job_id)
    _save(mirror.restore(), 3)
    assert not mirror.push()
    assert [p.name for p in (tmp_path / "checkpoints" / job_id).iterdir()] == [FILENAME]


def test_a_task_stopped_on_one_host_resumes_on_another_from_the_bucket(
    tmp_path: Path, moto_s3: MotoS3
) -> None:
    """The engine on host A checkpoints, the mirror copies it to the bucket, A stops; host B
    fetches it and finishes the task with the same weights as an uninterrupted run."""
    from core.engine.backbone import build_tiny_backbone
    from core.engine.config import TINY
    from core.engine.errors import TaskCancelled
    from core.engine.state import UserState
    from core.engine.task import run_task
    from tests.engine.conftest import COLOURS, concept_images

    task = dict(
        backbone=build_tiny_backbone(seed=0),
        state=UserState.empty(),
        concept="mug",
        class_word="cup",
        images=concept_images(COLOURS[0]),
        method="dsc_ewc_dc",
        config=TINY.with_(train_steps=6, consolidation_fraction=0.5, checkpoint_every=2),
        prior_cache_dir=tmp_path / "prior",
    )
    uninterrupted = run_task(**task).state
    bucket = moto_s3.new_bucket()
    store, job_id = moto_s3.store(bucket), str(uuid.uuid4())

    host_a = CheckpointMirror(store=store, workspace=Workspace(root=tmp_path / "a"), job_id=job_id)
    seen: dict[str, object] = {}

    def progress(phase: str, step: int, total: int, loss: float | None) -> None:
        seen.update(phase=phase, step=step)

    def stop_after_the_copy() -> bool:  # step 3's report copied step 2's checkpoint
        return seen == {"phase": "train", "step": 3}

    with pytest.raises(TaskCancelled):
        run_task(
            **task,
            progress=host_a.watch(progress),
            should_stop=stop_after_the_copy,
            checkpoint_dir=host_a.restore(),
        )
    assert moto_s3.keys(bucket) == [f"checkpoints/{job_id}/{CHECKPOINT_FILE}"]

    host_b = CheckpointMirror(store=store, workspace=Workspace(root=tmp_path / "b"), job_id=job_id)
    steps: list[tuple[str, int]] = []
    resumed = run_task(
        **task,
        progress=host_b.watch(lambda phase, step, total, loss: steps.append((phase, step))),
        checkpoint_dir=host_b.restore(),
    ).state
    assert next(step for phase, step in steps if phase == "train") == 3  # resumed after step 2
    for key, tensor in uninterrupted.task_adapters[-1].items():
        assert torch.equal(tensor, resumed.task_adapters[-1][key]), key
    assert torch.equal(uninterrupted.token_embeddings["<mug>"], resumed.token_embeddings["<mug>"])
