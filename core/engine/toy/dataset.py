"""Procedural captioned 64x64 images: shapes x colours x backgrounds x sizes x positions.

Every sample is a pure function of ``(seed, index)``, so the data set is generated on the
fly, never stored, and identical on every machine. Some colour x shape combinations
(``HELD_OUT``) never appear in training: the quality check (``mnemo toy check``) asks
for them to measure compositional generalisation.

Captions follow the templates of ``CAPTION_TEMPLATES`` ("a photo of a red circle on a
blue background", "a red circle", ...); with probability ``GENERIC_P`` the caption is the
toy's prior concept c0 ``PRIOR_PROMPT`` ("a photo of a shape"), and with ``EMPTY_P`` it is
empty (for classifier-free guidance).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4
PRIOR_PROMPT = "a photo of a shape"
EMPTY_P = 0.10
GENERIC_P = 0.10
# Object radius (pixels at 64x64), how far its centre may stray from the image centre, and
# its rotation (degrees). Small pose ranges keep the caption informative at high noise.
RADIUS_RANGE = (17.0, 24.0)
MAX_OFFSET = 3.0
MAX_ROTATION = 8.0

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "green": (35, 165, 55),
    "blue": (35, 70, 220),
    "yellow": (245, 215, 30),
    "purple": (135, 45, 175),
    "orange": (250, 135, 20),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
BACKGROUNDS: dict[str, tuple[int, int, int]] = {**COLOURS, "gray": (128, 128, 128)}
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)

HELD_OUT: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "star"),
        ("green", "heart"),
        ("blue", "triangle"),
        ("yellow", "cross"),
        ("purple", "square"),
        ("orange", "circle"),
        ("white", "triangle"),
        ("black", "star"),
    }
)
TRAIN_COMBOS: tuple[tuple[str, str], ...] = tuple(
    (c, s) for c in COLOUR_NAMES for s in SHAPES if (c, s) not in HELD_OUT
)

COLOUR_ONLY = "a photo of {ac} shape"
# (template, weight); {c} colour with article ("a red"/"an orange"), {s} shape, {b} background.
CAPTION_TEMPLATES: tuple[tuple[str, float], ...] = (
    ("a photo of {ac} {s} on a {b} background", 4.0),
    ("{ac} {s} on a {b} background", 1.0),
    ("a photo of {ac} {s}", 2.0),
    ("{ac} {s}", 1.0),
    ("a photo of a {s}", 1.0),
    (COLOUR_ONLY, 0.5),
    ("a photo of a {s} on a {b} background", 0.5),
)


@dataclass(frozen=True)
class ShapeSpec:
    """Ground truth of one image (the classifier's labels)."""

    shape: str
    colour: str
    background: str
    radius: float  # pixels at 64x64
    centre: tuple[float, float]
    angle: float  # degrees

    @property
    def shape_index(self) -> int:
        return SHAPES.index(self.shape)

    @property
    def colour_index(self) -> int:
        return COLOUR_NAMES.index(self.colour)

    @property
    def background_index(self) -> int:
        return BACKGROUND_NAMES.index(self.background)


def with_article(colour: str) -> str:
    return f"an {colour}" if colour[0] in "aeiou" else f"a {colour}"


def full_caption(colour: str, shape: str, background: str | None = None) -> str:
    """The canonical prompt "a photo of a red circle [on a blue background]"."""
    if background is None:
        return f"a photo of {with_article(colour)} {shape}"
    return f"a photo of {with_article(colour)} {shape} on a {background} background"


def sample_spec(rng: random.Random, *, combos: tuple[tuple[str, str], ...] = TRAIN_COMBOS) -> ShapeSpec:
    colour, shape = rng.choice(combos)
    background = rng.choice([b for b in BACKGROUND_NAMES if b != colour])
    radius = rng.uniform(*RADIUS_RANGE)
    offset = min(MAX_OFFSET, IMAGE_SIZE / 2 - radius - 2.0)
    centre = (IMAGE_SIZE / 2 + rng.uniform(-offset, offset), IMAGE_SIZE / 2 + rng.uniform(-offset, offset))
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION) if shape != "circle" else 0.0
    return ShapeSpec(shape, colour, background, radius, centre, angle)


def caption_templates(*, colour_only_weight: float | None = None) -> tuple[tuple[str, float], ...]:
    """``CAPTION_TEMPLATES`` with the weight of the colour-only caption ("a photo of a red shape")
    set to ``colour_only_weight`` (None: unchanged): captions that name one attribute alone teach
    that word alone."""
    if colour_only_weight is None:
        return CAPTION_TEMPLATES
    return tuple((t, colour_only_weight if t == COLOUR_ONLY else w) for t, w in CAPTION_TEMPLATES)


def sample_caption(
    rng: random.Random, spec: ShapeSpec, *, templates: tuple[tuple[str, float], ...] = CAPTION_TEMPLATES
) -> str:
    roll = rng.random()
    if roll < EMPTY_P:
        return ""
    if roll < EMPTY_P + GENERIC_P:
        return PRIOR_PROMPT
    texts, weights = zip(*templates, strict=True)
    template = rng.choices(texts, weights=weights)[0]
    return template.format(ac=with_article(spec.colour), s=spec.shape, b=spec.background)


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 12) -> tuple[int, int, int]:
    return tuple(max(0, min(255, v + rng.randint(-amount, amount))) for v in rgb)  # type: ignore[return-value]


def shape_polygon(shape: str, *, centre: tuple[float, float], radius: float, angle: float) -> list:
    """Vertices of ``shape`` (circle excluded) in the coordinate frame of ``centre``."""
    cx, cy = centre
    if shape == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = [(x * 0.8, y * 0.8) for x, y in pts]
    elif shape == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in (math.radians(-90 + 120 * k) for k in range(3))]
        pts = [(x, y + 0.2) for x, y in pts]
    elif shape == "star":
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.42
            a = math.radians(-90 + 36 * k)
            pts.append((r * math.cos(a), r * math.sin(a)))
    elif shape == "cross":
        w = 0.33
        pts = [
            (-w, -1),
            (w, -1),
            (w, -w),
            (1, -w),
            (1, w),
            (w, w),
            (w, 1),
            (-w, 1),
            (-w, w),
            (-1, w),
            (-1, -w),
            (-w, -w),
        ]
    elif shape == "heart":
        pts = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((x / 17.0, -y / 17.0 + 0.1))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    rad = math.radians(angle)
    cos, sin = math.cos(rad), math.sin(rad)
    return [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in pts]


def render(spec: ShapeSpec, *, rng: random.Random | None = None) -> Image.Image:
    """Draw ``spec`` antialiased (supersampled) as a 64x64 RGB image."""
    rng = rng or random.Random(0)
    s = SUPERSAMPLE
    big = Image.new("RGB", (IMAGE_SIZE * s, IMAGE_SIZE * s), _jitter(BACKGROUNDS[spec.background], rng))
    draw = ImageDraw.Draw(big)
    fill = _jitter(COLOURS[spec.colour], rng)
    centre = (spec.centre[0] * s, spec.centre[1] * s)
    if spec.shape == "circle":
        r = spec.radius * 0.9 * s
        draw.ellipse([centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r], fill=fill)
    else:
        draw.polygon(
            shape_polygon(spec.shape, centre=centre, radius=spec.radius * s, angle=spec.angle), fill=fill
        )
    return big.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def sample(
    seed: int, index: int, *, combos: tuple[tuple[str, str], ...] = TRAIN_COMBOS
) -> tuple[Image.Image, str, ShapeSpec]:
    """The ``index``-th sample of the data set with seed ``seed``: (image, caption, ground truth)."""
    rng = random.Random(f"{seed}:{index}")
    spec = sample_spec(rng, combos=combos)
    image = render(spec, rng=rng)
    return image, sample_caption(rng, spec), spec


def to_array(images: list[Image.Image]) -> np.ndarray:
    """uint8 images -> float32 [N, 3, H, W] in [-1, 1] (the VAE's input range)."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    return arr.transpose(0, 3, 1, 2) / 127.5 - 1.0


def batch(
    seed: int, start: int, size: int, *, combos: tuple[tuple[str, str], ...] = TRAIN_COMBOS
) -> tuple[np.ndarray, list[str], list[ShapeSpec]]:
    """``size`` consecutive samples as a [-1, 1] array, their captions and specs."""
    items = [sample(seed, start + i, combos=combos) for i in range(size)]
    images, captions, specs = zip(*items, strict=True)
    return to_array(list(images)), list(captions), list(specs)
