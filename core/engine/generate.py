"""Text-to-image sampling with a user's tokens and adapters (DDIM, classifier-free guidance)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import DDIMScheduler
from PIL import Image

from core.engine.adapters import activate, ensure_slot, kv_delta_applied, write_slot
from core.engine.backbone import Backbone
from core.engine.config import EngineConfig
from core.engine.data import decode_images
from core.engine.methods import get_method
from core.engine.precision import autocast
from core.engine.state import UserState
from core.engine.tokens import check_tokens, encode_prompts

MAX_IMAGES = 16
MAX_STEPS = 200


def generate(
    *,
    backbone: Backbone,
    state: UserState,
    prompt: str,
    negative_prompt: str = "",
    n: int = 1,
    steps: int = 25,
    guidance_scale: float = 7.5,
    seed: int = 0,
) -> list[Image.Image]:
    """``n`` images for ``prompt`` (which may hold several of the user's ``<tokens>``).

    Deterministic for a seed on a given device. Raises ``UnknownTokenError`` for tokens
    the user does not have.
    """
    check_tokens(prompt, state.tokens)
    check_tokens(negative_prompt, state.tokens)
    if not 1 <= n <= MAX_IMAGES or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"n must be in 1..{MAX_IMAGES} and steps in 1..{MAX_STEPS}")
    with user_adapters(backbone, state):
        latents = sample_latents(
            backbone,
            state=state,
            prompt=prompt,
            negative_prompt=negative_prompt,
            n=n,
            steps=steps,
            guidance_scale=guidance_scale,
            seed=seed,
        )
        return decode_images(backbone, latents)


@torch.no_grad()
def sample_latents(
    backbone: Backbone,
    *,
    state: UserState,
    prompt: str,
    negative_prompt: str,
    n: int,
    steps: int,
    guidance_scale: float,
    seed: int,
) -> torch.Tensor:
    """The DDIM reverse process with CFG: ε = ε_u + w (ε_c − ε_u)."""
    scheduler = DDIMScheduler.from_config(backbone.scheduler.config)
    scheduler.set_timesteps(steps, device=backbone.device)
    with autocast(backbone.text_encoder):
        cond = encode_prompts(backbone, [prompt, negative_prompt], state.token_embeddings)
    hidden = torch.cat([cond[1:2].expand(n, -1, -1), cond[0:1].expand(n, -1, -1)])
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((n, *backbone.latent_shape), generator=generator).to(backbone.device)
    latents = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        with autocast(backbone.unet):
            uncond, conditional = backbone.unet(model_in, t, hidden).sample.float().chunk(2)
        eps = uncond + guidance_scale * (conditional - uncond)
        latents = scheduler.step(eps, t, latents).prev_sample
    return latents


@contextmanager
def user_adapters(backbone: Backbone, state: UserState) -> Iterator[None]:
    """Load the user's inference adapters into the shared UNet; base model again on exit."""
    unet = backbone.unet
    if not state.task_adapters or state.method is None:
        activate(unet, [])
        yield
        return
    method = get_method(state.method)
    if method.adapter == "kv":
        activate(unet, [])
        with kv_delta_applied(unet, [state.task_adapters[-1]]):
            yield
        return
    if method.adapter == "none":
        activate(unet, [])
        yield
        return
    adapters = list(state.task_adapters) if method.per_task_adapters else [state.task_adapters[-1]]
    weight = 1.0 / len(adapters) if method.combine == "mean" else 1.0
    config = EngineConfig(adapter_type=state.adapter_type)  # type: ignore[arg-type]
    slots = [f"infer{i}" for i in range(len(adapters))]
    for slot, adapter in zip(slots, adapters, strict=True):
        ensure_slot(unet, slot, config=_matching(config, adapter))
        write_slot(unet, slot, adapter)
    activate(unet, slots, [weight] * len(slots))
    try:
        yield
    finally:
        activate(unet, [])


def _matching(config: EngineConfig, adapter: dict[str, torch.Tensor]) -> EngineConfig:
    """The slot config that fits a stored adapter (its rank is read from the tensors)."""
    for key, value in adapter.items():
        if key.endswith("lora_A"):
            return config.with_(lora_rank=value.shape[0])
        if key.endswith("vera_lambda_d"):
            return config.with_(vera_rank=value.shape[0])
    return config
