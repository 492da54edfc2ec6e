"""The toy architecture uses SD's component classes, so the engine has one code path."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel

from core.engine.backbone import load_backbone
from core.engine.toy import dataset
from core.engine.toy.architecture import TOY
from core.engine.toy.caption_probe import CaptionProbe
from core.engine.toy.train import TrainConfig, min_snr_weights, train, training_latents


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
    assert [row["stage"] for row in log["rows"]] == ["vae", "probe", "unet"]
    assert (tmp_path / "training_log.csv").read_text().startswith("caption_gap,kl,l1,l2,loss,lr")
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


def test_vae_from_skips_stage_one_and_trains_a_v_prediction_denoiser(tmp_path):
    config = TrainConfig(
        minutes=5.0, vae_steps=2, vae_batch=2, pool_size=8, scale_images=16, unet_steps=2, unet_batch=2
    )
    train(config=config, out=tmp_path / "a")
    summary = train(config=replace(config, seed=1), out=tmp_path / "b", vae_from=tmp_path / "a")
    assert "vae_steps_done" not in summary and summary["unet_steps_done"] == 2
    vae = "vae/diffusion_pytorch_model.safetensors"
    assert (tmp_path / "b" / vae).read_bytes() == (tmp_path / "a" / vae).read_bytes()
    assert load_backbone(str(tmp_path / "b")).scheduler.config.prediction_type == "v_prediction"


def testmin_snr_weights_by_prediction_type():
    t = torch.tensor([10, 500, 900])
    alphas = TOY.build_scheduler().alphas_cumprod[t]
    snr = alphas / (1 - alphas)
    v = TOY.build_scheduler()
    eps = replace(TOY, prediction_type="epsilon").build_scheduler()
    assert torch.equal(min_snr_weights(v, t, 0.0), torch.ones(3))
    assert torch.allclose(min_snr_weights(eps, t, 5.0), snr.clamp(max=5) / snr)
    assert torch.allclose(min_snr_weights(v, t, 5.0), snr.clamp(max=5) / (snr + 1))
    # the reason it is off by default: at t = 900 Min-SNR leaves ~1 % weight on the x0 error
    assert min_snr_weights(v, t, 5.0)[2] < 0.02


def test_caption_probe_is_zero_exactly_when_the_text_cannot_matter():
    from core.engine.tokenizer import build_clip_tokenizer

    torch.manual_seed(0)
    specs = [dataset.sample_spec(random.Random(i)) for i in range(8)]
    probe = CaptionProbe(
        latents=torch.randn(8, 4, 16, 16),
        specs=specs,
        tokenizer=build_clip_tokenizer(),
        scheduler=TOY.build_scheduler(),
        seed=0,
        n=8,
    )
    assert not torch.equal(probe.right_ids, probe.wrong_ids)
    unet, text = TOY.build_unet().eval(), TOY.build_text_encoder().eval()
    assert probe.gap(unet=unet, text_encoder=text) != 0.0

    class Deaf(torch.nn.Module):  # one hidden state for every caption
        def forward(self, ids):
            return type("Out", (), {"last_hidden_state": torch.ones(ids.shape[0], 77, 64)})()

    assert probe.gap(unet=unet, text_encoder=Deaf()) == 0.0


def test_train_cli_parses_int_lists_and_rejects_garbage(capsys) -> None:
    from core.cli.main import build_parser

    args = build_parser().parse_args(
        ["toy", "train", "--snapshot-steps", "4000, 8000", "--unet-heads", "2,4,8"]
    )
    assert args.snapshot_steps == (4000, 8000) and args.unet_heads == (2, 4, 8)
    defaults = build_parser().parse_args(["toy", "train"])
    assert defaults.snapshot_steps == () and defaults.unet_heads == () and defaults.unet_channels == ()
    assert defaults.posterior_means is None and defaults.scale_shift is None  # the config decides
    off = build_parser().parse_args(["toy", "train", "--no-posterior-means", "--no-text-time-embedding"])
    assert off.posterior_means is False and off.text_time_embedding is False
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["toy", "train", "--snapshot-steps", "4k"])
    assert exit_info.value.code == 2
    assert "expected integers like 4000,8000, got '4k'" in capsys.readouterr().err


def test_per_level_head_counts_reach_the_unet() -> None:
    unet = replace(TOY, unet_head_dim=(2, 4, 8)).build_unet()
    heads = [block.attentions[0].transformer_blocks[0].attn2.heads for block in unet.down_blocks]
    assert heads == [2, 4, 8]


def test_the_pooled_caption_reaches_the_unet_without_cross_attention() -> None:
    torch.manual_seed(0)
    unet = TOY.build_unet().eval()
    for name, module in unet.named_modules():  # silence the cross-attention path
        if name.endswith("attn2.to_out.0"):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    x, t = torch.randn(1, 4, 16, 16), torch.tensor([500])
    with torch.no_grad():
        a = unet(x, t, torch.randn(1, 77, 64)).sample
        b = unet(x, t, torch.randn(1, 77, 64)).sample
    assert not torch.allclose(a, b)
    assert TOY.build_unet().config.addition_embed_type == "text"  # the shipped default
    assert replace(TOY, unet_text_time_embedding=False).build_unet().config.addition_embed_type is None


def test_train_cli_builds_the_unet_it_was_asked_for(tmp_path) -> None:
    from core.cli.main import build_parser

    args = build_parser().parse_args(
        ["toy", "train", "--what", "backbone", "--out", str(tmp_path), "--minutes", "5", "--vae-steps", "1",
         "--unet-steps", "1", "--pool-size", "4", "--unet-heads", "2,4", "--unet-channels", "32,48",
         "--unet-layers", "2", "--unet-batch", "3", "--posterior-means", "--text-time-embedding",
         "--scale-shift", "--zero-terminal-snr", "--colour-only-weight", "3"]
    )  # fmt: skip
    assert args.handler(args) == 0
    config = json.loads((tmp_path / "unet" / "config.json").read_text())
    assert config["attention_head_dim"] == [2, 4]
    assert config["block_out_channels"] == [32, 48] and config["layers_per_block"] == 2
    assert config["addition_embed_type"] == "text" and config["resnet_time_scale_shift"] == "scale_shift"
    scheduler = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["rescale_betas_zero_snr"] is True and scheduler["timestep_spacing"] == "trailing"
    log = json.loads((tmp_path / "training_log.json").read_text())
    assert log["unet_steps_done"] == 1
    assert log["config"]["unet_batch"] == 3 and log["config"]["posterior_means"] is True
    assert log["config"]["colour_only_weight"] == 3.0


def test_training_latents_are_the_posterior_mean_or_a_sample() -> None:
    mean, std, noise = torch.randn(2, 4, 16, 16), torch.full((2, 4, 16, 16), 0.5), torch.randn(2, 4, 16, 16)
    means = training_latents(mean, std, noise=noise, scale=0.6, posterior_means=True)
    samples = training_latents(mean, std, noise=noise, scale=0.6, posterior_means=False)
    assert torch.allclose(means, mean * 0.6)
    assert torch.allclose(samples, (mean + 0.5 * noise) * 0.6)


def test_zero_terminal_snr_leaves_no_image_in_the_last_step_and_sampling_starts_there() -> None:
    from diffusers import DDIMScheduler

    from core.engine.losses import regression_target

    flawed, fixed = TOY.build_scheduler(), replace(TOY, zero_terminal_snr=True).build_scheduler()
    assert flawed.alphas_cumprod[999] > 0.004  # SD's schedule: 6.8 % of the image's amplitude survives
    assert fixed.alphas_cumprod[999] == 0.0
    x0, noise, t = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16), torch.tensor([999, 999])
    assert torch.equal(fixed.add_noise(x0, noise, t), noise)  # x_1000 says nothing about the image
    assert torch.allclose(regression_target(fixed, x0, noise, t), -x0)  # v = -x0: the caption must say it
    sampler = DDIMScheduler.from_config(fixed.config)
    sampler.set_timesteps(25)
    assert int(sampler.timesteps[0]) == 999
    flawed_sampler = DDIMScheduler.from_config(flawed.config)
    flawed_sampler.set_timesteps(25)
    assert int(flawed_sampler.timesteps[0]) == 961


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--unet-heads", "2,4"], "2 head counts for 3 UNet levels"),
        (["--unet-channels", "32,60,128"], "(32, 60, 128) do not split into 8 GroupNorm groups"),
        (["--unet-heads", "2,4,6"], "128 UNet channels do not split into 6 attention heads"),
        (["--zero-terminal-snr", "--prediction-type", "epsilon"], "zero terminal SNR needs v-prediction"),
    ],
)
def test_train_cli_rejects_architectures_diffusers_cannot_build(tmp_path, capsys, flags, message) -> None:
    from core.cli.main import build_parser

    args = build_parser().parse_args(["toy", "train", "--out", str(tmp_path / "out"), *flags])
    assert args.handler(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
