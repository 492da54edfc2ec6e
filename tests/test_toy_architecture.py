"""The toy architecture uses SD's component classes, so the engine has one code path."""

from __future__ import annotations

import json
from dataclasses import replace

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel

from core.engine.backbone import load_backbone
from core.engine.toy.architecture import TOY
from core.engine.toy.train import TrainConfig, train


def test_components_are_the_stable_diffusion_classes():
    unet, vae, text = TOY.build_unet(), TOY.build_vae(), TOY.build_text_encoder()
    assert isinstance(unet, UNet2DConditionModel)
    assert isinstance(vae, AutoencoderKL)
    assert isinstance(text, CLIPTextModel)
    names = [name for name, _ in unet.named_modules()]
    assert any(name.endswith("attn2.to_k") for name in names)
    assert any(name.endswith("attn2.to_v") for name in names)
    assert text.config.vocab_size == 49408
    assert (text.config.bos_token_id, text.config.eos_token_id, text.config.pad_token_id) == (
        49406,
        49407,
        49407,
    )
    assert unet.config.cross_attention_dim == text.config.hidden_size
    scheduler = TOY.build_scheduler()
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert (scheduler.config.beta_start, scheduler.config.beta_end) == (0.00085, 0.012)
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
    assert latents.shape == (1, 4, 16, 16)


def test_training_script_writes_a_loadable_pipeline_folder_and_a_loss_log(tmp_path):
    config = TrainConfig(
        minutes=5.0, vae_steps=2, vae_batch=2, pool_size=8, scale_images=16, unet_steps=3, unet_batch=2
    )
    summary = train(config=config, out=tmp_path)
    assert summary["vae_steps_done"] == 2 and summary["unet_steps_done"] == 3
    assert summary["scaling_factor"] > 0
    log = json.loads((tmp_path / "training_log.json").read_text())
    assert [row["stage"] for row in log["rows"]] == ["vae", "unet"]
    assert (tmp_path / "training_log.csv").read_text().startswith("kl,l1,l2,loss,lr")
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    backbone = load_backbone(str(tmp_path))
    assert backbone.resolution == 64
    assert backbone.vae_scaling == summary["scaling_factor"]
    assert backbone.text_encoder.dtype == torch.float32  # stored in fp16, loaded as fp32
    assert len(backbone.tokenizer) == 49408


def test_resume_continues_stage_two_and_keeps_the_vae_and_the_log(tmp_path):
    first = TrainConfig(
        minutes=5.0, vae_steps=2, vae_batch=2, pool_size=8, scale_images=16, unet_steps=2, unet_batch=2
    )
    train(config=first, out=tmp_path / "a")
    vae_before = (tmp_path / "a" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    summary = train(config=replace(first, seed=1), out=tmp_path / "b", resume=tmp_path / "a")
    assert summary["resumed_from"] == str(tmp_path / "a")
    assert "vae_steps_done" not in summary and summary["unet_steps_done"] == 2
    assert (tmp_path / "b" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == vae_before
    log = json.loads((tmp_path / "b" / "training_log.json").read_text())
    assert len(log["previous_runs"]) == 1 and log["previous_runs"][0]["vae_steps_done"] == 2
    assert load_backbone(str(tmp_path / "b")).resolution == 64
