"""Bundled sample concepts the toy backbone has never seen (demo and benchmarks).

Six procedurally drawn novel objects (a bullseye, a striped square, a smiley, a
checkered triangle, a two-tone star, a ringed cross) and two photographs from
scikit-image's bundled samples (Chelsea the cat, a cup of coffee), each as 6 deterministic
64x64 images with seeded variation (position, size, rotation, background; crops and flips
for the photographs). ``class_word`` is a word of the toy's vocabulary, used to
initialise the concept token and as the base-model comparison prompt
("a photo of a <class_word>").
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from core.engine.toy.dataset import BACKGROUNDS, IMAGE_SIZE, SUPERSAMPLE, shape_polygon

IMAGES_PER_CONCEPT = 6


@dataclass(frozen=True)
class SampleConcept:
    name: str
    class_word: str
    images: list[Image.Image] = field(repr=False)
    description: str = ""


Painter = Callable[[ImageDraw.ImageDraw, float, float, float, float, random.Random], None]


def _bullseye(
    draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, _: float, rng: random.Random
) -> None:
    for k, colour in enumerate([(220, 30, 35), (245, 245, 245)] * 3):
        rr = r * (1 - k / 6)
        draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=colour)


def _striped_square(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, rng) -> None:
    half = r * 0.8
    stripes = 6
    for k in range(stripes):
        y0 = -half + 2 * half * k / stripes
        y1 = -half + 2 * half * (k + 1) / stripes
        pts = [(-half, y0), (half, y0), (half, y1), (-half, y1)]
        colour = (35, 70, 220) if k % 2 == 0 else (245, 215, 30)
        draw.polygon(_rotate(pts, cx, cy, angle), fill=colour)


def _smiley(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, _: float, rng) -> None:
    draw.ellipse(
        [cx - r, cy - r, cx + r, cy + r], fill=(245, 215, 30), outline=(20, 20, 20), width=int(r / 12)
    )
    for ex in (-0.35, 0.35):
        er = r * 0.12
        draw.ellipse(
            [cx + ex * r - er, cy - 0.3 * r - er, cx + ex * r + er, cy - 0.3 * r + er], fill=(20, 20, 20)
        )
    draw.arc(
        [cx - 0.55 * r, cy - 0.45 * r, cx + 0.55 * r, cy + 0.55 * r],
        20,
        160,
        fill=(20, 20, 20),
        width=max(2, int(r / 8)),
    )


def _checkered_triangle(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, rng) -> None:
    tri = shape_polygon("triangle", centre=(cx, cy), radius=r, angle=angle)
    mask = Image.new("L", draw.im.size, 0)
    ImageDraw.Draw(mask).polygon(tri, fill=255)
    cells = Image.new("RGB", draw.im.size, (245, 245, 245))
    cd = ImageDraw.Draw(cells)
    step = r / 3
    for i in range(int(draw.im.size[0] / step) + 1):
        for j in range(int(draw.im.size[1] / step) + 1):
            if (i + j) % 2 == 0:
                cd.rectangle([i * step, j * step, (i + 1) * step, (j + 1) * step], fill=(30, 150, 60))
    base = draw._image  # type: ignore[attr-defined]
    base.paste(cells, (0, 0), mask)


def _two_tone_star(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, rng) -> None:
    pts = shape_polygon("star", centre=(cx, cy), radius=r, angle=angle)
    draw.polygon(pts, fill=(135, 45, 175))
    inner = shape_polygon("star", centre=(cx, cy), radius=r * 0.55, angle=angle)
    draw.polygon(inner, fill=(250, 135, 20))


def _ringed_cross(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, angle: float, rng) -> None:
    width = max(2, int(r * 0.18))
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(20, 20, 20), width=width)
    draw.polygon(
        shape_polygon("cross", centre=(cx, cy), radius=r * 0.7, angle=angle + 45), fill=(220, 30, 35)
    )


def _rotate(
    points: list[tuple[float, float]], cx: float, cy: float, angle: float
) -> list[tuple[float, float]]:
    rad = math.radians(angle)
    c, s = math.cos(rad), math.sin(rad)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


DRAWN: tuple[tuple[str, str, Painter, tuple[str, ...], str], ...] = (
    ("bullseye", "circle", _bullseye, ("blue", "green", "gray"), "red and white concentric rings"),
    (
        "striped-square",
        "square",
        _striped_square,
        ("white", "gray", "red"),
        "a square of blue/yellow stripes",
    ),
    ("smiley", "circle", _smiley, ("blue", "purple", "white"), "a yellow smiley face"),
    (
        "checkered-triangle",
        "triangle",
        _checkered_triangle,
        ("black", "blue", "orange"),
        "a green/white checkered triangle",
    ),
    (
        "two-tone-star",
        "star",
        _two_tone_star,
        ("white", "green", "gray"),
        "a purple star with an orange core",
    ),
    ("ringed-cross", "cross", _ringed_cross, ("white", "yellow", "gray"), "a red X inside a black ring"),
)


def _draw_concept(name: str, painter: Painter, backgrounds: tuple[str, ...], n: int) -> list[Image.Image]:
    rng = random.Random(f"concept:{name}")
    s = SUPERSAMPLE
    images = []
    for _ in range(n):
        background = BACKGROUNDS[rng.choice(backgrounds)]
        big = Image.new("RGB", (IMAGE_SIZE * s, IMAGE_SIZE * s), background)
        draw = ImageDraw.Draw(big)
        draw._image = big  # type: ignore[attr-defined]  # painters that composite need the image
        r = rng.uniform(17.0, 24.0)
        margin = r + 2
        cx, cy = rng.uniform(margin, IMAGE_SIZE - margin), rng.uniform(margin, IMAGE_SIZE - margin)
        painter(draw, cx * s, cy * s, r * s, rng.uniform(-15.0, 15.0), rng)
        images.append(big.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX))
    return images


# (name, class word, skimage loader name, crop box (left, top, right, bottom), description)
PHOTOS: tuple[tuple[str, str, str, tuple[int, int, int, int], str], ...] = (
    ("chelsea", "shape", "chelsea", (80, 0, 380, 300), "Chelsea the cat (scikit-image sample)"),
    ("coffee", "circle", "coffee", (150, 0, 550, 400), "a cup of coffee from above (scikit-image sample)"),
)


def _photo_concept(name: str, loader: str, box: tuple[int, int, int, int], n: int) -> list[Image.Image]:
    import skimage.data

    photo = Image.fromarray(getattr(skimage.data, loader)()).convert("RGB").crop(box)
    rng = random.Random(f"concept:{name}")
    side = photo.size[0]
    images = []
    for _ in range(n):
        crop = int(side * rng.uniform(0.8, 1.0))
        x0, y0 = rng.randint(0, side - crop), rng.randint(0, photo.size[1] - crop)
        image = photo.crop((x0, y0, x0 + crop, y0 + crop)).resize(
            (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS
        )
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images.append(image)
    return images


def sample_concepts(
    *, images_per_concept: int = IMAGES_PER_CONCEPT, photos: bool = True
) -> list[SampleConcept]:
    """The bundled concepts (6 drawn, 2 photographs), deterministic, 64x64 RGB."""
    concepts = [
        SampleConcept(name, word, _draw_concept(name, painter, bgs, images_per_concept), description)
        for name, word, painter, bgs, description in DRAWN
    ]
    if photos:
        concepts += [
            SampleConcept(name, word, _photo_concept(name, loader, box, images_per_concept), description)
            for name, word, loader, box, description in PHOTOS
        ]
    return concepts


def get_concept(name: str) -> SampleConcept:
    for concept in sample_concepts():
        if concept.name == name:
            return concept
    raise KeyError(f"unknown sample concept {name!r}; have {[c.name for c in sample_concepts()]}")
