"""POST/GET /v1/concepts over HTTP: the happy path, field validation, and bad uploads storing nothing."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image
from sqlalchemy import func, select

from core.db.models import Concept, Job, Outbox, Upload

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def png(size: tuple[int, int] = (32, 32), color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def form(name: str = "dog", **fields: str) -> dict[str, str]:
    return {"name": name, **fields}


def images(*blobs: bytes, filename: str = "photo.png", content_type: str = "image/png") -> list:
    return [("images", (filename, blob, content_type)) for blob in blobs]


def count(api, model) -> int:  # type: ignore[no-untyped-def]
    with api.session_factory() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_upload_creates_concept_job_uploads_and_outbox_in_one_go(api, image_bytes) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    jpeg = image_bytes("JPEG", size=(48, 40), comment=b"SENTINEL")
    response = api.client.post(
        "/v1/concepts",
        headers=headers,
        data=form("my-dog", class_word="dog", method="ewc_dc", steps="40"),
        files=images(png(), jpeg, filename="IMG 0001 (copy).jpg.php"),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    concept, job = body["concept"], body["job"]
    assert concept["name"] == "my-dog" and concept["token"] == "<my-dog>"
    assert concept["status"] == "queued" and concept["task_index"] is None
    assert concept["method"] == "ewc_dc" and concept["steps"] == 40 and concept["class_word"] == "dog"
    assert concept["job_id"] == job["id"]
    assert job["state"] == "queued" and job["kind"] == "train" and job["seq"] == 1
    assert job["progress"]["phase"] == "queued"
    assert api.dispatches == [1]

    stored = api.files_under("uploads")
    assert len(stored) == 2
    with api.session_factory() as session:
        rows = session.scalars(select(Upload).where(Upload.job_id == job["id"])).all()
        assert sorted(api.settings.data_dir / r.path for r in rows) == stored
        outbox = session.scalars(select(Outbox).where(Outbox.job_id == job["id"])).all()
        assert [o.task_name for o in outbox] == ["mnemo.train"]
        assert session.get(Job, job["id"]).payload["concept_id"] == concept["id"]
    for path in stored:
        assert path.parent == api.settings.data_dir / "uploads"
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and b"SENTINEL" not in data


def test_upload_without_filename_path_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    response = api.client.post(
        "/v1/concepts", headers=headers, data=form(), files=images(png(), filename="../../etc/passwd.png")
    )
    assert response.status_code == 422
    assert "filename must be a plain name" in response.json()["detail"]
    assert api.files_under("uploads") == []


def test_list_and_get_concepts(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    ids = []
    for name in ("cat", "dog"):
        response = api.client.post("/v1/concepts", headers=headers, data=form(name), files=images(png()))
        assert response.status_code == 202
        ids.append(response.json()["concept"]["id"])
    listed = api.client.get("/v1/concepts", headers=headers).json()["concepts"]
    assert [c["name"] for c in listed] == ["cat", "dog"]
    one = api.client.get(f"/v1/concepts/{ids[1]}", headers=headers)
    assert one.status_code == 200 and one.json()["token"] == "<dog>"
    jobs = [api.client.get(f"/v1/jobs/{c['job_id']}", headers=headers).json() for c in listed]
    assert [j["seq"] for j in jobs] == [1, 2]


def test_duplicate_name_is_a_conflict_and_stores_nothing(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    assert (
        api.client.post("/v1/concepts", headers=headers, data=form(), files=images(png())).status_code == 202
    )
    before = api.files_under("uploads")
    again = api.client.post("/v1/concepts", headers=headers, data=form(), files=images(png()))
    assert again.status_code == 409
    assert "already have a concept named 'dog'" in again.json()["detail"]
    assert api.files_under("uploads") == before
    # Another user may use the same name (uniqueness is per user, not an oracle).
    _, other = api.user("bob")
    assert api.client.post("/v1/concepts", headers=other, data=form(), files=images(png())).status_code == 202


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"name": "Bad Name"}, "name must be a slug"),
        ({"name": "x" * 33}, "name must be a slug"),
        ({"name": "dog\n"}, "name must be a slug"),
        ({"name": "dog", "method": "magic"}, "unknown method 'magic'; known methods: c_lora"),
        ({"name": "dog", "steps": "0"}, "steps must be between 1 and"),
        ({"name": "dog", "class_word": "<script>"}, "class_word must be"),
    ],
)
def test_invalid_fields_are_422_with_a_clear_message(api, fields: dict[str, str], words: str) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    response = api.client.post("/v1/concepts", headers=headers, data=fields, files=images(png()))
    assert response.status_code == 422
    assert words in response.json()["detail"]
    assert api.files_under("uploads") == []


def _png_claiming(width: int, height: int) -> bytes:
    data = bytearray(png((8, 8)))
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(data)


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="GIF")
    return buffer.getvalue()


BAD_UPLOADS = {
    "not-an-image": (lambda: [("notes.png", b"just some text, not pixels")], 415, "image 2 of 2: not a JPEG"),
    "corrupt": (lambda: [("a.png", png()[:-40])], 422, "image 2 of 2: the image is corrupt or truncated"),
    "lying-extension": (lambda: [("photo.jpg", _gif())], 415, "image 2 of 2: not a JPEG, PNG or WebP"),
    "decompression-bomb": (lambda: [("big.png", _png_claiming(20_000, 20_000))], 413, "image 2 of 2: "),
    "warn-band-bomb": (lambda: [("big.png", _png_claiming(10_000, 10_000))], 413, "image 2 of 2: "),
    "path-traversal-name": (lambda: [("../../../tmp/x.png", png())], 422, "image 2 of 2: the filename"),
}


@SQLITE_ONLY
@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_is_4xx_and_nothing_is_stored(api, case: str) -> None:  # type: ignore[no-untyped-def]
    make, status, words = BAD_UPLOADS[case]
    _, headers = api.user("alice")
    files = [("images", ("good.png", png(), "image/png"))]
    files += [("images", (name, blob, "image/png")) for name, blob in make()]
    response = api.client.post("/v1/concepts", headers=headers, data=form(), files=files)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert api.files_under("uploads") == []
    assert [p for p in api.settings.data_dir.rglob("*") if p.is_file() and "tmp" in p.name] == []
    for model in (Concept, Job, Upload, Outbox):
        assert count(api, model) == 0
    assert api.dispatches == []


@SQLITE_ONLY
def test_too_large_file_and_too_many_files(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    api.settings.max_upload_bytes = 2000
    noisy = Image.effect_noise((64, 64), 80).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 2000
    big = api.client.post(
        "/v1/concepts", headers=headers, data=form(), files=images(png(), buffer.getvalue())
    )
    assert big.status_code == 413
    assert big.json()["detail"] == "image 2 of 2: the file is larger than 2000 bytes"

    api.settings.max_upload_bytes = 10 * 1024 * 1024
    api.settings.max_files_per_concept = 3
    many = api.client.post("/v1/concepts", headers=headers, data=form(), files=images(*[png()] * 4))
    assert many.status_code == 413
    assert many.json()["detail"] == "at most 3 images per concept, got 4"
    assert api.files_under("uploads") == []
    assert count(api, Concept) == 0


@SQLITE_ONLY
def test_missing_images_field_is_422(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    response = api.client.post("/v1/concepts", headers=headers, data=form())
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "images"]


@SQLITE_ONLY
def test_body_over_the_global_cap_is_413_before_parsing(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    cap = api.settings.max_files_per_concept * api.settings.max_upload_bytes + 1024 * 1024
    response = api.client.post(
        "/v1/concepts",
        headers={**headers, "Content-Type": "multipart/form-data; boundary=x"},
        content=b"\0" * (cap + 1),
    )
    assert response.status_code == 413
    assert "request body is larger than" in response.json()["detail"]


@SQLITE_ONLY
def test_non_multipart_bodies_have_a_small_cap(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    huge = {"prompt": "a" * (2 * 1024 * 1024)}
    response = api.client.post("/v1/generate", headers=headers, json=huge)
    assert response.status_code == 413
    assert response.json() == {"detail": f"the request body is larger than {1024 * 1024} bytes"}


@SQLITE_ONLY
def test_streamed_body_over_the_cap_is_413(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")

    def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: the cap is counted while streaming
        for _ in range(3):
            yield b"{" + b" " * (512 * 1024)

    response = api.client.post(
        "/v1/generate", headers={**headers, "Content-Type": "application/json"}, content=chunks()
    )
    assert response.status_code == 413


def test_the_worker_reads_a_concepts_images_in_the_order_they_were_uploaded(api) -> None:  # type: ignore[no-untyped-def]
    """Not in the order of their random ids: the same upload must train the same batches."""
    from core.db.jobs import upload_paths

    _, headers = api.user("alice")
    colours = [(10 * i, 200 - 10 * i, 7 * i) for i in range(8)]
    response = api.client.post(
        "/v1/concepts", headers=headers, data=form("dog"), files=images(*(png(color=c) for c in colours))
    )
    assert response.status_code == 202, response.text
    paths = upload_paths(api.session_factory, job_id=response.json()["job"]["id"])
    read = [Image.open(api.settings.data_dir / path).convert("RGB").getpixel((0, 0)) for path in paths]
    assert read == colours  # with 8 images, id order matches upload order once in 40,320 runs
