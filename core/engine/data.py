"""Concept images -> normalised pixel tensors -> VAE latents (kept in memory only)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageOps

from core.engine.backbone import Backbone
from core.engine.errors import InvalidImagesError
from core.engine.precision import autocast

MIN_SIDE = 8


def to_pixels(images: Sequence[Image.Image], *, resolution: int, hflip: bool) -> torch.Tensor:
    """Centre-crop and resize to ``resolution``, RGB in [-1, 1]; mirrored copies when ``hflip``."""
    if not images:
        raise InvalidImagesError("a concept needs at least one image")
    tensors = []
    for index, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise InvalidImagesError(f"image {index} is not a decoded image")
        try:
            rgb = image.convert("RGB")
        except OSError as error:
            raise InvalidImagesError(f"image {index} cannot be read: {error}") from error
        if min(rgb.size) < MIN_SIDE:
            raise InvalidImagesError(
                f"image {index} is {rgb.size[0]}x{rgb.size[1]} px; at least {MIN_SIDE} px"
            )
        square = ImageOps.fit(rgb, (resolution, resolution), Image.Resampling.BICUBIC)
        tensor = torch.frombuffer(bytearray(square.tobytes()), dtype=torch.uint8)
        tensors.append(tensor.view(resolution, resolution, 3).permute(2, 0, 1).float() / 127.5 - 1.0)
    pixels = torch.stack(tensors)
    return torch.cat([pixels, pixels.flip(-1)]) if hflip else pixels


@torch.no_grad()
def encode_latents(backbone: Backbone, pixels: torch.Tensor) -> torch.Tensor:
    """x0 = E(x) · scaling factor, the mean of the VAE posterior (as the Diffusion Classifier).

    Run once per task (``task._prepare``) and kept for it, in fp32 whatever the VAE's dtype.
    """
    with autocast(backbone.vae):
        latents = backbone.vae.encode(pixels.to(backbone.device)).latent_dist.mean
    return latents.float() * backbone.vae_scaling


@torch.no_grad()
def decode_images(backbone: Backbone, latents: torch.Tensor) -> list[Image.Image]:
    with autocast(backbone.vae):
        pixels = backbone.vae.decode(latents / backbone.vae_scaling).sample.float()
    array = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]
