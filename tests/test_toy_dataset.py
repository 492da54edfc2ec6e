"""The procedural toy data set: deterministic, held-out combos never trained, captions truthful."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from core.engine.toy import dataset


def test_samples_are_a_pure_function_of_seed_and_index():
    a_image, a_caption, a_spec = dataset.sample(3, 17)
    b_image, b_caption, b_spec = dataset.sample(3, 17)
    assert a_image.tobytes() == b_image.tobytes()
    assert (a_caption, a_spec) == (b_caption, b_spec)
    assert dataset.sample(3, 18)[0].tobytes() != a_image.tobytes()
    assert a_image.size == (64, 64) and a_image.mode == "RGB"


def test_held_out_combinations_never_appear_in_training_data():
    seen = {(spec.colour, spec.shape) for _, _, spec in (dataset.sample(0, i) for i in range(1500))}
    assert not seen & dataset.HELD_OUT
    assert seen == set(dataset.TRAIN_COMBOS)
    assert len(dataset.HELD_OUT) == 8
    # every shape and every colour is still seen in other combinations
    assert {s for _, s in seen} == set(dataset.SHAPES)
    assert {c for c, _ in seen} == set(dataset.COLOUR_NAMES)


def test_held_out_objects_never_appear_in_training_data_but_their_parts_do():
    specs = [dataset.sample(0, i)[2] for i in range(6000)]
    seen_objects = {spec.object for spec in specs}
    assert not seen_objects & dataset.HELD_OUT_OBJECTS
    assert len(dataset.HELD_OUT_OBJECTS) == 12
    assert {spec.pattern for spec in specs} == set(dataset.PATTERNS)
    solid = sum(spec.pattern == "solid" for spec in specs) / len(specs)
    assert abs(solid - dataset.SOLID_P) < 0.03
    for colour, colour2, pattern, shape in dataset.HELD_OUT_OBJECTS:
        # each part of a held-out object is seen in other objects
        assert any(s.pattern == pattern and s.shape == shape for s in specs)
        assert any(s.pattern == pattern and s.colours == {colour, colour2} for s in specs)
    assert all(spec.background not in spec.colours for spec in specs)


def test_patterned_captions_name_both_colours_with_the_pattern_or_neither():
    rng = random.Random(0)
    spec = dataset.ShapeSpec("circle", "red", "blue", 20.0, (32.0, 32.0), 0.0, "striped", "white")
    captions = {dataset.sample_caption(rng, spec) for _ in range(3000)}
    assert "a photo of a red and white striped circle on a blue background" in captions
    assert "a photo of a striped circle" in captions and "a photo of a circle" in captions
    for caption in captions - {"", dataset.PRIOR_PROMPT}:
        words = set(caption.split())
        assert not words & (set(dataset.PATTERNS) - {"striped"})
        assert not words & (set(dataset.COLOUR_NAMES) - {"red", "white", "blue"})
        if words & {"red", "white"}:  # a colour is never named without the pattern
            assert {"red", "white", "striped"} <= words, caption


@pytest.mark.parametrize("pattern", dataset.PATTERNS[1:])
def test_patterns_paint_the_second_colour_inside_the_shape_only(pattern):
    spec = dataset.ShapeSpec("square", "red", "blue", 22.0, (32.0, 32.0), 0.0, pattern, "yellow")
    pixels = np.asarray(dataset.render(spec, rng=random.Random(1))).astype(int)

    def share(rgb, region):
        return float((np.abs(region - np.array(rgb)).max(axis=-1) <= 30).mean())

    inside, corner = pixels[20:44, 20:44], pixels[:6, :6]
    assert 0.05 < share(dataset.COLOURS["yellow"], inside) < 0.7
    assert share(dataset.COLOURS["red"], inside) > 0.2
    assert share(dataset.BACKGROUNDS["blue"], corner) == 1.0
    solid = dataclasses.replace(spec, pattern="solid", colour2=None)
    assert share(dataset.COLOURS["yellow"], np.asarray(dataset.render(solid)).astype(int)) == 0.0


def test_captions_describe_the_image_and_include_prior_and_empty():
    rng = random.Random(0)
    spec = dataset.ShapeSpec("star", "orange", "blue", 15.0, (32.0, 32.0), 0.0)
    captions = [dataset.sample_caption(rng, spec) for _ in range(2000)]
    empty = captions.count("") / len(captions)
    prior = captions.count(dataset.PRIOR_PROMPT) / len(captions)
    assert 0.07 < empty < 0.13
    assert 0.07 < prior < 0.13
    for caption in captions:
        if caption and caption != dataset.PRIOR_PROMPT:
            assert "star" in caption or "orange shape" in caption
            words = caption.split()
            assert not (set(words) & (set(dataset.COLOUR_NAMES) - {"orange", "blue"}))
    assert "a photo of an orange star on a blue background" in captions


@pytest.mark.parametrize(("weight", "low", "high"), [(0.0, 0.0, 0.0), (0.5, 0.02, 0.06), (2.5, 0.14, 0.20)])
def test_colour_only_captions_follow_their_weight(weight, low, high):
    rng = random.Random(0)
    spec = dataset.ShapeSpec("star", "orange", "blue", 15.0, (32.0, 32.0), 0.0)
    templates = dataset.caption_templates(colour_only_weight=weight)
    captions = [dataset.sample_caption(rng, spec, templates=templates) for _ in range(4000)]
    share = captions.count("a photo of an orange shape") / len(captions)  # 80 % are templated
    assert low <= share <= high, share
    assert dataset.caption_templates() == dataset.CAPTION_TEMPLATES  # the default changes nothing


def test_rendered_colours_match_the_spec():
    spec = dataset.ShapeSpec("square", "red", "blue", 20.0, (32.0, 32.0), 0.0)
    pixels = np.asarray(dataset.render(spec, rng=random.Random(1))).astype(int)
    centre, corner = pixels[32, 32], pixels[1, 1]
    assert np.abs(centre - dataset.COLOURS["red"]).max() <= 12
    assert np.abs(corner - dataset.BACKGROUNDS["blue"]).max() <= 12


def test_batch_is_in_vae_range():
    images, captions, specs = dataset.batch(0, 0, 4)
    assert images.shape == (4, 3, 64, 64) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert len(captions) == len(specs) == 4


def test_two_object_scenes_are_captioned_left_then_right_and_drawn_apart():
    rng = random.Random(5)
    spec = dataset.sample_spec(rng, pair_p=1.0)
    assert spec.partner is not None and spec.partner.background == spec.background
    assert spec.centre[0] < 32 < spec.partner.centre[0]
    captions = {dataset.sample_caption(rng, spec) for _ in range(400)} - {"", dataset.PRIOR_PROMPT}
    assert captions and all(
        dataset.describe(spec) + " and " + dataset.describe(spec.partner) in c for c in captions
    )
    pairs = sum(dataset.sample(0, i)[2].partner is not None for i in range(2000)) / 2000
    assert abs(pairs - dataset.PAIR_P) < 0.03
    image = np.asarray(dataset.render(spec, rng=rng)).astype(int)
    gap = image[28:36, 31:33]  # between the two objects: background only
    assert np.abs(gap - dataset.BACKGROUNDS[spec.background]).max() <= 24
