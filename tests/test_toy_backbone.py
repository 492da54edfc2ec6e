"""The shipped toy backbone: loads offline with ``from_pretrained``; the quick quality check.

``mnemo toy check --quick`` on the committed weights: 4 held-out colour x shape prompts and 4
held-out patterned objects (never seen in training) x 2 images, 25 DDIM steps, scored by the toy
classifier.

The committed weights (run N: one 70-minute `mnemo toy train`) draw the prompted shape and colour
(MODEL_CARD.md: held-out colour 100 %, shape 87.5 % on the full check; quick check 8/8 and 8/8)
and the prompted pattern of a held-out object in 59.7 % of the images (chance 16.7 %; issue 18's
target of 75 % is not met). The quick figures are pinned with a margin; the full check is held to
issue 3's colour and shape targets and to a pattern floor of 1/2 (three times chance), so that a
regression shows.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from core.engine.backbone import load_backbone
from core.engine.toy import WEIGHTS_DIR, dataset
from core.engine.toy.caption_probe import CAPTION_BANDS, caption_losses
from core.engine.toy.check import run_check
from core.engine.toy.classifier import FEATURE_DIM, evaluate_on_ground_truth, features, load_toy_classifier

# Issue 3's targets (colour >= 90 %, shape >= 75 % at 25 steps), on the full check's held-out set.
TARGET_COLOUR = 0.9
TARGET_SHAPE = 0.75
# The pattern of the 12 held-out objects: a regression floor at three times chance (1/6), below
# the 75 % target of issue 18 that the shipped weights miss (59.7 %; run M, shipped before, 43.1 %).
PATTERN_FLOOR = 1 / 2


@pytest.fixture(scope="module")
def toy():
    return load_backbone("toy")


def test_shipped_weights_are_small_safetensors_and_load_offline(toy):
    files = [p for p in WEIGHTS_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 32 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    assert json.loads((WEIGHTS_DIR / "model_index.json").read_text())["unet"][1] == "UNet2DConditionModel"
    assert toy.resolution == 64
    assert toy.latent_shape == (4, 16, 16)
    assert toy.prior_prompt == dataset.PRIOR_PROMPT
    assert toy.text_encoder.dtype == torch.float32
    assert toy.tokenizer("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]


def test_classifier_reads_the_generator_ground_truth():
    model = load_toy_classifier()
    accuracy = evaluate_on_ground_truth(model, seed=12345, n=256)
    assert accuracy["colour"] >= 0.95 and accuracy["shape"] >= 0.9
    assert accuracy["pattern"] >= 0.95 and accuracy["colours"] >= 0.9  # both colours of a pattern
    images = [dataset.sample(1, i)[0] for i in range(3)]
    feats = features(images)
    assert feats.shape == (3, FEATURE_DIM) and torch.isfinite(feats).all()
    assert torch.equal(feats, model.features(images))


@pytest.fixture(scope="module")
def quick_summary(toy, tmp_path_factory):
    grid = tmp_path_factory.mktemp("check") / "grid.png"
    return run_check(quick=True, steps=25, grid_path=grid, backbone=toy)


def test_quick_check_generates_scores_and_writes_a_grid(quick_summary):
    held = quick_summary["held_out"]
    assert held["images"] == 8
    assert set(held["combos"]) == {"red star", "blue triangle", "purple square", "orange circle"}
    assert 0.0 <= held["colour_accuracy"] <= 1.0 and 0.0 <= held["shape_accuracy"] <= 1.0
    objects = quick_summary["objects"]
    assert objects["images"] == 8 and len(objects["objects"]) == 4
    assert 0.0 <= objects["pattern_accuracy"] <= 1.0 and 0.0 <= objects["recognition"] <= 1.0
    assert quick_summary["seconds_per_image"] > 0
    # The VAE is not what limits the check: the judge reads its reconstructions.
    ceiling = quick_summary["vae_ceiling"]
    assert ceiling["colour"] >= 0.95 and ceiling["shape"] >= 0.9 and ceiling["pattern"] >= 0.9
    with Image.open(quick_summary["grid"]) as grid:
        assert grid.size[0] > 4 * 128


def test_quick_check_follows_the_colour_word(quick_summary):
    """Chance is 1/8; the text-deaf weights shipped before scored 0/8 here, the current ones 8/8."""
    assert quick_summary["held_out"]["colour_accuracy"] >= 0.75, quick_summary


def test_quick_check_follows_the_shape_word(quick_summary):
    """Chance is 1/6; the blob-drawing weights shipped before scored 1/8 here, the current ones 8/8."""
    assert quick_summary["held_out"]["shape_accuracy"] >= 0.5, quick_summary


def test_the_full_check_meets_issue_3s_targets_and_the_pattern_floor(toy):
    """``mnemo toy check`` as shipped (seed 0, 6 images per prompt, 48 held-out colour x shape
    images, 72 held-out object images): measured 100 % colour, 87.5 % shape, 59.7 % pattern."""
    summary = run_check(steps=25, backbone=toy)
    held = summary["held_out"]
    assert held["images"] == 48
    assert held["colour_accuracy"] >= TARGET_COLOUR, summary
    assert held["shape_accuracy"] >= TARGET_SHAPE, summary
    objects = summary["objects"]
    assert objects["images"] == 72 and len(objects["objects"]) == 12
    assert objects["pattern_accuracy"] >= PATTERN_FLOOR, summary


def test_caption_losses_compare_captions_on_shared_noise(toy):
    """The diagnostic behind MODEL_CARD.md's "text ignored": equal columns iff the text cannot matter."""
    import dataclasses

    bands = [f"{low}-{high}" for low, high in CAPTION_BANDS]
    losses = caption_losses(backbone=toy, n=8)
    assert list(losses) == bands
    assert all(set(row) == {"right", "wrong_colour", "wrong_shape", "empty"} for row in losses.values())
    assert all(0.0 < value < 10.0 for row in losses.values() for value in row.values())

    class Deaf(torch.nn.Module):  # one hidden state whatever the caption
        def forward(self, ids):
            return type("Out", (), {"last_hidden_state": torch.zeros(ids.shape[0], 77, 64)})()

    deaf = caption_losses(backbone=dataclasses.replace(toy, text_encoder=Deaf()), n=8)
    assert all(len(set(row.values())) == 1 for row in deaf.values())
    assert any(len(set(row.values())) > 1 for row in losses.values())
    high_noise = losses["800-1000"]
    assert high_noise["wrong_colour"] > 1.05 * high_noise["right"], losses  # the colour word is used
    assert high_noise["wrong_shape"] > 1.05 * high_noise["right"], losses  # and the shape word
