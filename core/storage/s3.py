"""The S3-compatible artifact store: the layout of ``core.storage.base`` as objects in one bucket.

A stored path ``uploads/<uuid>`` is the key ``<prefix>uploads/<uuid>``; a stored folder is every
key below ``<prefix><path>/``. Any S3-compatible server works (AWS S3, MinIO, Ceph, moto in the
tests); the client is boto3, with credentials from the standard AWS chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, a profile or an instance role).

Atomic publish (docs/architecture.md, "Storage"): one ``PutObject`` is atomic — a reader sees the
whole object or none — and no multipart upload is ever started, so no invisible parts of a killed
write stay in the bucket. A folder has no rename: ``put_dir`` writes its objects under the new
version's own key (a fresh UUID that no row names yet, so no reader looks there), and the
publish transaction commits the pointer to it in the database; a publish that never commits
leaves keys that the orphan collection removes after an hour.

Deletion removes every version of every key (a versioned bucket would otherwise keep erased data
as noncurrent versions) and checks that nothing is left. Each object records its sha256 in its
metadata (``x-amz-meta-sha256``), so ``describe_dir`` needs no download.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.storage.base import (
    CHUNK,
    UPLOADS,
    ArtifactStore,
    StorageError,
    StoredFile,
    check_relative,
    sha256_bytes,
    sha256_file,
)

if TYPE_CHECKING:
    from core.settings import Settings

DELETE_BATCH = 1000  # keys per DeleteObjects request (the S3 limit)
MISSING = {"404", "NoSuchKey", "NotFound"}
UNVERSIONED = {"NotImplemented", "501", "MethodNotAllowed"}  # a server without ListObjectVersions


class S3Store(ArtifactStore):
    """Files of the service as objects under ``prefix`` in ``bucket``."""

    remote = True

    def __init__(
        self, *, client: Any, bucket: str, prefix: str = "", sse: str = "", sse_kms_key_id: str = ""
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = normalise_prefix(prefix)
        self.write_args: dict[str, str] = {}
        if sse:
            self.write_args["ServerSideEncryption"] = sse
        if sse == "aws:kms" and sse_kms_key_id:
            self.write_args["SSEKMSKeyId"] = sse_kms_key_id

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        """The store of ``MNEMO_S3_*`` (boto3 is imported here: only an S3 deployment needs it)."""
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            # An S3-compatible server (MinIO, Ceph) is addressed by path, AWS by virtual host.
            s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
        )
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url or None,
            region_name=settings.s3_region or None,
            config=config,
        )
        return cls(
            client=client,
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            sse=settings.s3_sse,
            sse_kms_key_id=settings.s3_sse_kms_key_id,
        )

    def check(self) -> None:
        """``HeadBucket``: the endpoint answers, the bucket exists and the credentials reach it."""
        self.client.head_bucket(Bucket=self.bucket)

    def key(self, relative: str) -> str:
        """The object key of a stored relative path (refused if it could leave the store)."""
        return self.prefix + "/".join(check_relative(relative))

    def relative(self, key: str) -> str:
        return key[len(self.prefix) :]

    # ---- writing ---------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> StoredFile:
        """One ``PutObject``: atomic (readers see the old object, or none, until it completes)."""
        digest = sha256_bytes(data)
        self._put(self.key(relative), data, sha256=digest)
        return StoredFile(path=relative, sha256=digest, bytes=len(data))

    def put_dir(self, local: Path, destination: str) -> None:
        """Upload every file of ``local`` below ``destination`` (new keys no row names yet), then
        remove ``local``; on an error the keys written so far are deleted again."""
        base = self.key(destination)
        try:
            for file in sorted(p for p in Path(local).rglob("*") if p.is_file()):
                name = file.relative_to(local).as_posix()
                with file.open("rb") as handle:
                    self._put(f"{base}/{name}", handle, sha256=sha256_file(file))
        except BaseException:
            self.delete(destination)
            raise
        shutil.rmtree(local)

    def _put(self, key: str, body: Any, *, sha256: str) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body, Metadata={"sha256": sha256}, **self.write_args
        )

    # ---- reading ---------------------------------------------------------------------------
    def _get(self, relative: str) -> Any:
        """The open ``GetObject`` body; ``FileNotFoundError`` when there is no such object."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(relative))["Body"]
        except Exception as error:
            if _code(error) in MISSING:
                raise FileNotFoundError(relative) from None
            raise

    def read_bytes(self, relative: str) -> bytes:
        body = self._get(relative)
        with body:
            return body.read()

    def stream(self, relative: str) -> Iterator[bytes]:
        """The object in chunks of ``CHUNK`` bytes, as the server sends them."""
        body = self._get(relative)

        def chunks() -> Iterator[bytes]:
            with body:
                yield from body.iter_chunks(CHUNK)

        return chunks()

    def download_url(self, relative: str, *, expires_seconds: int) -> str | None:
        """A presigned ``GetObject`` URL (signed with this process's credentials; the client
        needs none, only a route to the endpoint)."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key(relative)}, ExpiresIn=expires_seconds
        )

    def exists(self, relative: str) -> bool:
        """A file at ``relative``, or any file below it (a folder)."""
        key = self.key(relative)
        return any(item["Key"] == key or item["Key"].startswith(key + "/") for item in self._list(key))

    def describe_dir(self, relative: str) -> dict[str, dict[str, Any]]:
        """``{name: {"sha256", "bytes"}}`` of every object below the folder, from its metadata
        (hashed from its bytes when an object has none)."""
        base = self.key(relative) + "/"
        described = {}
        for item in self._list(base):
            head = self.client.head_object(Bucket=self.bucket, Key=item["Key"])
            digest = head.get("Metadata", {}).get("sha256") or self._hash(item["Key"])
            described[item["Key"][len(base) :]] = {"sha256": digest, "bytes": int(head["ContentLength"])}
        return dict(sorted(described.items()))

    def _hash(self, key: str) -> str:
        digest = hashlib.sha256()
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        with body:
            for chunk in body.iter_chunks(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def get_dir(self, relative: str, local: Path) -> None:
        """Download every object below the folder into the new local folder ``local``."""
        base = self.key(relative) + "/"
        Path(local).mkdir(parents=True)
        for item in self._list(base):
            target = Path(local).joinpath(*check_relative(item["Key"][len(base) :]))
            target.parent.mkdir(parents=True, exist_ok=True)
            self.client.download_file(self.bucket, item["Key"], str(target))

    def old_entries(
        self, prefix: str, *, depth: int, older_than: float, include_temp: bool = False
    ) -> list[str]:
        """Entries ``depth`` levels below ``prefix`` whose newest object is older than
        ``older_than``. Writes leave no temporary objects, so ``include_temp`` changes nothing."""
        newest: dict[str, float] = {}
        levels = len(check_relative(prefix)) + depth
        for item in self._list(self.key(prefix) + "/"):
            parts = self.relative(item["Key"]).split("/")
            if len(parts) < levels:
                continue
            entry = "/".join(parts[:levels])
            newest[entry] = max(newest.get(entry, 0.0), item["LastModified"].timestamp())
        return sorted(entry for entry, changed in newest.items() if changed < older_than)

    def _list(self, key_prefix: str) -> Iterator[dict[str, Any]]:
        """Every current object whose key starts with ``key_prefix``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=key_prefix)
        for page in pages:
            yield from page.get("Contents", [])

    def _objects(self, relative: str) -> list[dict[str, str]]:
        """Every version and delete marker of the key ``relative`` and of the keys below it (the
        current objects only where the server has no versions: Cloudflare R2, GCS)."""
        key = self.key(relative)
        try:
            found = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for page in self.client.get_paginator("list_object_versions").paginate(
                    Bucket=self.bucket, Prefix=key
                )
                for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
        except Exception as error:
            if _code(error) not in UNVERSIONED:
                raise
            found = [{"Key": item["Key"]} for item in self._list(key)]
        return [item for item in found if item["Key"] == key or item["Key"].startswith(key + "/")]

    # ---- deleting --------------------------------------------------------------------------
    def delete(self, relative: str) -> None:
        """Remove the object ``relative`` and everything below it, every version; idempotent;
        ``StorageError`` if anything is left."""
        objects = self._objects(relative)
        for start in range(0, len(objects), DELETE_BATCH):
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects[start : start + DELETE_BATCH], "Quiet": True}
            )
            if answer.get("Errors"):
                raise StorageError("the object store refused to delete some objects")
        if self._objects(relative):
            raise StorageError("a deleted path is still present")

    # ---- privacy checks --------------------------------------------------------------------
    def raw_upload_bytes_remain(self, paths: list[str] | None = None) -> bool:
        """True if any object (any version) remains under ``uploads/``, or at one of ``paths``."""
        targets = paths if paths is not None else [UPLOADS]
        return any(self._objects(relative) for relative in targets)


def _code(error: Exception) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (None for any other exception)."""
    response = getattr(error, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def normalise_prefix(prefix: str) -> str:
    """``"mnemo"``, ``"/mnemo/"`` → ``"mnemo/"``; ``""`` stays empty; no ``..`` or empty parts."""
    stripped = prefix.strip("/")
    return "/".join(check_relative(stripped)) + "/" if stripped else ""
