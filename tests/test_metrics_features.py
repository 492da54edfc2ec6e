"""Feature extractors: a tiny random CLIP vision model saved locally, and the random proxy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.engine.metrics.features import (
    ClipImageFeatures,
    FeatureExtractor,
    RandomProxyFeatures,
    load_feature_extractor,
    standardize,
)


def _images(n: int, *, seed: int = 0, size: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=16,
    )
    folder = tmp_path_factory.mktemp("tiny-clip")
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


def test_clip_features_from_local_folder(clip_folder):
    extractor = load_feature_extractor(str(clip_folder))
    assert isinstance(extractor, ClipImageFeatures)
    assert isinstance(extractor, FeatureExtractor)
    assert extractor.name == f"clip:{clip_folder.name}"
    images = _images(3)
    feats = extractor(images)
    assert feats.shape == (3, 16) and torch.isfinite(feats).all()
    # deterministic, batch-size independent, and different images -> different features
    extractor.batch_size = 2
    assert torch.allclose(extractor(images), feats, atol=1e-5)
    assert not torch.allclose(feats[0], feats[1])


def test_clip_features_match_the_model_on_preprocessed_pixels(clip_folder):
    from transformers import CLIPVisionModelWithProjection

    extractor = ClipImageFeatures(clip_folder)
    image = Image.new("RGB", (32, 32), (255, 0, 0))
    pixels = torch.empty(1, 3, 32, 32)
    for channel, (value, mean, std) in enumerate(
        zip((1.0, 0.0, 0.0), extractor.mean, extractor.std, strict=True)
    ):
        pixels[:, channel] = (value - mean) / std
    model = CLIPVisionModelWithProjection.from_pretrained(clip_folder, local_files_only=True).eval()
    with torch.no_grad():
        expected = model(pixel_values=pixels).image_embeds
    assert torch.allclose(extractor([image]), expected, atol=1e-5)


def test_missing_clip_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no download"):
        ClipImageFeatures(tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown feature extractor"):
        load_feature_extractor(str(tmp_path / "nope"))


def test_random_proxy_is_seeded_and_labelled():
    images = _images(4, seed=1)
    a = RandomProxyFeatures(seed=0)(images)
    b = RandomProxyFeatures(seed=0)(images)
    assert RandomProxyFeatures.name == "random-proxy"
    assert a.shape == (4, 64) and torch.equal(a, b)
    with pytest.raises(ValueError, match="no images"):
        RandomProxyFeatures()([])


def test_standardize_turns_the_kernel_argument_into_a_cosine():
    x = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    z = standardize(x)
    assert torch.allclose((z * z).sum(1), torch.full((2,), 2.0, dtype=torch.float64))
    # x.y/d for the standardised rows = cos(x0, x1) = 4/5
    assert (z[0] @ z[1] / 2).item() == pytest.approx(0.8)
