"""The API on the S3 store (moto's server on loopback), on SQLite and PostgreSQL: uploads land in
the bucket, images stream from it or redirect to a presigned URL, and an erasure leaves no object
of the user in the bucket while another user's stay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ApiHarness, encode_image, make_settings, serve_api
from tests.object_store import MotoS3


@pytest.fixture
def s3_api(
    database_url: str, tmp_path: Path, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiHarness]:
    """The API whose store is a fresh bucket (``MNEMO_S3_*`` and the AWS variables in the env)."""
    bucket = moto_s3.new_bucket()
    for name, value in moto_s3.env(bucket, prefix="api-test").items():
        monkeypatch.setenv(name, value)
    yield from serve_api(make_settings(data_dir=tmp_path / "data", database_url=database_url))


def _bucket(harness: ApiHarness) -> str:
    return harness.settings.s3_bucket


def test_uploads_and_images_live_in_the_bucket(s3_api: ApiHarness, moto_s3: MotoS3) -> None:
    user_id, headers = s3_api.user("alice")
    png = encode_image("PNG", size=(24, 24))
    answer = s3_api.client.post(
        "/v1/concepts", headers=headers, data={"name": "mug"}, files=[("images", ("a.png", png, "image/png"))]
    )
    assert answer.status_code == 202, answer.text
    keys = moto_s3.keys(_bucket(s3_api))
    assert len(keys) == 1 and keys[0].startswith("api-test/uploads/")
    assert s3_api.files_under("uploads") == []  # nothing written to the local data directory

    image_id = s3_api.generated_image(user_id=user_id)["image"]
    stored = {k: v for k, v in moto_s3.objects(_bucket(s3_api)).items() if "/images/" in k}
    [(key, data)] = stored.items()
    response = s3_api.client.get(f"/v1/images/{image_id}", headers=headers)
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "image/png" and response.headers["cache-control"] == "no-store"

    moto_s3.client().delete_object(Bucket=_bucket(s3_api), Key=key)
    assert s3_api.client.get(f"/v1/images/{image_id}", headers=headers).status_code == 404


def test_images_redirect_to_a_presigned_url_when_asked(s3_api: ApiHarness) -> None:
    user_id, headers = s3_api.user("alice")
    _, other = s3_api.user("bob")
    image_id = s3_api.generated_image(user_id=user_id)["image"]
    s3_api.settings.s3_presign_seconds = 120
    response = s3_api.client.get(f"/v1/images/{image_id}", headers=headers, follow_redirects=False)
    assert response.status_code == 307 and response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    assert "X-Amz-Expires=120" in location and "X-Amz-Signature=" in location
    assert httpx.get(location).content.startswith(b"\x89PNG")  # no credentials needed
    assert (
        s3_api.client.get(f"/v1/images/{image_id}", headers=other, follow_redirects=False).status_code == 404
    )


def test_erasure_empties_the_bucket_of_the_user(s3_api: ApiHarness, moto_s3: MotoS3) -> None:
    alice_id, alice = s3_api.user("alice")
    bob_id, _ = s3_api.user("bob")
    for user_id in (alice_id, bob_id):
        s3_api.trained_concept(user_id=user_id, name="rex")
        s3_api.generated_image(user_id=user_id)
    png = encode_image("PNG", size=(24, 24))
    queued = s3_api.client.post(
        "/v1/concepts", headers=alice, data={"name": "new"}, files=[("images", ("a.png", png, "image/png"))]
    )
    assert queued.status_code == 202
    before = moto_s3.keys(_bucket(s3_api))
    bob_keys = [k for k in before if bob_id in k] + _keys_of_images(s3_api, bob_id)
    assert len(before) == 7  # 2 x (lora + fisher + image), 1 upload

    response = s3_api.client.delete("/v1/me", headers=alice)
    assert response.status_code == 200 and response.json()["erased"] is True
    after = moto_s3.keys(_bucket(s3_api))
    assert sorted(after) == sorted(bob_keys) and len(after) == 3
    assert not [k for k in after if alice_id in k or "/uploads/" in k]


def _keys_of_images(harness: ApiHarness, user_id: str) -> list[str]:
    from sqlalchemy import select

    from core.db.models import GeneratedImage

    with harness.session_factory() as session:
        paths = session.scalars(select(GeneratedImage.path).where(GeneratedImage.user_id == user_id))
        return [f"api-test/{path}" for path in paths]


def test_readiness_checks_the_bucket(s3_api: ApiHarness, moto_s3: MotoS3) -> None:
    ready = s3_api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["store"] == "ok"
    moto_s3.client().delete_bucket(Bucket=_bucket(s3_api))  # empty: deleted, the API's bucket is gone
    gone = s3_api.client.get("/readyz")
    assert gone.status_code == 503 and gone.json()["checks"]["store"] == "error: ClientError"
