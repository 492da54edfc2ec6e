"""Configurations of the toy backbone: Stable Diffusion's classes at a CPU-sized scale.

The toy uses exactly the component classes of SD 1.x (``UNet2DConditionModel`` with
cross-attention ``attn2.to_k/to_v``, ``AutoencoderKL``, ``CLIPTextModel``, the CLIP BPE
tokenizer and SD's ``scaled_linear`` DDPM schedule), so the engine has one code path.
64x64 RGB images are encoded by a 4x-downsampling VAE into 16x16x4 latents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IMAGE_SIZE = 64
LATENT_SIZE = 16
LATENT_CHANNELS = 4
VOCAB_SIZE = 49408
MAX_POSITIONS = 77
BOS_ID, EOS_ID, PAD_ID = 49406, 49407, 49407


@dataclass(frozen=True)
class ToyArchitecture:
    """Sizes of the three networks; ``build_*`` turn them into untrained modules."""

    text_hidden: int = 64
    text_layers: int = 4
    text_heads: int = 4
    text_intermediate: int = 256
    # CLIP initialises token rows with std 0.02, as small as the position embeddings: trained
    # from scratch jointly with the UNet, the text encoder's output then barely depends on the
    # caption (measured: std across captions 0.04 of the total after 1,200 steps, and the UNet's
    # loss identical for right, wrong and empty captions). Larger token rows make the caption
    # dominate the residual stream from step 0.
    text_token_init_std: float = 0.3
    # The 70-odd padding positions (pad = eos = 49407) are most of what cross-attention sees;
    # a zero pad row and 2x value/output projections make them carry a causal summary of the
    # caption from step 0 (measured: red/blue difference at padding positions 0.5 -> 3.7 of 8).
    text_zero_pad_row: bool = True
    text_mix_gain: float = 2.0
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_layers_per_block: int = 1
    # diffusers' ``attention_head_dim`` is the number of heads per level (a historical name): SD's
    # 8 would split the 32 channels at 16x16 into 8 heads of 4; (2, 4, 8) gives 16 channels per
    # head everywhere and trains 1.4x faster (MODEL_CARD.md, runs D and H).
    unet_head_dim: int | tuple[int, ...] = (2, 4, 8)
    # A second text path besides cross-attention: an attention pool of the caption's hidden
    # states added to the time embedding (diffusers' ``addition_embed_type="text"``), which
    # every ResNet block then applies as a FiLM scale and shift (``scale_shift``, as ADM's
    # adaptive GroupNorm). Cross-attention alone learned colour but not shape (MODEL_CARD.md).
    unet_text_time_embedding: bool = True
    unet_time_scale_shift: bool = True
    vae_channels: tuple[int, ...] = (32, 64, 64)
    vae_layers_per_block: int = 1
    # 8 groups, not SD's 32: with 32 channels, 32 groups normalise every channel on its own, which
    # erases the absolute colour of flat regions (the VAE's and UNet's last GroupNorm then cannot
    # represent a uniform background); 4-16 channels per group keep it.
    norm_groups: int = 8
    # What the UNet predicts. With epsilon prediction the loss at high noise (where the caption
    # decides the image) is ~(alpha/sigma)^2 times the x0 error, e.g. 0.01x at t=900: measured,
    # an epsilon toy's loss was the same for right, wrong and empty captions in every t band.
    # v-prediction (as SD 2.x) keeps that error at full weight.
    prediction_type: str = "v_prediction"
    # SD's scaled_linear schedule leaves sqrt(alpha_bar) = 0.068 of the image in x_1000: at 16x16,
    # the noise's per-channel mean (std 1/16) is as large as that leaked colour, so a model trained
    # on it reads the colour partly from the starting noise, which at sampling time is random.
    # Zero terminal SNR (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are
    # Flawed": betas rescaled so that x_1000 is pure noise, "trailing" steps that start at t=999)
    # leaves the caption alone to decide it. Needs v-prediction.
    zero_terminal_snr: bool = False
    scheduler: dict[str, Any] = field(
        default_factory=lambda: {
            "num_train_timesteps": 1000,
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "steps_offset": 1,
            "clip_sample": False,
        }
    )

    def __post_init__(self) -> None:
        if problems := self.problems():
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        """Combinations the diffusers classes would reject (or fail on at the first forward)."""
        found = []
        levels = len(self.unet_channels)
        heads = self.unet_head_dim
        if isinstance(heads, int):
            heads = (heads,) * levels
        if len(heads) != levels:
            found.append(f"{len(heads)} head counts for {levels} UNet levels (one per level)")
        for channels, count in zip(self.unet_channels, heads, strict=False):
            if count < 1 or channels % count:
                found.append(f"{channels} UNet channels do not split into {count} attention heads")
        for name, channels in (("UNet", self.unet_channels), ("VAE", self.vae_channels)):
            if any(c % self.norm_groups for c in channels):
                groups = f"{self.norm_groups} GroupNorm groups"
                found.append(f"{name} channels {tuple(channels)} do not split into {groups}")
        if self.text_hidden % self.text_heads:
            found.append(f"text hidden size {self.text_hidden} does not split into {self.text_heads} heads")
        if self.zero_terminal_snr and self.prediction_type != "v_prediction":
            found.append("zero terminal SNR needs v-prediction (an epsilon model cannot denoise pure noise)")
        return found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def unet_config(self) -> dict[str, Any]:
        levels = len(self.unet_channels)
        return {
            "sample_size": LATENT_SIZE,
            "in_channels": LATENT_CHANNELS,
            "out_channels": LATENT_CHANNELS,
            "layers_per_block": self.unet_layers_per_block,
            "block_out_channels": tuple(self.unet_channels),
            "down_block_types": ("CrossAttnDownBlock2D",) * levels,
            "up_block_types": ("CrossAttnUpBlock2D",) * levels,
            "cross_attention_dim": self.text_hidden,
            "attention_head_dim": self.unet_head_dim,
            "norm_num_groups": self.norm_groups,
            "addition_embed_type": "text" if self.unet_text_time_embedding else None,
            "resnet_time_scale_shift": "scale_shift" if self.unet_time_scale_shift else "default",
        }

    def vae_config(self) -> dict[str, Any]:
        levels = len(self.vae_channels)
        return {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ("DownEncoderBlock2D",) * levels,
            "up_block_types": ("UpDecoderBlock2D",) * levels,
            "block_out_channels": tuple(self.vae_channels),
            "layers_per_block": self.vae_layers_per_block,
            "latent_channels": LATENT_CHANNELS,
            "sample_size": IMAGE_SIZE,
            "norm_num_groups": self.norm_groups,
            "scaling_factor": 1.0,
        }

    def text_config(self) -> dict[str, Any]:
        return {
            "vocab_size": VOCAB_SIZE,
            "hidden_size": self.text_hidden,
            "intermediate_size": self.text_intermediate,
            "num_hidden_layers": self.text_layers,
            "num_attention_heads": self.text_heads,
            "max_position_embeddings": MAX_POSITIONS,
            "projection_dim": self.text_hidden,
            "hidden_act": "quick_gelu",
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
        }

    def build_unet(self):
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel(**self.unet_config())

    def build_vae(self):
        from diffusers import AutoencoderKL

        return AutoencoderKL(**self.vae_config())

    def build_text_encoder(self):
        import torch
        from transformers import CLIPTextConfig, CLIPTextModel

        model = CLIPTextModel(CLIPTextConfig(**self.text_config()))
        with torch.no_grad():
            model.get_input_embeddings().weight.normal_(0.0, self.text_token_init_std)
            if self.text_zero_pad_row:
                model.get_input_embeddings().weight[PAD_ID].zero_()
            for name, parameter in model.named_parameters():
                if name.endswith(("v_proj.weight", "out_proj.weight")):
                    parameter.mul_(self.text_mix_gain)
        return model

    def build_scheduler(self):
        from diffusers import DDPMScheduler

        extra = {}
        if self.zero_terminal_snr:
            extra = {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}
        return DDPMScheduler(**self.scheduler, **extra, prediction_type=self.prediction_type)


TOY = ToyArchitecture()
