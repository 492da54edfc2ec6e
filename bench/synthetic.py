"""Synthetic user histories and concept images for the speed benchmarks.

The cost of an iteration depends on the shapes of the tensors, not on their values,
so earlier tasks are random: tokens near the rare-token embedding, LoRA states with
small random B, and a positive Fisher.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from core.engine.adapters import fresh_state, zero_kv_delta
from core.engine.backbone import Backbone
from core.engine.config import EngineConfig
from core.engine.methods import get_method
from core.engine.state import ConceptRecord, UserState
from core.engine.tokens import initial_embedding


def concept_images(*, seed: int, count: int = 4, size: int = 64) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, 255, 3)
    return [
        Image.fromarray(np.clip(colour + rng.integers(-30, 30, (size, size, 3)), 0, 255).astype(np.uint8))
        for _ in range(count)
    ]


def synthetic_history(backbone: Backbone, *, config: EngineConfig, method: str, n_tasks: int) -> UserState:
    spec = get_method(method)
    generator = torch.Generator().manual_seed(n_tasks)
    state = UserState.empty()
    base_row = initial_embedding(backbone, None)
    for n in range(1, n_tasks + 1):
        if spec.adapter == "lora":
            adapter = fresh_state(backbone.unet, config=config, seed=n)
            adapter = {k: v + 1e-3 * _randn(v, generator) for k, v in adapter.items()}
        elif spec.adapter == "kv":
            adapter = zero_kv_delta(backbone.unet)
        else:
            adapter = {}
        fisher = {k: torch.rand(v.shape, generator=generator).to(v.device) * 1e-6 for k, v in adapter.items()}
        state = state.with_task(
            concept=ConceptRecord(
                name=f"past{n}", token=f"<past{n}>", class_word=None, task_index=n, method=method
            ),
            token_embedding=base_row + 0.01 * _randn(base_row, generator),
            adapter=adapter,
            fisher=fisher if spec.ewc != "none" else None,
            adapter_type=config.adapter_type,
        )
    return state


def _randn(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Noise of ``like``'s shape from the CPU ``generator``, on ``like``'s device (a GPU run)."""
    return torch.randn(like.shape, generator=generator).to(like.device)
