"""Backbones: any SD 1.x/2.x diffusers folder, the shipped toy model, or a tiny random one.

All three have the same component classes (``UNet2DConditionModel`` with cross-attention
``attn2.to_k/to_v``, ``CLIPTextModel``, ``AutoencoderKL``, ``CLIPTokenizer``, a DDPM
scheduler), so every other module of the engine has exactly one code path.
Nothing here downloads: hub ids resolve only from a local cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from core.engine.errors import BackboneError
from core.engine.memory import set_gradient_checkpointing
from core.engine.precision import RuntimeOptions, cast_frozen, runtime_from_env
from core.engine.tokenizer import VOCAB_SIZE, build_clip_tokenizer

SD_PRIOR_PROMPT = "a photo of a person"
TOY_PRIOR_PROMPT = "a photo of a shape"


@dataclass
class Backbone:
    """The frozen pretrained components of a text-to-image model."""

    name: str
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    scheduler: DDPMScheduler
    resolution: int
    prior_prompt: str
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    """Precision, checkpointing and DC chunking this backbone runs with (``configure_runtime``)."""

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        size = self.resolution // factor
        return (self.unet.config.in_channels, size, size)

    @property
    def vae_scaling(self) -> float:
        return float(self.vae.config.scaling_factor)

    @cached_property
    def base_digest(self) -> str:
        """``weights_digest`` of this backbone, computed once: the base weights are frozen and
        adapters do not count, so a worker hashes its model once, not once per task."""
        return weights_digest(self)


def weights_digest(backbone: Backbone) -> str:
    """sha256 (16 hex) of every UNet, text-encoder and VAE tensor: names a backbone's weights
    in caches and benchmark records, whatever folder or code they came from.

    Only the base weights count: injected adapter tensors (peft's ``lora_*``) are left out and
    peft's ``base_layer`` wrapping is unwrapped, so a worker that has run a task names the same
    base model as a fresh one.
    """
    digest = hashlib.sha256()
    for part in (backbone.unet, backbone.text_encoder, backbone.vae):
        state = {
            name.replace(".base_layer.", "."): tensor
            for name, tensor in part.state_dict().items()
            if ".lora_" not in name
        }
        for name, tensor in sorted(state.items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def sd_scheduler() -> DDPMScheduler:
    """SD's training noise schedule (scaled-linear betas 0.00085-0.012, 1000 steps)."""
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
    )


def build_tiny_backbone(*, seed: int = 0, resolution: int = 16) -> Backbone:
    """A random tiny SD-architecture model (about 3 M parameters) for tests; builds in < 1 s."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=resolution // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=resolution,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    return _frozen(
        Backbone(
            name=f"tiny-{seed}",
            tokenizer=build_clip_tokenizer(),
            text_encoder=text_encoder,
            unet=unet,
            vae=vae,
            scheduler=sd_scheduler(),
            resolution=resolution,
            prior_prompt=TOY_PRIOR_PROMPT,
        )
    )


def load_backbone(
    spec: str = "toy", *, device: str | torch.device = "cpu", runtime: RuntimeOptions | None = None
) -> Backbone:
    """Load ``toy``, ``tiny`` or a diffusers SD folder / cached hub id, offline.

    ``runtime`` (default: ``MNEMO_PRECISION`` etc. from the environment, docs/gpu.md) sets the
    base's dtype and the memory savers; on CPU the default is fp32, as every backbone was before.
    """
    runtime = runtime or runtime_from_env(device=device)
    if spec == "tiny":
        backbone = build_tiny_backbone()
    elif spec == "toy":
        from core.engine.toy import WEIGHTS_DIR

        backbone = _load_folder(Path(WEIGHTS_DIR), name="toy", prior_prompt=TOY_PRIOR_PROMPT)
    else:
        backbone = _load_folder(Path(spec), name=spec, prior_prompt=SD_PRIOR_PROMPT)
    return configure_runtime(_to(backbone, device), runtime)


def configure_runtime(backbone: Backbone, runtime: RuntimeOptions) -> Backbone:
    """Store the frozen base in ``runtime.precision`` and switch gradient checkpointing (in place).

    ``runtime.precision`` must be resolved (``core.engine.precision.resolve_precision``). The
    trainable tensors stay fp32 (``core.engine.precision``); fp32 with checkpointing off is the
    backbone exactly as loaded.
    """
    cast_frozen((backbone.text_encoder, backbone.unet, backbone.vae), runtime.precision)
    set_gradient_checkpointing(backbone.unet, enabled=runtime.gradient_checkpointing)
    backbone.runtime = runtime
    return backbone


def _load_folder(folder: Path, *, name: str, prior_prompt: str) -> Backbone:
    source = folder.as_posix()  # a local folder, or a hub id resolved from the local cache only
    try:
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", local_files_only=True)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", local_files_only=True)
        scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler", local_files_only=True)
        tokenizer = _load_tokenizer(folder, source)
    except (OSError, ValueError) as error:
        raise BackboneError(f"cannot load backbone {name!r} offline: {error}") from error
    return from_components(
        name=name,
        tokenizer=tokenizer,
        text_encoder=text_encoder.float(),
        unet=unet.float(),
        vae=vae.float(),
        scheduler=scheduler,
        prior_prompt=prior_prompt,
    )


def from_components(
    *,
    name: str,
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    scheduler: DDPMScheduler,
    prior_prompt: str = SD_PRIOR_PROMPT,
) -> Backbone:
    """A frozen backbone of components built in code (e.g. from published configs, bench/gpu.py),
    at the resolution the UNet's ``sample_size`` and the VAE's downsampling give."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return _frozen(
        Backbone(
            name=name,
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            unet=unet,
            vae=vae,
            scheduler=scheduler,
            resolution=int(unet.config.sample_size) * factor,
            prior_prompt=prior_prompt,
        )
    )


def _load_tokenizer(folder: Path, source: str) -> CLIPTokenizer:
    if folder.exists() and not (folder / "tokenizer").exists():
        return build_clip_tokenizer()
    return CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=True)


def _frozen(backbone: Backbone) -> Backbone:
    for module in (backbone.text_encoder, backbone.unet, backbone.vae):
        module.requires_grad_(False)
        module.eval()
    return backbone


def _to(backbone: Backbone, device: str | torch.device) -> Backbone:
    for module in (backbone.text_encoder, backbone.unet, backbone.vae):
        module.to(device)
    return backbone
