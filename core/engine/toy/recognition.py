"""Concept recognition: does a generated image show *this* concept? (the judge's verdict)

A toy concept is an object with known attributes: shape, pattern and the set of its colours
(``Attributes``). The judge classifier (``classifier.py``) reads each attribute from an
image; an image **recognises** the concept when every attribute read matches:

    recognised(x) = [shape(x) = s] · [pattern(x) = p] · [colours(x) = C]

and the recognition rate of a set of images is the mean of that indicator, reported beside
the rate of each attribute alone, so that a miss says what was missed. The background is
not an attribute of the concept (a user's dog is the same dog on any lawn); it is reported
separately when asked. This is the metric a person can read; the paper's feature metrics
(MMD, KID) sit beside it in ``core.engine.metrics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from core.engine.toy import dataset


@dataclass(frozen=True)
class Attributes:
    """What a toy concept is: its shape, its pattern and the colours on it."""

    shape: str
    pattern: str
    colours: frozenset[str]

    @classmethod
    def of_object(cls, obj: tuple[str, str | None, str, str]) -> Attributes:
        """From a ``dataset`` object tuple (colour, second colour, pattern, shape)."""
        colour, colour2, pattern, shape = obj
        return cls(shape=shape, pattern=pattern, colours=frozenset({colour, colour2} - {None}))  # type: ignore[arg-type]

    def describe(self) -> str:
        colours = " and ".join(sorted(self.colours))
        return f"{colours} {self.pattern} {self.shape}"


def verdicts(predictions: Sequence[dict[str, Any]], attributes: Attributes) -> list[dict[str, bool]]:
    """Per image: which attributes the judge read right, and ``recognised`` (all of them)."""
    rows = []
    for pred in predictions:
        row = {
            "shape": pred["shape"] == attributes.shape,
            "pattern": pred["pattern"] == attributes.pattern,
            "colours": frozenset(pred["colours"]) == attributes.colours,
        }
        row["recognised"] = all(row.values())
        rows.append(row)
    return rows


def summarise(rows: Sequence[dict[str, bool]]) -> dict[str, float]:
    """Rates (0-1) of ``recognised`` and of each attribute over ``rows``."""
    keys = ("recognised", "shape", "pattern", "colours")
    n = max(1, len(rows))
    return {key: round(sum(r[key] for r in rows) / n, 4) for key in keys} | {"images": len(rows)}


def recognition(images: Sequence[Image.Image], attributes: Attributes, *, model=None) -> dict[str, float]:
    """Recognition rate of ``attributes`` in ``images`` (and per attribute), by the toy judge."""
    from core.engine.toy.classifier import predict

    return summarise(verdicts(predict(list(images), model=model), attributes))


def halves(image: Image.Image) -> tuple[Image.Image, Image.Image]:
    """The left and right objects of a two-object image (``dataset.PAIR_CENTRES``), each cropped
    to a square around its centre and scaled back to 64x64, so the judge reads them one by one."""
    size = dataset.IMAGE_SIZE
    side = round(2.5 * dataset.PAIR_RADIUS_RANGE[1])
    crops = []
    for x in dataset.PAIR_CENTRES:
        left = min(max(0, round(x - side / 2)), size - side)
        top = round(size / 2 - side / 2)
        box = (left, top, left + side, top + side)
        crops.append(image.convert("RGB").crop(box).resize((size, size), Image.Resampling.BICUBIC))
    return crops[0], crops[1]


def object_attributes(spec: dataset.ShapeSpec) -> Attributes:
    """The attributes of a rendered ``ShapeSpec`` (ground truth for tests and checks)."""
    return Attributes.of_object(spec.object)
