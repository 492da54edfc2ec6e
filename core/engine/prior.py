"""The shared prior concept c0: images generated once per backbone from its prompt, cached.

The prior set is not private (the base model made it), is shared by all users, and
is kept as latents: ``<cache>/<backbone>/<hash of weights, prompt, count, steps>.safetensors``.
The base weights' digest is part of the key, so retrained or swapped weights under the same
backbone name never reuse another model's prior images.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.engine.adapters import activate
from core.engine.backbone import Backbone
from core.engine.config import EngineConfig
from core.engine.generate import sample_latents
from core.engine.state import UserState

BATCH = 8


def prior_latents(
    backbone: Backbone,
    *,
    config: EngineConfig,
    cache_dir: Path | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """``config.prior_images`` latents of the base model for ``backbone.prior_prompt``.

    ``on_progress(done, total)`` is called after each batch of generated images (and once, at
    ``total``, on a cache hit), so that a job's "prepare" phase moves while the prior is drawn.
    """
    report = on_progress or (lambda done, total: None)
    total = config.prior_images
    path = None
    if cache_dir is not None:
        key = "|".join(
            (
                backbone.base_digest,
                backbone.prior_prompt,
                str(config.prior_images),
                str(config.prior_steps),
                str(config.resolution),
            )
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        path = Path(cache_dir) / _safe(backbone.name) / f"prior-{digest}.safetensors"
        if path.exists():
            report(total, total)
            return load_file(str(path))["latents"].to(backbone.device)
    activate(backbone.unet, [])  # the base model, whatever a previous job left active
    batches = []
    for start in range(0, total, BATCH):
        batches.append(
            sample_latents(
                backbone,
                state=UserState.empty(),
                prompt=backbone.prior_prompt,
                negative_prompt="",
                n=min(BATCH, total - start),
                steps=config.prior_steps,
                guidance_scale=7.5,
                seed=10_000 + start,
            )
        )
        report(min(start + BATCH, total), total)
    latents = torch.cat(batches)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file({"latents": latents.cpu().contiguous()}, str(tmp))
        os.replace(tmp, path)
    return latents


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-80:]
