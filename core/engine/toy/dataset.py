"""Procedural captioned 64x64 images: shapes x patterns x colours x backgrounds x poses.

Every sample is a pure function of ``(seed, index)``, so the data set is generated on the
fly, never stored, and identical on every machine. An object is a shape (``SHAPES``) in a
first colour, plain (``solid``, 40 %) or carrying a pattern (stripes, rings, dots, checks or
a smiley face; ``render.PATTERNS``) in a second colour, on a background of a third.

Two kinds of combinations never appear in training:

* ``HELD_OUT`` colour x shape pairs: ``mnemo toy check`` asks for them to measure
  compositional generalisation of colour and shape words;
* ``HELD_OUT_OBJECTS``, whole objects (colour, second colour, pattern, shape): the bundled
  personal concepts (``concepts.py``) are drawn from these, so each is an object the toy
  never saw as a whole but can compose from what it knows, as a user's dog is for SD.

With probability ``PAIR_P`` an image holds two smaller objects side by side, captioned
"a photo of a red circle and a blue and yellow striped star" (left, then right).

Captions name some attributes and not others, as real captions do: "a photo of a red and
white striped circle on a blue background", "a striped circle", "a photo of a red shape",
"a photo of a circle". With probability ``GENERIC_P`` the caption is the toy's prior concept
c0 ``PRIOR_PROMPT`` ("a photo of a shape"), and with ``EMPTY_P`` it is empty (for
classifier-free guidance).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.engine.toy.render import IMAGE_SIZE, PATTERNS, SUPERSAMPLE, draw_scene, shape_polygon

__all__ = ["IMAGE_SIZE", "PATTERNS", "SUPERSAMPLE", "shape_polygon"]

PRIOR_PROMPT = "a photo of a shape"
EMPTY_P = 0.10
GENERIC_P = 0.10
SOLID_P = 0.40
# Scenes of two smaller objects side by side ("a photo of a red circle and a blue star"): a
# prompt with two concept tokens composes them as the toy composes two described objects.
PAIR_P = 0.15
PAIR_RADIUS_RANGE = (11.0, 13.5)
PAIR_CENTRES = (17.0, 47.0)  # x of the left and right objects (y: the middle)
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
# (colour, second colour, pattern, shape): the bundled concepts' objects (concepts.py), the
# first six for evaluation, the last six for tuning; none is ever drawn in training.
EVAL_OBJECTS: tuple[tuple[str, str, str, str], ...] = (
    ("red", "white", "ringed", "circle"),
    ("blue", "yellow", "striped", "square"),
    ("yellow", "black", "smiley", "circle"),
    ("green", "white", "checkered", "triangle"),
    ("purple", "orange", "dotted", "heart"),
    ("orange", "blue", "striped", "cross"),
)
TUNING_OBJECTS: tuple[tuple[str, str, str, str], ...] = (
    ("red", "black", "dotted", "circle"),
    ("black", "white", "checkered", "square"),
    ("black", "white", "striped", "triangle"),
    ("blue", "yellow", "ringed", "star"),
    ("orange", "black", "smiley", "heart"),
    ("green", "yellow", "dotted", "cross"),
)
HELD_OUT_OBJECTS: frozenset[tuple[str, str, str, str]] = frozenset(EVAL_OBJECTS + TUNING_OBJECTS)

COLOUR_ONLY = "a photo of {ac} shape"
# (template, weight); {ac} colour with article ("a red"/"an orange"), {s} shape, {b} background.
CAPTION_TEMPLATES: tuple[tuple[str, float], ...] = (
    ("a photo of {ac} {s} on a {b} background", 4.0),
    ("{ac} {s} on a {b} background", 1.0),
    ("a photo of {ac} {s}", 2.0),
    ("{ac} {s}", 1.0),
    ("a photo of a {s}", 1.0),
    (COLOUR_ONLY, 0.5),
    ("a photo of a {s} on a {b} background", 0.5),
)
# Patterned objects: {c2} the second colour, {p} the pattern word. A caption that names a
# colour names both colours and the pattern ("a red circle" stays a plain red circle).
PATTERN_TEMPLATES: tuple[tuple[str, float], ...] = (
    ("a photo of {ac} and {c2} {p} {s} on a {b} background", 3.0),
    ("a photo of {ac} and {c2} {p} {s}", 2.5),
    ("{ac} and {c2} {p} {s}", 1.0),
    ("a photo of a {p} {s}", 1.5),
    ("a photo of a {p} shape", 1.0),
    ("a photo of {ac} and {c2} {p} shape", 0.5),
    ("a photo of a {s}", 1.0),
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
    pattern: str = "solid"
    colour2: str | None = None  # the pattern's colour; None when solid
    partner: ShapeSpec | None = None  # a second object on the right (this one is on the left)

    @property
    def shape_index(self) -> int:
        return SHAPES.index(self.shape)

    @property
    def colour_index(self) -> int:
        return COLOUR_NAMES.index(self.colour)

    @property
    def background_index(self) -> int:
        return BACKGROUND_NAMES.index(self.background)

    @property
    def pattern_index(self) -> int:
        return PATTERNS.index(self.pattern)

    @property
    def colours(self) -> frozenset[str]:
        """Every colour on the object (one when solid, two when patterned)."""
        return frozenset({self.colour, self.colour2} - {None})  # type: ignore[arg-type]

    @property
    def object(self) -> tuple[str, str | None, str, str]:
        return (self.colour, self.colour2, self.pattern, self.shape)


def with_article(colour: str) -> str:
    return f"an {colour}" if colour[0] in "aeiou" else f"a {colour}"


def full_caption(
    colour: str,
    shape: str,
    background: str | None = None,
    *,
    pattern: str = "solid",
    colour2: str | None = None,
) -> str:
    """The canonical prompt "a photo of a red [and white striped] circle [on a blue background]"."""
    what = with_article(colour) if pattern == "solid" else f"{with_article(colour)} and {colour2} {pattern}"
    if background is None:
        return f"a photo of {what} {shape}"
    return f"a photo of {what} {shape} on a {background} background"


def sample_pose(rng: random.Random, shape: str) -> tuple[float, tuple[float, float], float]:
    """(radius, centre, angle) of one object: the pose ranges of the whole world."""
    radius = rng.uniform(*RADIUS_RANGE)
    offset = min(MAX_OFFSET, IMAGE_SIZE / 2 - radius - 2.0)
    centre = (IMAGE_SIZE / 2 + rng.uniform(-offset, offset), IMAGE_SIZE / 2 + rng.uniform(-offset, offset))
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION) if shape != "circle" else 0.0
    return radius, centre, angle


def _pair_pose(rng: random.Random, shape: str, x: float) -> tuple[float, tuple[float, float], float]:
    radius = rng.uniform(*PAIR_RADIUS_RANGE)
    centre = (x + rng.uniform(-1.5, 1.5), IMAGE_SIZE / 2 + rng.uniform(-MAX_OFFSET, MAX_OFFSET))
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION) if shape != "circle" else 0.0
    return radius, centre, angle


def _object(
    rng: random.Random, *, combos: tuple[tuple[str, str], ...], exclude: frozenset[tuple[str, str, str, str]]
) -> tuple[str, str, str, str | None]:
    """(shape, colour, pattern, second colour): colour x shape from ``combos``, never in ``exclude``."""
    colour, shape = rng.choice(combos)
    pattern, colour2 = "solid", None
    if rng.random() >= SOLID_P:
        pattern = rng.choice(PATTERNS[1:])
        others = [c for c in COLOUR_NAMES if c != colour and (colour, c, pattern, shape) not in exclude]
        colour2 = rng.choice(others)
    return shape, colour, pattern, colour2


def sample_spec(
    rng: random.Random,
    *,
    combos: tuple[tuple[str, str], ...] = TRAIN_COMBOS,
    exclude: frozenset[tuple[str, str, str, str]] = HELD_OUT_OBJECTS,
    pair_p: float = 0.0,
) -> ShapeSpec:
    """A random object (solid or patterned, never one of ``exclude``) or, with probability
    ``pair_p``, two smaller ones side by side (the second as ``partner``)."""
    if rng.random() < pair_p:
        return _sample_pair(rng, combos=combos, exclude=exclude)
    shape, colour, pattern, colour2 = _object(rng, combos=combos, exclude=exclude)
    background = rng.choice([b for b in BACKGROUND_NAMES if b not in (colour, colour2)])
    radius, centre, angle = sample_pose(rng, shape)
    return ShapeSpec(shape, colour, background, radius, centre, angle, pattern, colour2)


def _sample_pair(
    rng: random.Random, *, combos: tuple[tuple[str, str], ...], exclude: frozenset[tuple[str, str, str, str]]
) -> ShapeSpec:
    left, right = _object(rng, combos=combos, exclude=exclude), _object(rng, combos=combos, exclude=exclude)
    used = {left[1], left[3], right[1], right[3]}
    background = rng.choice([b for b in BACKGROUND_NAMES if b not in used])
    partner = ShapeSpec(
        right[0], right[1], background, *_pair_pose(rng, right[0], PAIR_CENTRES[1]), *right[2:]
    )
    return ShapeSpec(
        left[0], left[1], background, *_pair_pose(rng, left[0], PAIR_CENTRES[0]), *left[2:], partner
    )


def caption_templates(*, colour_only_weight: float | None = None) -> tuple[tuple[str, float], ...]:
    """``CAPTION_TEMPLATES`` with the weight of the colour-only caption ("a photo of a red shape")
    set to ``colour_only_weight`` (None: unchanged): captions that name one attribute alone teach
    that word alone."""
    if colour_only_weight is None:
        return CAPTION_TEMPLATES
    return tuple((t, colour_only_weight if t == COLOUR_ONLY else w) for t, w in CAPTION_TEMPLATES)


def describe(spec: ShapeSpec) -> str:
    """An object in words, with its article: "a red circle", "a red and white striped circle"."""
    if spec.pattern == "solid":
        return f"{with_article(spec.colour)} {spec.shape}"
    return f"{with_article(spec.colour)} and {spec.colour2} {spec.pattern} {spec.shape}"


# Two objects: {l} and {r} are ``describe`` of the left and the right one.
PAIR_TEMPLATES: tuple[tuple[str, float], ...] = (
    ("a photo of {l} and {r}", 3.0),
    ("a photo of {l} and {r} on a {b} background", 2.0),
    ("{l} and {r}", 1.0),
)


def sample_caption(
    rng: random.Random, spec: ShapeSpec, *, templates: tuple[tuple[str, float], ...] = CAPTION_TEMPLATES
) -> str:
    """A caption of ``spec``: ``templates`` for a solid object, ``PATTERN_TEMPLATES`` for a
    patterned one, ``PAIR_TEMPLATES`` for two objects."""
    roll = rng.random()
    if roll < EMPTY_P:
        return ""
    if roll < EMPTY_P + GENERIC_P:
        return PRIOR_PROMPT
    if spec.partner is not None:
        texts, weights = zip(*PAIR_TEMPLATES, strict=True)
        template = rng.choices(texts, weights=weights)[0]
        return template.format(l=describe(spec), r=describe(spec.partner), b=spec.background)
    texts, weights = zip(*(templates if spec.pattern == "solid" else PATTERN_TEMPLATES), strict=True)
    template = rng.choices(texts, weights=weights)[0]
    return template.format(
        ac=with_article(spec.colour), c2=spec.colour2, p=spec.pattern, s=spec.shape, b=spec.background
    )


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 12) -> tuple[int, int, int]:
    return tuple(max(0, min(255, v + rng.randint(-amount, amount))) for v in rgb)  # type: ignore[return-value]


def _drawable(spec: ShapeSpec, rng: random.Random) -> dict:
    base = _jitter(COLOURS[spec.colour], rng)
    fill = _jitter(COLOURS[spec.colour2], rng) if spec.colour2 else base
    return {
        "shape": spec.shape,
        "pattern": spec.pattern,
        "base": base,
        "fill": fill,
        "radius": spec.radius,
        "centre": spec.centre,
        "angle": spec.angle,
    }


def render(spec: ShapeSpec, *, rng: random.Random | None = None) -> Image.Image:
    """Draw ``spec`` (and its partner) antialiased as a 64x64 RGB image, colours jittered."""
    rng = rng or random.Random(0)
    background = _jitter(BACKGROUNDS[spec.background], rng)
    objects = [_drawable(spec, rng)] + ([_drawable(spec.partner, rng)] if spec.partner else [])
    return draw_scene(objects, background=background)


Objects = frozenset[tuple[str, str, str, str]]


def sample(
    seed: int,
    index: int,
    *,
    combos: tuple[tuple[str, str], ...] = TRAIN_COMBOS,
    exclude: Objects = HELD_OUT_OBJECTS,
    pair_p: float = PAIR_P,
) -> tuple[Image.Image, str, ShapeSpec]:
    """The ``index``-th sample of the data set with seed ``seed``: (image, caption, ground truth)."""
    rng = random.Random(f"{seed}:{index}")
    spec = sample_spec(rng, combos=combos, exclude=exclude, pair_p=pair_p)
    image = render(spec, rng=rng)
    return image, sample_caption(rng, spec), spec


def to_array(images: list[Image.Image]) -> np.ndarray:
    """uint8 images -> float32 [N, 3, H, W] in [-1, 1] (the VAE's input range)."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    return arr.transpose(0, 3, 1, 2) / 127.5 - 1.0


def batch(
    seed: int,
    start: int,
    size: int,
    *,
    combos: tuple[tuple[str, str], ...] = TRAIN_COMBOS,
    exclude: Objects = HELD_OUT_OBJECTS,
    pair_p: float = PAIR_P,
) -> tuple[np.ndarray, list[str], list[ShapeSpec]]:
    """``size`` consecutive samples as a [-1, 1] array, their captions and specs."""
    items = [sample(seed, start + i, combos=combos, exclude=exclude, pair_p=pair_p) for i in range(size)]
    images, captions, specs = zip(*items, strict=True)
    return to_array(list(images)), list(captions), list(specs)
