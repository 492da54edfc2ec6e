"""Small uploads that decode to huge images cost bounded work (issue 20 item 8).

Twenty near-cap 1-bit PNGs (a few KB each on the wire) used to cost about 30 s of API CPU and
hundreds of MB, and were stored at full size although training centre-crops and resizes them to
the backbone's resolution. Now a request's decode budget is checked from the headers of all its
files before any is decoded, a large JPEG decodes at a reduced DCT scale, and stored images are
downscaled to ``MNEMO_UPLOAD_MAX_SIDE``.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from tests.conftest import make_settings

NEAR_CAP = (6300, 6300)  # 39.7 MP, under the 40 MP per-image cap


def one_bit_png(size: tuple[int, int] = NEAR_CAP) -> bytes:
    """A black 1-bit PNG: a few KB on the wire, ``width x height`` pixels once decoded."""
    buffer = io.BytesIO()
    Image.new("1", size, 0).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid 8x8 PNG whose header (CRC fixed) claims ``width x height``: decoding it fails."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def flat_jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (40, 120, 200)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def post(client: TestClient, headers: dict[str, str], name: str, images: list[bytes]):  # type: ignore[no-untyped-def]
    files = [("images", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(images)]
    return client.post("/v1/concepts", headers=headers, data={"name": name}, files=files)


def stored_sizes(data_dir: Path) -> list[tuple[int, int]]:
    sizes = []
    for path in sorted((data_dir / "uploads").glob("*")):
        with Image.open(path) as image:
            sizes.append(image.size)
    return sizes


def test_a_near_cap_one_bit_png_is_stored_downscaled(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    response = post(api.client, headers, "bits", [one_bit_png()])
    assert response.status_code == 202, response.text
    assert stored_sizes(api.settings.data_dir) == [(1024, 1024)]


def test_twenty_near_cap_pngs_are_refused_from_their_headers(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    images = [one_bit_png()] * 20  # 98 KB on the wire, 794 million pixels decoded
    started = time.process_time()
    response = post(api.client, headers, "bomb", images)
    cpu = time.process_time() - started
    assert response.status_code == 413, response.text
    assert "one request may decode" in response.json()["detail"]
    assert cpu < 3.0, f"{cpu:.1f} s of CPU for a refused request"
    assert api.files_under("uploads") == []


def test_the_request_budget_is_checked_before_any_file_is_decoded(api) -> None:  # type: ignore[no-untyped-def]
    # Each file is under the per-image cap; decoding the first would find it corrupt (422).
    _, headers = api.user("alice")
    response = post(api.client, headers, "lies", [png_claiming(6000, 6000)] * 6)
    assert response.status_code == 413, response.text
    assert "216000000 pixels together" in response.json()["detail"]


def test_twenty_large_photos_fit_the_budget_and_are_stored_downscaled(api) -> None:  # type: ignore[no-untyped-def]
    # 24 MP JPEGs decode at a quarter of their size (1500 x 1000) before the downscale to 1024.
    _, headers = api.user("alice")
    response = post(api.client, headers, "photos", [flat_jpeg((6000, 4000))] * 20)
    assert response.status_code == 202, response.text
    assert stored_sizes(api.settings.data_dir) == [(1024, 683)] * 20


@pytest.fixture
def small_side_client(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    settings = make_settings(
        data_dir=tmp_path / "data", database_url=sqlite_url, upload_max_side=256, max_request_pixels=10**6
    )
    app = create_app(settings, dispatcher=lambda: None)
    with TestClient(app) as client:
        yield client, settings.data_dir
    app.state.services.session_factory.kw["bind"].dispose()


def test_the_stored_side_and_the_budget_are_settings(small_side_client) -> None:  # type: ignore[no-untyped-def]
    from core.db.users import create_user

    client, data_dir = small_side_client
    factory = client.app.state.services.session_factory
    with factory() as session:
        key = create_user(session, name="alice", pepper=b"test-pepper").key
        session.commit()
    headers = {"Authorization": f"Bearer {key}"}
    assert post(client, headers, "wide", [flat_jpeg((800, 400))]).status_code == 202
    assert stored_sizes(data_dir) == [(256, 128)]
    refused = post(client, headers, "many", [one_bit_png((800, 400))] * 4)  # 4 x 320,000 pixels
    assert refused.status_code == 413 and "1000000 one request may decode" in refused.json()["detail"]
