"""Bundled sample concepts: at least 6, 4-10 images of 64x64 each, deterministic, unseen by the toy."""

from __future__ import annotations

import re

from core.engine.toy import dataset
from core.engine.toy.concepts import get_concept, sample_concepts


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
