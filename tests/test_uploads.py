"""Upload validation (core/uploads.py): allowlist by content, caps, bombs, corruption, re-encoding."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
from PIL import Image

from core.uploads import UploadError, UploadLimits, clean_image, sniff_format, validate_images


def encode_image(fmt: str = "PNG", *, size: tuple[int, int] = (32, 32), **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt, **save)
    return buffer.getvalue()


LIMITS = UploadLimits(max_bytes=200_000, max_files=3, min_files=1, max_pixels=40_000_000, min_side=8)


def png_claiming(width: int, height: int) -> bytes:
    """A real PNG whose IHDR claims ``width`` x ``height`` (CRC fixed), so only the header lies."""
    data = bytearray(encode_image("PNG", size=(8, 8)))
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode_image("JPEG", size=(8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def one(data: bytes, filename: str | None = "photo.png", limits: UploadLimits = LIMITS):
    return validate_images([(filename, data)], limits=limits)[0]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_allowed_formats_are_reencoded_to_png(fmt: str) -> None:
    cleaned = one(encode_image(fmt, size=(40, 24)))
    assert cleaned.source_format == fmt
    assert (cleaned.width, cleaned.height) == (40, 24)
    with Image.open(io.BytesIO(cleaned.png)) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        assert image.size == (40, 24)


def test_metadata_and_appended_payload_are_stripped() -> None:
    exif = Image.Exif()
    exif[0x010F] = "SENTINEL-CAMERA-MAKER"  # Make
    exif[0x8825] = {2: (48.0, 51.0, 29.0)}  # GPS latitude
    jpeg = encode_image("JPEG", size=(32, 32), exif=exif.tobytes(), comment=b"SENTINEL-COMMENT")
    polyglot = jpeg + b"PK\x03\x04SENTINEL-ZIP<?php system($_GET['c']); ?>"
    cleaned = one(polyglot, filename="holiday.jpg")
    for sentinel in (b"SENTINEL", b"<?php", b"Exif", b"GPS"):
        assert sentinel not in cleaned.png
    assert cleaned.png.endswith(b"IEND\xaeB`\x82")
    with Image.open(io.BytesIO(cleaned.png)) as image:
        assert not image.info.get("exif") and not image.info.get("icc_profile")
        assert not image.getexif()


def test_png_text_chunks_and_icc_profile_are_dropped() -> None:
    from PIL import ImageCms, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "SENTINEL-TEXT")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cleaned = one(encode_image("PNG", pnginfo=info, icc_profile=icc))
    assert b"SENTINEL" not in cleaned.png
    with Image.open(io.BytesIO(cleaned.png)) as image:
        assert "icc_profile" not in image.info and "Comment" not in image.info


def test_exif_orientation_is_applied_before_stripping() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    cleaned = one(encode_image("JPEG", size=(40, 20), exif=exif.tobytes()))
    assert (cleaned.width, cleaned.height) == (20, 40)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"hello, I am not an image", 415, "not a JPEG, PNG or WebP"),
        (b"<html><script>alert(1)</script></html>", 415, "not a JPEG, PNG or WebP"),
        (encode_image("GIF"), 415, "not a JPEG, PNG or WebP"),
        (encode_image("BMP"), 415, "not a JPEG, PNG or WebP"),
        (encode_image("TIFF"), 415, "not a JPEG, PNG or WebP"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 415, "not a JPEG, PNG or WebP"),
        (b"", 422, "empty"),
    ],
    ids=["text", "html", "gif", "bmp", "tiff", "eps", "empty"],
)
def test_content_outside_the_allowlist_is_refused_whatever_its_name(
    data: bytes, status: int, words: str
) -> None:
    with pytest.raises(UploadError) as caught:
        one(data, filename="innocent.png")
    assert caught.value.status == status
    assert words in caught.value.message
    assert caught.value.message.startswith("image 1 of 1")


def test_signature_that_pillow_does_not_confirm_is_refused() -> None:
    # PNG magic followed by garbage: sniffed as PNG, but not a parsable PNG.
    with pytest.raises(UploadError) as caught:
        one(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    assert caught.value.status in (415, 422)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_images_are_refused(cut: float) -> None:
    data = encode_image("PNG", size=(64, 64), color=(10, 20, 30))
    with pytest.raises(UploadError) as caught:
        one(data[: int(len(data) * cut)])
    assert caught.value.status == 422
    assert "corrupt or truncated" in caught.value.message


def test_bad_crc_is_refused() -> None:
    data = bytearray(encode_image("PNG", size=(16, 16)))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF
    with pytest.raises(UploadError) as caught:
        one(bytes(data))
    assert caught.value.status == 422


def test_truncated_jpeg_is_refused() -> None:
    data = Image.effect_noise((64, 64), 50).convert("RGB")
    buffer = io.BytesIO()
    data.save(buffer, format="JPEG")
    with pytest.raises(UploadError):
        one(buffer.getvalue()[:300])


@pytest.mark.parametrize(
    "size",
    [(7000, 7000), (10_000, 10_000), (20_000, 20_000), (65_535, 65_535)],
    ids=["above-own-cap", "pillow-warn-band", "pillow-error-band", "max-header"],
)
def test_decompression_bombs_are_refused_before_decoding(size: tuple[int, int]) -> None:
    for data in (png_claiming(*size), jpeg_claiming(*size)):
        start = time.perf_counter()
        with pytest.raises(UploadError) as caught:
            one(data)
        assert caught.value.status == 413
        assert "pixels" in caught.value.message
        assert time.perf_counter() - start < 2.0


def test_too_large_file_is_refused() -> None:
    data = encode_image("PNG", size=(8, 8))
    limits = UploadLimits(max_bytes=len(data) - 1, max_files=3, min_files=1, max_pixels=10**6)
    with pytest.raises(UploadError) as caught:
        one(data, limits=limits)
    assert caught.value.status == 413
    assert f"larger than {len(data) - 1} bytes" in caught.value.message


def test_too_many_and_too_few_files() -> None:
    image = encode_image("PNG")
    with pytest.raises(UploadError) as caught:
        validate_images([("a.png", image)] * 4, limits=LIMITS)
    assert caught.value.status == 413 and "at most 3" in caught.value.message
    with pytest.raises(UploadError) as caught:
        validate_images([], limits=LIMITS)
    assert caught.value.status == 422 and "at least 1" in caught.value.message


def test_tiny_images_are_refused() -> None:
    with pytest.raises(UploadError) as caught:
        one(encode_image("PNG", size=(4, 40)))
    assert "smaller than 8 pixels" in caught.value.message


def test_animated_images_are_refused() -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    for fmt in ("PNG", "WEBP"):
        buffer = io.BytesIO()
        frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100)
        with pytest.raises(UploadError) as caught:
            one(buffer.getvalue())
        assert "multi-frame" in caught.value.message


@pytest.mark.parametrize(
    "filename",
    [
        "../../etc/passwd.png",
        "..\\..\\win.ini",
        "/abs/x.png",
        "a/../../b.png",
        "．．／x.png",
        "x\x00.png",
        "a\r\nb.png",
    ],
)
def test_filenames_with_paths_or_control_characters_are_refused(filename: str) -> None:
    with pytest.raises(UploadError) as caught:
        one(encode_image("PNG"), filename=filename)
    assert caught.value.status == 422
    assert "filename" in caught.value.message
    assert filename not in caught.value.message  # never echoed


def test_plain_odd_filenames_are_accepted_and_never_used() -> None:
    for filename in ("CON.png", "-rf.jpg", ".hidden.png", "a.jpg.php", "%2e%2e%2fx.png", None):
        assert one(encode_image("PNG"), filename=filename).width == 32


def test_the_failing_file_is_named_by_index() -> None:
    good = encode_image("PNG")
    with pytest.raises(UploadError) as caught:
        validate_images([("a.png", good), ("b.png", b"nope"), ("c.png", good)], limits=LIMITS)
    assert caught.value.index == 2
    assert caught.value.message.startswith("image 2 of 3")


def test_sniffing_reads_magic_bytes_only() -> None:
    assert sniff_format(encode_image("JPEG")[:16]) == "JPEG"
    assert sniff_format(encode_image("PNG")[:16]) == "PNG"
    assert sniff_format(encode_image("WEBP")[:16]) == "WEBP"
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_clean_image_alpha_is_flattened_on_white() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(buffer, format="PNG")
    cleaned = clean_image(buffer.getvalue(), limits=LIMITS, label="image 1 of 1")
    with Image.open(io.BytesIO(cleaned.png)) as image:
        assert image.getpixel((0, 0)) == (255, 255, 255)
