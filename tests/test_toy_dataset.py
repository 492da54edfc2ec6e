"""The procedural toy data set: deterministic, held-out combos never trained, captions truthful."""

from __future__ import annotations

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
