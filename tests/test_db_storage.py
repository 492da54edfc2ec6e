"""The artifact store: atomic writes, safe paths, deletion that verifies, raw-upload checks."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from core.storage import LocalStore as ArtifactStore
from core.storage import StorageError, manifest_sha256, sha256_bytes


def test_atomic_write_and_layout(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    relative = store.new_upload_path()
    assert relative.startswith("uploads/") and uuid.UUID(relative.split("/")[1])
    stored = store.write_bytes(relative, b"pixels")
    assert stored.sha256 == sha256_bytes(b"pixels") and stored.bytes == 6
    assert (tmp_path / relative).read_bytes() == b"pixels"
    store.write_bytes(relative, b"new")
    assert store.read_bytes(relative) == b"new"
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [
        relative.split("/")[1]
    ]  # no temp files left
    assert store.new_image_path().endswith(".png")


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "uploads/../../x", "", ".", "a//b", "uploads/./x"])
def test_paths_outside_the_store_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(StorageError):
        ArtifactStore(tmp_path / "root").resolve(bad)


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "uploads").mkdir(parents=True)
    (root / "uploads" / "link").symlink_to(tmp_path)
    with pytest.raises(StorageError):
        ArtifactStore(root).resolve("uploads/link/secret")


def test_ids_in_paths_must_be_uuids(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(StorageError):
        store.adapter_dir(user_id="../../etc", version_id=str(uuid.uuid4()))
    with pytest.raises(StorageError):
        store.checkpoint_dir(job_id="x")


def test_publish_describe_and_delete_a_version_directory(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    job_id, user_id, version_id = (str(uuid.uuid4()) for _ in range(3))
    staging = store.staging_dir(job_id=job_id)
    store.write_bytes(f"{staging}/lora.safetensors", b"lora")
    store.write_bytes(f"{staging}/sub/state.json", b"{}")
    final = store.adapter_dir(user_id=user_id, version_id=version_id)
    store.publish_dir(staging, final)
    assert not store.exists(staging)
    files = store.describe_dir(final)
    assert files == {
        "lora.safetensors": {"sha256": sha256_bytes(b"lora"), "bytes": 4},
        "sub/state.json": {"sha256": sha256_bytes(b"{}"), "bytes": 2},
    }
    assert manifest_sha256(files) == manifest_sha256(dict(reversed(files.items())))
    store.delete(store.user_adapters_dir(user_id=user_id))
    assert not (tmp_path / "adapters" / user_id).exists()
    store.delete(final)  # idempotent


def test_raw_upload_checks(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    assert not store.raw_upload_bytes_remain()
    paths = [store.write_bytes(store.new_upload_path(), b"raw").path for _ in range(2)]
    assert store.raw_upload_bytes_remain() and store.raw_upload_bytes_remain(paths[:1])
    store.delete_many(paths)
    assert not store.raw_upload_bytes_remain() and not store.raw_upload_bytes_remain(paths)
    assert list(store.iter_raw_upload_files()) == []


def test_the_factory_builds_the_local_store_of_the_data_directory(tmp_path: Path) -> None:
    from core.settings import Settings
    from core.storage import LocalStore, make_store

    store = make_store(Settings(data_dir=tmp_path))
    assert isinstance(store, LocalStore) and store.root == tmp_path.resolve()


def test_local_folders_go_in_and_out_whole(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "root")
    local = tmp_path / "work" / "version"
    (local / "sub").mkdir(parents=True)
    (local / "lora.safetensors").write_bytes(b"lora")
    (local / "sub" / "state.json").write_bytes(b"{}")
    final = store.adapter_dir(user_id=str(uuid.uuid4()), version_id=str(uuid.uuid4()))
    store.put_dir(local, final)  # from outside the root: copied, then renamed into place
    assert not local.exists() and list((tmp_path / "root" / "staging").iterdir()) == []
    assert set(store.describe_dir(final)) == {"lora.safetensors", "sub/state.json"}
    copy = tmp_path / "copy"
    store.get_dir(final, copy)
    assert (copy / "sub" / "state.json").read_bytes() == b"{}"
    store.get_dir(f"{final}-missing", tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_old_entries_skip_young_and_temporary_ones(tmp_path: Path) -> None:
    import os

    store = ArtifactStore(tmp_path)
    old = store.write_bytes(store.new_image_path(), b"old").path
    young = store.write_bytes(store.new_image_path(), b"young").path
    (tmp_path / "images" / ".tmp-partial").write_bytes(b"x")
    for relative in (old, "images/.tmp-partial"):
        os.utime(tmp_path / relative, (0, 0))
    assert store.old_entries("images", depth=1, older_than=1000.0) == [old]
    assert set(store.old_entries("images", depth=1, older_than=2e9)) == {old, young}
    assert store.old_entries("adapters", depth=2, older_than=2e9) == []
