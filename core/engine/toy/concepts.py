"""Bundled sample concepts the toy backbone has never seen (demo and benchmarks).

Six procedurally drawn objects for evaluation (a bullseye, a striped square, a smiley, a
checkered triangle, a dotted heart, a striped cross), six more for tuning hyper-parameters
(``TUNING``, never in an evaluation table), and two photographs from scikit-image's bundled
samples (Chelsea the cat, a cup of coffee). Each drawn concept is one of
``dataset.HELD_OUT_OBJECTS``: a particular shape x pattern x colours that the toy never saw
as a whole, drawn by the generator's own renderer, so the judge can score it
(``recognition.py``). Each concept comes as ``IMAGES_PER_CONCEPT`` deterministic 64x64
images with seeded variation (position, size and rotation within the world's ranges, and one of
three backgrounds; crops
and flips for the photographs). ``class_word`` is a word of the toy's vocabulary, used to
initialise the concept token and as the base-model comparison prompt ("a photo of a
<class_word>").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from PIL import Image

from core.engine.toy import dataset
from core.engine.toy.recognition import Attributes

IMAGES_PER_CONCEPT = 6


@dataclass(frozen=True)
class SampleConcept:
    name: str
    class_word: str
    images: list[Image.Image] = field(repr=False)
    description: str = ""
    attributes: Attributes | None = None  # None for photographs (the judge cannot read them)


# (name, object (colour, second colour, pattern, shape), three backgrounds, description)
DrawnConcept = tuple[str, tuple[str, str, str, str], tuple[str, ...], str]
DRAWN: tuple[DrawnConcept, ...] = (
    ("bullseye", dataset.EVAL_OBJECTS[0], ("blue", "green", "gray"), "red and white concentric rings"),
    ("striped-square", dataset.EVAL_OBJECTS[1], ("white", "gray", "red"), "a square of blue/yellow stripes"),
    ("smiley", dataset.EVAL_OBJECTS[2], ("blue", "purple", "white"), "a yellow smiley face"),
    (
        "checkered-triangle",
        dataset.EVAL_OBJECTS[3],
        ("black", "blue", "orange"),
        "a green/white checkered triangle",
    ),
    ("dotted-heart", dataset.EVAL_OBJECTS[4], ("white", "green", "gray"), "a purple heart with orange dots"),
    (
        "striped-cross",
        dataset.EVAL_OBJECTS[5],
        ("white", "yellow", "gray"),
        "an orange cross with blue stripes",
    ),
)
TUNING: tuple[DrawnConcept, ...] = (
    ("ladybug", dataset.TUNING_OBJECTS[0], ("green", "white", "gray"), "a red circle with black dots"),
    ("chessboard", dataset.TUNING_OBJECTS[1], ("red", "blue", "gray"), "a black/white checkered square"),
    (
        "zebra-triangle",
        dataset.TUNING_OBJECTS[2],
        ("green", "orange", "gray"),
        "a black triangle, white stripes",
    ),
    ("target-star", dataset.TUNING_OBJECTS[3], ("red", "white", "gray"), "a blue star with a yellow ring"),
    ("pumpkin-heart", dataset.TUNING_OBJECTS[4], ("purple", "white", "gray"), "an orange heart with a face"),
    ("dotted-cross", dataset.TUNING_OBJECTS[5], ("blue", "purple", "gray"), "a green cross with yellow dots"),
)


def _draw_concept(
    name: str, obj: tuple[str, str, str, str], backgrounds: tuple[str, ...], n: int
) -> list[Image.Image]:
    """``n`` renderings of ``obj`` in the world's poses (``dataset.sample_pose``), each on one of
    ``backgrounds``: what varies between a user's photos, within what the toy can draw."""
    colour, colour2, pattern, shape = obj
    rng = random.Random(f"concept:{name}")
    images = []
    for _ in range(n):
        background = rng.choice(backgrounds)
        radius, centre, angle = dataset.sample_pose(rng, shape)
        spec = dataset.ShapeSpec(shape, colour, background, radius, centre, angle, pattern, colour2)
        images.append(dataset.render(spec, rng=rng))
    return images


def _drawn(concepts: tuple[DrawnConcept, ...], n: int) -> list[SampleConcept]:
    return [
        SampleConcept(name, obj[3], _draw_concept(name, obj, bgs, n), description, Attributes.of_object(obj))
        for name, obj, bgs, description in concepts
    ]


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
            (dataset.IMAGE_SIZE, dataset.IMAGE_SIZE), Image.Resampling.LANCZOS
        )
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images.append(image)
    return images


def sample_concepts(
    *, images_per_concept: int = IMAGES_PER_CONCEPT, photos: bool = True
) -> list[SampleConcept]:
    """The bundled evaluation concepts (6 drawn, 2 photographs), deterministic, 64x64 RGB."""
    concepts = _drawn(DRAWN, images_per_concept)
    if photos:
        concepts += [
            SampleConcept(name, word, _photo_concept(name, loader, box, images_per_concept), description)
            for name, word, loader, box, description in PHOTOS
        ]
    return concepts


def tuning_concepts(*, images_per_concept: int = IMAGES_PER_CONCEPT) -> list[SampleConcept]:
    """The six drawn concepts kept for tuning (never in an evaluation table)."""
    return _drawn(TUNING, images_per_concept)


def get_concept(name: str, *, images_per_concept: int = IMAGES_PER_CONCEPT) -> SampleConcept:
    """A bundled concept (evaluation or tuning) by name."""
    everything = sample_concepts(images_per_concept=images_per_concept) + tuning_concepts(
        images_per_concept=images_per_concept
    )
    for concept in everything:
        if concept.name == name:
            return concept
    raise KeyError(f"unknown sample concept {name!r}; have {[c.name for c in everything]}")
