"""Bundled sample concepts: at least 6, 4-10 images of 64x64 each, deterministic, unseen by the toy."""

from __future__ import annotations

import re

from core.engine.toy import dataset
from core.engine.toy.concepts import get_concept, sample_concepts, tuning_concepts


def test_sample_concepts_are_deterministic_and_well_formed():
    first, second = sample_concepts(), sample_concepts()
    assert len(first) >= 6
    assert len({c.name for c in first}) == len(first)
    for a, b in zip(first, second, strict=True):
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", a.name)
        assert 4 <= len(a.images) <= 10
        assert all(im.size == (64, 64) and im.mode == "RGB" for im in a.images)
        assert [im.tobytes() for im in a.images] == [im.tobytes() for im in b.images]
        # the class word is a word the toy was trained on, so its embedding is meaningful
        assert a.class_word in (*dataset.SHAPES, "shape")


def test_images_of_a_concept_vary():
    concept = get_concept("smiley")
    assert len({im.tobytes() for im in concept.images}) == len(concept.images)


def test_drawn_concepts_are_held_out_objects_and_tuning_ones_are_apart():
    evaluation, tuning = sample_concepts(photos=False), tuning_concepts()
    assert len(evaluation) == len(tuning) == 6
    assert not {c.name for c in evaluation} & {c.name for c in tuning}
    for concept in evaluation + tuning:
        attrs = concept.attributes
        assert attrs is not None and attrs.shape == concept.class_word
        assert len(attrs.colours) == 2 and attrs.pattern in dataset.PATTERNS[1:]
    objects = {(c.attributes.shape, c.attributes.pattern, c.attributes.colours) for c in evaluation + tuning}
    held = {(s, p, frozenset({c, c2})) for c, c2, p, s in dataset.HELD_OUT_OBJECTS}
    assert objects == held
    assert get_concept("ladybug").attributes == tuning[0].attributes
    photos = [c for c in sample_concepts() if c.attributes is None]
    assert {c.name for c in photos} == {"chelsea", "coffee"}
