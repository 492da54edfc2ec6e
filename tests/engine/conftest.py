"""Fixtures of the engine tests: one tiny random SD-architecture backbone per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.engine.backbone import Backbone, build_tiny_backbone
from core.engine.config import TINY, EngineConfig

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def backbone() -> Backbone:
    return build_tiny_backbone(seed=0)


@pytest.fixture(scope="session")
def prior_cache(tmp_path_factory) -> object:
    return tmp_path_factory.mktemp("prior")


@pytest.fixture
def config() -> EngineConfig:
    """A few steps of everything; consolidation phases of 2 steps, checkpoints every 2."""
    return TINY.with_(train_steps=4, consolidation_fraction=0.5, checkpoint_every=2)


def concept_images(colour: tuple[int, int, int], *, count: int = 3, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        noise = rng.integers(0, 40, (24, 24, 3))
        images.append(Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)))
    return images


COLOURS = [(220, 30, 30), (30, 200, 40), (40, 40, 230)]
