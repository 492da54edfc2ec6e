"""The worker's workspace: adapter versions are staged as verified local copies, gone after use."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from core.db.models import AdapterVersion
from core.storage import ArtifactStore
from tests.conftest import make_settings
from worker.runtime import CorruptVersionError, Runtime
from worker.workspace import STAGED, Workspace


def _version(store: ArtifactStore) -> AdapterVersion:
    path = store.adapter_dir(user_id=str(uuid.uuid4()), version_id=str(uuid.uuid4()))
    store.write_bytes(f"{path}/adapter.safetensors", b"adapter")
    return AdapterVersion(id=str(uuid.uuid4()), path=path, files=store.describe_dir(path))


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_staged_version_is_a_verified_copy_removed_after_use(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the data directory, or from a bucket (moto's S3 server) into the host's workspace."""
    if backend == "s3":
        moto = request.getfixturevalue("moto_s3")
        for name, value in moto.env(moto.new_bucket()).items():
            monkeypatch.setenv(name, value)
    runtime = Runtime(make_settings(data_dir=tmp_path / "data", database_url="sqlite://"))
    assert runtime.workspace.is_store(runtime.store) == (backend == "local")
    version = _version(runtime.store)
    with runtime.staged_version(version) as directory:
        assert (directory / "adapter.safetensors").read_bytes() == b"adapter"
        assert directory.parent == tmp_path / "data" / STAGED
    assert not directory.exists()

    runtime.store.write_bytes(f"{version.path}/adapter.safetensors", b"altered")
    with pytest.raises(CorruptVersionError), runtime.staged_version(version):
        pass
    runtime.store.delete(version.path)
    with pytest.raises(CorruptVersionError), runtime.staged_version(version):
        pass
    assert list((tmp_path / "data" / STAGED).iterdir()) == []


def test_sweep_removes_only_old_staged_copies(tmp_path: Path) -> None:
    workspace = Workspace(root=tmp_path)
    old, young = tmp_path / STAGED / "old", tmp_path / STAGED / "young"
    for folder in (old, young):
        folder.mkdir(parents=True)
    os.utime(old, (0, 0))
    assert workspace.sweep(older_than_seconds=3600) == [old]
    assert young.exists() and not old.exists()
    assert workspace.path("checkpoints/x") == tmp_path / "checkpoints" / "x"
