"""The concept-recognition metric: verdicts from the judge's readings, and the judge on images
whose attributes are known (rendered by the generator itself)."""

from __future__ import annotations

import random

import pytest

from core.engine.toy import dataset
from core.engine.toy.classifier import predict
from core.engine.toy.concepts import sample_concepts
from core.engine.toy.recognition import (
    Attributes,
    halves,
    object_attributes,
    recognition,
    summarise,
    verdicts,
)

BULLSEYE = Attributes(shape="circle", pattern="ringed", colours=frozenset({"red", "white"}))


def _reading(shape: str, pattern: str, *colours: str) -> dict:
    return {"shape": shape, "pattern": pattern, "colours": frozenset(colours), "colour": colours[0]}


def test_an_image_is_recognised_only_when_every_attribute_is_right():
    rows = verdicts(
        [
            _reading("circle", "ringed", "white", "red"),  # colour order does not matter
            _reading("square", "ringed", "red", "white"),
            _reading("circle", "striped", "red", "white"),
            _reading("circle", "ringed", "red"),
            _reading("circle", "ringed", "red", "blue"),
        ],
        BULLSEYE,
    )
    assert [r["recognised"] for r in rows] == [True, False, False, False, False]
    assert [r["shape"] for r in rows] == [True, False, True, True, True]
    rates = summarise(rows)
    assert rates == {"recognised": 0.2, "shape": 0.8, "pattern": 0.8, "colours": 0.6, "images": 5}


def test_attributes_of_an_object_tuple_and_of_a_spec():
    assert Attributes.of_object(("red", "white", "ringed", "circle")) == BULLSEYE
    spec = dataset.ShapeSpec("star", "blue", "gray", 20.0, (32.0, 32.0), 0.0)
    assert object_attributes(spec) == Attributes("star", "solid", frozenset({"blue"}))
    assert BULLSEYE.describe() == "red and white ringed circle"


@pytest.fixture(scope="module")
def judge():
    from core.engine.toy.classifier import load_toy_classifier

    return load_toy_classifier()


def test_the_judge_recognises_rendered_concepts_and_rejects_other_objects(judge):
    """The bundled concepts' own images (never seen by the toy backbone, seen by the judge) are
    recognised; images of a different object with a shared attribute are not."""
    for concept in sample_concepts(photos=False, images_per_concept=12):
        rates = recognition(concept.images, concept.attributes, model=judge)
        assert rates["recognised"] >= 0.9, (concept.name, rates)
    rng = random.Random(7)
    others = [dataset.sample_spec(rng, exclude=frozenset()) for _ in range(64)]
    others = [s for s in others if s.shape == "circle" or s.pattern == "ringed"]
    images = [dataset.render(s, rng=rng) for s in others if object_attributes(s) != BULLSEYE]
    assert recognition(images, BULLSEYE, model=judge)["recognised"] <= 0.05


def test_the_judge_reads_both_objects_of_a_two_object_image_from_its_halves(judge):
    rng = random.Random(3)
    specs = [dataset.sample_spec(rng, exclude=frozenset(), pair_p=1.0) for _ in range(48)]
    lefts, rights = zip(*(halves(dataset.render(s, rng=rng)) for s in specs), strict=True)
    left_ok = [
        verdicts([p], object_attributes(s))[0]["recognised"]
        for p, s in zip(predict(list(lefts), model=judge), specs, strict=True)
    ]
    right_ok = [
        verdicts([p], object_attributes(s.partner))[0]["recognised"]
        for p, s in zip(predict(list(rights), model=judge), specs, strict=True)
    ]
    assert sum(left_ok) / len(specs) >= 0.7 and sum(right_ok) / len(specs) >= 0.7, (
        sum(left_ok),
        sum(right_ok),
    )
