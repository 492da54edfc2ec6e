"""A real S3 endpoint for the tests: moto's server mode on a loopback port (never a mocked client).

``MotoS3`` is the running server (the ``moto_s3`` fixture of ``tests/conftest.py``, one per test
session); each test makes its own bucket, and talks to it with plain boto3 or an ``S3Store``.
Service processes reach it through ``env(bucket)``: ``MNEMO_STORE=s3`` and the standard AWS
credential variables.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from core.storage.s3 import S3Store

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class MotoS3:
    endpoint_url: str

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def new_bucket(self, *, versioned: bool = False) -> str:
        """A fresh, empty bucket (versioning on when ``versioned``)."""
        name = f"mnemo-test-{uuid.uuid4().hex[:16]}"
        client = self.client()
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def store(self, bucket: str, *, prefix: str = "", sse: str = "") -> S3Store:
        return S3Store(client=self.client(), bucket=bucket, prefix=prefix, sse=sse)

    def env(self, bucket: str, *, prefix: str = "") -> dict[str, str]:
        """The environment of a service process whose store is ``bucket``."""
        return {
            "MNEMO_STORE": "s3",
            "MNEMO_S3_ENDPOINT_URL": self.endpoint_url,
            "MNEMO_S3_BUCKET": bucket,
            "MNEMO_S3_PREFIX": prefix,
            "AWS_DEFAULT_REGION": REGION,
            **CREDENTIALS,
        }

    def keys(self, bucket: str) -> list[str]:
        """Every key in the bucket, current or not (every version and delete marker)."""
        found = []
        for page in self.client().get_paginator("list_object_versions").paginate(Bucket=bucket):
            found += [item["Key"] for item in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        return sorted(found)

    def objects(self, bucket: str) -> dict[str, bytes]:
        """``{key: bytes}`` of every current object (to search them for raw image bytes)."""
        client, found = self.client(), {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found
