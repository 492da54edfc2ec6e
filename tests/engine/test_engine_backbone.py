"""Backbones load offline from a diffusers folder or a cached hub id; the tokenizer is SD's."""

from __future__ import annotations

import pytest
import torch

from core.engine.adapters import ensure_slot
from core.engine.backbone import build_tiny_backbone, load_backbone, weights_digest
from core.engine.config import TINY
from core.engine.errors import BackboneError
from core.engine.prior import prior_latents
from core.engine.tokenizer import build_clip_tokenizer


def save_as_sd_folder(backbone, folder):
    for name in ("unet", "vae", "text_encoder", "scheduler", "tokenizer"):
        getattr(backbone, name).save_pretrained(folder / name)


def test_clip_tokenizer_matches_sd_ids():
    tokenizer = build_clip_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]


def test_load_a_local_diffusers_folder(tmp_path):
    original = build_tiny_backbone(seed=3)
    save_as_sd_folder(original, tmp_path / "sd")
    loaded = load_backbone(str(tmp_path / "sd"))
    assert loaded.resolution == original.resolution == 16
    for name, tensor in original.unet.state_dict().items():
        assert torch.equal(tensor, loaded.unet.state_dict()[name]), name
    assert loaded.tokenizer("a photo of a dog").input_ids == original.tokenizer("a photo of a dog").input_ids
    assert not any(p.requires_grad for p in loaded.unet.parameters())


def test_load_a_hub_id_from_the_local_cache_only(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-sd" / "snapshots" / ("0" * 40)
    save_as_sd_folder(build_tiny_backbone(seed=4), snapshot)
    (cache / "models--acme--tiny-sd" / "refs").mkdir(parents=True)
    (cache / "models--acme--tiny-sd" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    loaded = load_backbone("acme/tiny-sd")
    assert loaded.name == "acme/tiny-sd" and loaded.latent_shape == (4, 8, 8)


def test_a_missing_backbone_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="offline"):
        load_backbone(str(tmp_path / "nowhere"))


def test_weights_digest_names_the_weights_not_the_object():
    first, again = build_tiny_backbone(seed=0), build_tiny_backbone(seed=0)
    assert weights_digest(first) == weights_digest(again)
    assert weights_digest(build_tiny_backbone(seed=1)) != weights_digest(first)
    with torch.no_grad():
        next(again.unet.parameters()).view(-1)[0] += 1e-3
    assert weights_digest(again) != weights_digest(first)


def test_weights_digest_ignores_an_injected_adapter():
    """A worker that has run a task (LoRA slots injected) names the same base model as a fresh one."""
    fresh, used = build_tiny_backbone(seed=0), build_tiny_backbone(seed=0)
    ensure_slot(used.unet, "task_0", config=TINY)
    assert any(".lora_" in name for name in used.unet.state_dict())
    assert weights_digest(used) == weights_digest(fresh)


def test_prior_cache_is_keyed_by_the_weights(tmp_path):
    """Retrained weights under the same backbone name must not reuse the old model's prior images."""
    config = TINY.with_(prior_images=2, prior_steps=2)
    old, retrained = build_tiny_backbone(seed=0), build_tiny_backbone(seed=0)
    with torch.no_grad():
        for parameter in retrained.unet.parameters():
            parameter.mul_(1.1)
    assert old.name == retrained.name
    first = prior_latents(old, config=config, cache_dir=tmp_path)
    second = prior_latents(retrained, config=config, cache_dir=tmp_path)
    assert len(list(tmp_path.rglob("prior-*.safetensors"))) == 2
    assert not torch.equal(first, second)
    assert torch.equal(prior_latents(old, config=config, cache_dir=tmp_path), first)  # a cache hit
    assert old.base_digest == weights_digest(old)
