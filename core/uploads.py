"""Validation and re-encoding of uploaded training images (docs/architecture.md, "Uploads and privacy").

Rules, in the order they are checked for every file of a request:
  1. the client's filename is never used for anything; one that carries a path
     (``/``, ``\\``, ``..``, NUL or control characters) is refused as a malformed request;
  2. size cap (bytes), then the type is sniffed from the magic bytes (JPEG, PNG, WebP only;
     extension and Content-Type are ignored) and must agree with what Pillow parses, with
     Pillow restricted to those three formats (no EPS/TIFF/... parser is ever reached);
  3. pixel cap checked on the header size *before* decoding, stricter than Pillow's
     ``MAX_IMAGE_PIXELS``; Pillow's ``DecompressionBombWarning`` is an error too;
     single frame only; then ``verify()``;
  4. the request's decode budget: the pixels every file will decode to (a JPEG decodes at a
     reduced DCT scale when it is larger than needed), summed from the headers of all files
     before any is decoded (``max_request_pixels``);
  5. a full decode (truncated files are errors: ``LOAD_TRUNCATED_IMAGES`` stays off), downscaled
     so that the longer side is at most ``max_side`` (training centre-crops and resizes to the
     backbone's resolution, so larger images only cost memory and time in the API and the worker);
  6. re-encode from pixels to PNG (EXIF orientation applied first), which drops EXIF/GPS,
     ICC, XMP, comments, text chunks and appended payloads.

``validate_images`` checks all files and raises on the first bad one, so a request stores
nothing unless every file is good.
"""

from __future__ import annotations

import io
import unicodedata
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
FORMAT_LABEL = "a JPEG, PNG or WebP image"


class UploadError(ValueError):
    """A refused upload; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, *, status: int = 422, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.index = index


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_files: int
    min_files: int
    max_pixels: int
    min_side: int = 1
    max_side: int = 1024  # longer side of a stored image; larger ones are downscaled
    max_request_pixels: int = 200_000_000  # pixels decoded per request, all files together


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, checked before its pixels are decoded."""

    format: str
    width: int
    height: int
    decode_pixels: int  # what the decoder will produce (less than width x height for a large JPEG)


@dataclass(frozen=True)
class CleanImage:
    """A validated image re-encoded as PNG bytes, plus its original sniffed format."""

    png: bytes
    width: int
    height: int
    source_format: str


def sniff_format(head: bytes) -> str | None:
    """The allowed format named by the magic bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def check_filename(filename: str | None, *, label: str) -> None:
    """Refuse a client filename that carries a path or control characters (it is never used)."""
    if not filename:
        return
    if len(filename) > 255:
        raise UploadError(f"{label}: the filename is longer than 255 characters")
    normalized = unicodedata.normalize("NFKC", filename)
    if any(unicodedata.category(ch) == "Cc" for ch in normalized):
        raise UploadError(f"{label}: the filename contains control characters")
    if "/" in normalized or "\\" in normalized or normalized.strip() in (".", ".."):
        raise UploadError(f"{label}: the filename must be a plain name, not a path")


def clean_image(data: bytes, *, limits: UploadLimits, label: str) -> CleanImage:
    """Validate one image's bytes and re-encode it as metadata-free PNG; ``UploadError`` if bad."""
    return decode_image(
        data, header=inspect_image(data, limits=limits, label=label), limits=limits, label=label
    )


def inspect_image(data: bytes, *, limits: UploadLimits, label: str) -> ImageHeader:
    """Check a file up to its header and chunk checksums (rules 2-3), decoding no pixels."""
    if len(data) == 0:
        raise UploadError(f"{label}: the file is empty")
    if len(data) > limits.max_bytes:
        raise UploadError(f"{label}: the file is larger than {limits.max_bytes} bytes", status=413)
    sniffed = sniff_format(data[:16])
    if sniffed is None:
        raise UploadError(f"{label}: not {FORMAT_LABEL} (by its content)", status=415)
    with _pillow_errors(label), Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as probe:
        _check_header(probe, sniffed=sniffed, limits=limits, label=label)
        width, height = probe.size
        _draft(probe, max_side=limits.max_side)
        decode_pixels = probe.width * probe.height
        probe.verify()
    return ImageHeader(format=sniffed, width=width, height=height, decode_pixels=decode_pixels)


def decode_image(data: bytes, *, header: ImageHeader, limits: UploadLimits, label: str) -> CleanImage:
    """Decode an inspected file, downscaled to ``max_side``, and re-encode it as PNG (rules 5-6)."""
    with _pillow_errors(label), Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
        _check_header(image, sniffed=header.format, limits=limits, label=label)
        _draft(image, max_side=limits.max_side)
        image.load()
        pixels = _pixels_only(_downscaled(_resizable(image), max_side=limits.max_side))
    out = io.BytesIO()
    pixels.save(out, format="PNG", optimize=False)
    return CleanImage(
        png=out.getvalue(), width=pixels.width, height=pixels.height, source_format=header.format
    )


@contextmanager
def _pillow_errors(label: str) -> Iterator[None]:
    """Pillow's errors (and its decompression-bomb warning) as ``UploadError``."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except UploadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise UploadError(
                f"{label}: the image has too many pixels (decompression bomb)", status=413
            ) from None
        except UnidentifiedImageError:
            raise UploadError(f"{label}: not {FORMAT_LABEL} (cannot be parsed)", status=415) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError):
            raise UploadError(f"{label}: the image is corrupt or truncated") from None


def _fitted(size: tuple[int, int], *, max_side: int) -> tuple[int, int]:
    """``size`` scaled so that its longer side is at most ``max_side`` (aspect ratio kept)."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _draft(image: Image.Image, *, max_side: int) -> None:
    """Let a JPEG decode at the smallest DCT scale (1/2, 1/4, 1/8) still at least the target size."""
    if image.format == "JPEG" and max(image.size) > max_side:
        image.draft(image.mode, _fitted(image.size, max_side=max_side))


def _resizable(image: Image.Image) -> Image.Image:
    """The image in a mode that resamples smoothly (Pillow resizes "1" and "P" by nearest pixel)."""
    if image.mode in ("L", "RGB", "RGBA"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB")


def _downscaled(image: Image.Image, *, max_side: int) -> Image.Image:
    """The image with its longer side at most ``max_side`` (Lanczos; metadata kept for orientation)."""
    size = _fitted(image.size, max_side=max_side)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _check_header(image: Image.Image, *, sniffed: str, limits: UploadLimits, label: str) -> None:
    if image.format != sniffed:
        raise UploadError(f"{label}: the content does not match its {sniffed} signature", status=415)
    width, height = image.size
    if width * height > limits.max_pixels:
        raise UploadError(
            f"{label}: {width}x{height} is more than {limits.max_pixels} pixels (decompression bomb guard)",
            status=413,
        )
    if min(width, height) < limits.min_side:
        raise UploadError(f"{label}: {width}x{height} is smaller than {limits.min_side} pixels per side")
    if getattr(image, "n_frames", 1) > 1:
        raise UploadError(f"{label}: animated or multi-frame images are not accepted")


def _pixels_only(image: Image.Image) -> Image.Image:
    """A new RGB image holding only the (orientation-corrected) pixels, no metadata."""
    oriented = ImageOps.exif_transpose(image)
    if oriented.mode in ("RGBA", "LA", "PA") or (oriented.mode == "P" and "transparency" in oriented.info):
        rgba = oriented.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        oriented = Image.alpha_composite(background, rgba)
    rgb = oriented.convert("RGB")
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def validate_images(files: list[tuple[str | None, bytes]], *, limits: UploadLimits) -> list[CleanImage]:
    """Validate a request's files ``[(client filename, bytes), ...]``; all good or ``UploadError``.

    Every file's header is checked, and the request's decode budget, before any file is decoded.
    """
    if len(files) < limits.min_files:
        raise UploadError(f"at least {limits.min_files} image(s) are required, got {len(files)}")
    if len(files) > limits.max_files:
        raise UploadError(f"at most {limits.max_files} images per concept, got {len(files)}", status=413)
    labels = [f"image {index} of {len(files)}" for index in range(1, len(files) + 1)]
    headers: list[ImageHeader] = []
    for index, (filename, data) in enumerate(files, start=1):
        with _naming_file(index):
            check_filename(filename, label=labels[index - 1])
            headers.append(inspect_image(data, limits=limits, label=labels[index - 1]))
    check_decode_budget(headers, limits=limits)
    cleaned: list[CleanImage] = []
    for index, ((_, data), header) in enumerate(zip(files, headers, strict=True), start=1):
        with _naming_file(index):
            cleaned.append(decode_image(data, header=header, limits=limits, label=labels[index - 1]))
    return cleaned


def check_decode_budget(headers: list[ImageHeader], *, limits: UploadLimits) -> None:
    """413 when a request's files would decode to more than ``max_request_pixels`` together."""
    decode_pixels = sum(header.decode_pixels for header in headers)
    if decode_pixels > limits.max_request_pixels:
        raise UploadError(
            f"the images decode to {decode_pixels} pixels together, more than the "
            f"{limits.max_request_pixels} one request may decode; send fewer or smaller images",
            status=413,
        )


@contextmanager
def _naming_file(index: int) -> Iterator[None]:
    """An ``UploadError`` raised inside names the file by its 1-based index."""
    try:
        yield
    except UploadError as error:
        error.index = index
        raise
