"""The artifact store: the protocol's tests run against both backends — the local directory and
the S3 store on a real S3 endpoint (moto's server on loopback) — then each backend's own rules
(local: atomic renames, paths that escape the root; S3: every version deleted, encryption at
rest, presigned downloads)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from core.storage import ArtifactStore, LocalStore, StorageError, manifest_sha256, sha256_bytes
from core.storage.s3 import S3Store, normalise_prefix
from tests.object_store import MotoS3

BAD_PATHS = ["../x", "/etc/passwd", "uploads/../../x", "", ".", "a//b", "uploads/./x", "a\\b", "a\x00b"]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each backend in turn: a data directory, then a fresh bucket (under a key prefix)."""
    if request.param == "local":
        return LocalStore(tmp_path / "root")
    moto: MotoS3 = request.getfixturevalue("moto_s3")
    return moto.store(moto.new_bucket(), prefix="deployment-a/")


def _version_folder(root: Path) -> Path:
    local = root / "work" / "version"
    (local / "sub").mkdir(parents=True)
    (local / "lora.safetensors").write_bytes(b"lora")
    (local / "sub" / "state.json").write_bytes(b"{}")
    return local


# ---- the protocol, on both backends ------------------------------------------------------------


def test_atomic_write_and_layout(store: ArtifactStore) -> None:
    relative = store.new_upload_path()
    assert relative.startswith("uploads/") and uuid.UUID(relative.split("/")[1])
    stored = store.write_bytes(relative, b"pixels")
    assert stored.sha256 == sha256_bytes(b"pixels") and stored.bytes == 6
    assert store.read_bytes(relative) == b"pixels" and store.exists(relative)
    store.write_bytes(relative, b"new")
    assert store.read_bytes(relative) == b"new"
    everything = store.old_entries("uploads", depth=1, older_than=time.time() + 60, include_temp=True)
    assert everything == [relative]  # no temporary file or object left beside it
    assert store.new_image_path().endswith(".png")


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_paths_outside_the_store_are_refused(store: ArtifactStore, bad: str) -> None:
    for operation in (lambda: store.write_bytes(bad, b"x"), lambda: store.read_bytes(bad)):
        with pytest.raises(StorageError):
            operation()
    with pytest.raises(StorageError):
        store.delete(bad)


def test_ids_in_paths_must_be_uuids(store: ArtifactStore) -> None:
    with pytest.raises(StorageError):
        store.adapter_dir(user_id="../../etc", version_id=str(uuid.uuid4()))
    with pytest.raises(StorageError):
        store.checkpoint_dir(job_id="x")


def test_a_missing_file_is_file_not_found(store: ArtifactStore) -> None:
    missing = store.new_image_path()
    with pytest.raises(FileNotFoundError):
        store.read_bytes(missing)
    with pytest.raises(FileNotFoundError):
        store.stream(missing)  # raised when opened, before any byte is sent
    assert not store.exists(missing)


def test_a_file_streams_in_chunks(store: ArtifactStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    relative = store.write_bytes(store.new_image_path(), data).path
    chunks = list(store.stream(relative))
    assert len(chunks) > 1 and b"".join(chunks) == data


def test_local_folders_go_in_and_out_whole(store: ArtifactStore, tmp_path: Path) -> None:
    local = _version_folder(tmp_path)
    user_id = str(uuid.uuid4())
    final = store.adapter_dir(user_id=user_id, version_id=str(uuid.uuid4()))
    store.put_dir(local, final)
    assert not local.exists()
    files = store.describe_dir(final)
    assert files == {
        "lora.safetensors": {"sha256": sha256_bytes(b"lora"), "bytes": 4},
        "sub/state.json": {"sha256": sha256_bytes(b"{}"), "bytes": 2},
    }
    assert manifest_sha256(files) == manifest_sha256(dict(reversed(files.items())))
    copy = tmp_path / "copy"
    store.get_dir(final, copy)
    assert (copy / "sub" / "state.json").read_bytes() == b"{}"
    store.get_dir(f"{final}-missing", tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []
    assert store.exists(final) and not store.exists(f"{final}-missing")
    store.delete(store.user_adapters_dir(user_id=user_id))
    assert not store.exists(final) and store.describe_dir(final) == {}
    store.delete(final)  # idempotent


def test_raw_upload_checks(store: ArtifactStore) -> None:
    assert not store.raw_upload_bytes_remain()
    paths = [store.write_bytes(store.new_upload_path(), b"raw").path for _ in range(2)]
    assert store.raw_upload_bytes_remain() and store.raw_upload_bytes_remain(paths[:1])
    store.delete_many(paths)
    assert not store.raw_upload_bytes_remain() and not store.raw_upload_bytes_remain(paths)


def test_old_entries_are_grouped_by_depth_and_dated(store: ArtifactStore, tmp_path: Path) -> None:
    before = time.time() - 5
    image = store.write_bytes(store.new_image_path(), b"png").path
    version = store.adapter_dir(user_id=str(uuid.uuid4()), version_id=str(uuid.uuid4()))
    store.put_dir(_version_folder(tmp_path), version)
    later = time.time() + 60
    assert store.old_entries("images", depth=1, older_than=later) == [image]
    assert store.old_entries("adapters", depth=2, older_than=later) == [version]
    assert store.old_entries("images", depth=1, older_than=before) == []
    assert store.old_entries("checkpoints", depth=1, older_than=later) == []


def test_the_factory_builds_the_store_of_the_settings(
    tmp_path: Path, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import Settings
    from core.storage import make_store

    local = make_store(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalStore) and local.root == tmp_path.resolve()

    bucket = moto_s3.new_bucket()
    for name, value in moto_s3.env(bucket, prefix="/tenant/").items():
        monkeypatch.setenv(name, value)  # credentials from the standard AWS variables
    remote = make_store(Settings(data_dir=tmp_path))
    assert isinstance(remote, S3Store) and (remote.bucket, remote.prefix) == (bucket, "tenant/")
    written = remote.write_bytes(remote.new_image_path(), b"png").path
    assert moto_s3.keys(bucket) == [f"tenant/{written}"]
    with pytest.raises(ValueError, match="MNEMO_S3_BUCKET"):
        Settings(store="s3", s3_bucket="")


# ---- the local directory -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_PATHS)
def test_local_paths_outside_the_root_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(StorageError):
        LocalStore(tmp_path / "root").resolve(bad)


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "uploads").mkdir(parents=True)
    (root / "uploads" / "link").symlink_to(tmp_path)
    with pytest.raises(StorageError):
        LocalStore(root).resolve("uploads/link/secret")


def test_a_staging_folder_is_renamed_into_place(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    staging = store.staging_dir(job_id=str(uuid.uuid4()))
    store.write_bytes(f"{staging}/lora.safetensors", b"lora")
    final = store.adapter_dir(user_id=str(uuid.uuid4()), version_id=str(uuid.uuid4()))
    store.publish_dir(staging, final)
    assert not store.exists(staging) and (tmp_path / final / "lora.safetensors").read_bytes() == b"lora"
    store.put_dir(_version_folder(tmp_path / "outside"), f"{final}-2")  # copied via staging/, renamed
    assert list((tmp_path / "staging").iterdir()) == []
    assert list(store.iter_raw_upload_files()) == []


def test_local_old_entries_skip_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    old = store.write_bytes(store.new_image_path(), b"old").path
    young = store.write_bytes(store.new_image_path(), b"young").path
    (tmp_path / "images" / ".tmp-partial").write_bytes(b"x")
    for relative in (old, "images/.tmp-partial"):
        os.utime(tmp_path / relative, (0, 0))
    assert store.old_entries("images", depth=1, older_than=1000.0) == [old]
    assert set(store.old_entries("images", depth=1, older_than=2e9)) == {old, young}
    assert "images/.tmp-partial" in store.old_entries("images", depth=1, older_than=1000.0, include_temp=True)
    assert store.download_url(old, expires_seconds=60) is None  # the API streams local files


# ---- the S3 store ------------------------------------------------------------------------------


def test_s3_delete_removes_every_version(moto_s3: MotoS3) -> None:
    """In a versioned bucket an overwrite or a plain delete keeps old versions: erasure must not."""
    bucket = moto_s3.new_bucket(versioned=True)
    store = moto_s3.store(bucket)
    relative = store.write_bytes(store.new_upload_path(), b"first").path
    store.write_bytes(relative, b"second")
    moto_s3.client().delete_object(Bucket=bucket, Key=relative)  # a delete marker over two versions
    assert len(moto_s3.keys(bucket)) == 3 and store.raw_upload_bytes_remain()
    assert not store.exists(relative)  # no current object...
    store.delete(relative)
    assert moto_s3.keys(bucket) == [] and not store.raw_upload_bytes_remain()  # ...and no version


def test_s3_server_side_encryption_is_asked_for_every_object(moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    store = moto_s3.store(bucket, sse="AES256")
    image = store.write_bytes(store.new_image_path(), b"png").path
    version = store.adapter_dir(user_id=str(uuid.uuid4()), version_id=str(uuid.uuid4()))
    store.put_dir(_version_folder(tmp_path), version)
    client = moto_s3.client()
    keys = moto_s3.keys(bucket)
    assert len(keys) == 3 and image in keys
    assert {client.head_object(Bucket=bucket, Key=k)["ServerSideEncryption"] for k in keys} == {"AES256"}


def test_s3_presigned_download_needs_no_credentials(moto_s3: MotoS3) -> None:
    store = moto_s3.store(moto_s3.new_bucket(), prefix="p")
    relative = store.write_bytes(store.new_image_path(), b"\x89PNG image").path
    url = store.download_url(relative, expires_seconds=60)
    assert url is not None and "X-Amz-Signature=" in url and "/p/images/" in url
    assert "X-Amz-Expires=60" in url and httpx.get(url).content == b"\x89PNG image"  # a plain GET


def test_s3_a_failed_folder_upload_leaves_nothing(
    moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops after the first object of a version: what was written is deleted."""
    bucket = moto_s3.new_bucket()
    store = moto_s3.store(bucket)
    real_put, calls = S3Store._put, []

    def put_then_fail(self: S3Store, key: str, body: object, *, sha256: str) -> None:
        calls.append(key)
        if len(calls) == 2:
            raise ConnectionError("the endpoint went away")
        real_put(self, key, body, sha256=sha256)

    monkeypatch.setattr(S3Store, "_put", put_then_fail)
    local = _version_folder(tmp_path)
    version = store.adapter_dir(user_id=str(uuid.uuid4()), version_id=str(uuid.uuid4()))
    with pytest.raises(ConnectionError):
        store.put_dir(local, version)
    assert len(calls) == 2 and moto_s3.keys(bucket) == [] and local.exists()


def test_s3_prefixes_are_normalised_and_checked() -> None:
    assert normalise_prefix("") == "" and normalise_prefix("a") == "a/"
    assert normalise_prefix("/a/b/") == "a/b/"
    with pytest.raises(StorageError):
        normalise_prefix("a/../b")


class WithoutVersions:
    """A real client to the moto server, answering ListObjectVersions as a server without
    versioning does (Cloudflare R2, Google Cloud Storage: NotImplemented)."""

    def __init__(self, client: object) -> None:
        self._client = client

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def get_paginator(self, name: str) -> object:
        from botocore.exceptions import ClientError

        if name == "list_object_versions":
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no"}}, "ListObjectVersions")
        return self._client.get_paginator(name)


def test_s3_a_server_without_versions_still_deletes_and_checks(moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.new_bucket()
    store = S3Store(client=WithoutVersions(moto_s3.client()), bucket=bucket)
    upload = store.write_bytes(store.new_upload_path(), b"raw").path
    version = store.adapter_dir(user_id=str(uuid.uuid4()), version_id=str(uuid.uuid4()))
    store.put_dir(_version_folder(tmp_path), version)
    assert store.raw_upload_bytes_remain() and len(moto_s3.keys(bucket)) == 3
    store.delete_many([upload, version])
    assert moto_s3.keys(bucket) == [] and not store.raw_upload_bytes_remain()
