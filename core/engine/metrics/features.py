"""Feature extractors for the image metrics: images -> features [N, D].

Every extractor has a ``name`` that goes into every table it produces, so proxy numbers are
never mistaken for CLIP numbers:

* ``clip:<folder>`` — a CLIP image encoder loaded from a LOCAL folder
  (``CLIPVisionModelWithProjection``; what the paper uses). Nothing is downloaded.
* ``toy-classifier`` — the penultimate features of the small colour/shape classifier trained
  on the toy domain (``core.engine.toy.classifier``): the offline default, semantic for toy
  concepts, meaningless for photographs.
* ``random-proxy`` — a seeded random-init conv net. For unit tests of the metric code only:
  its numbers mean nothing about image quality.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Features [N, D] (float32, CPU) of N RGB images."""
        ...


def _pixels(images: Sequence[Image.Image], *, size: int, mean, std) -> torch.Tensor:
    """Resize (shorter side, bicubic) + centre-crop to ``size`` and normalise: [N, 3, size, size]."""
    if len(images) == 0:
        raise ValueError("no images to encode")
    batch = []
    for image in images:
        image = image.convert("RGB")
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        batch.append(torch.from_numpy(array).permute(2, 0, 1))
    x = torch.stack(batch)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


class ClipImageFeatures:
    """CLIP image embeddings (the projection output) from a local transformers folder."""

    def __init__(self, folder: str | Path, *, device: str | torch.device = "cpu", batch_size: int = 32):
        from transformers import CLIPVisionModelWithProjection

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"CLIP folder {folder} does not exist (no download is attempted)")
        self.model = CLIPVisionModelWithProjection.from_pretrained(str(folder), local_files_only=True)
        self.model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.size = int(self.model.config.image_size)
        self.mean, self.std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        processor_config = folder / "preprocessor_config.json"
        if processor_config.is_file():
            config = json.loads(processor_config.read_text())
            self.mean = tuple(config.get("image_mean", self.mean))
            self.std = tuple(config.get("image_std", self.std))
        self.name = f"clip:{folder.name}"

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            pixels = _pixels(chunk, size=self.size, mean=self.mean, std=self.std).to(self.device)
            out.append(self.model(pixel_values=pixels).image_embeds.float().cpu())
        if not out:
            raise ValueError("no images to encode")
        return torch.cat(out)


class RandomProxyFeatures:
    """A seeded random conv net (``random-proxy``): for unit tests of metric code ONLY."""

    name = "random-proxy"

    def __init__(self, *, seed: int = 0, size: int = 32, dim: int = 64):
        generator = torch.Generator().manual_seed(seed)
        self.size = size
        self.weights = [
            torch.randn(16, 3, 3, 3, generator=generator) / 3.0,
            torch.randn(32, 16, 3, 3, generator=generator) / 12.0,
            torch.randn(dim, 32, 3, 3, generator=generator) / 17.0,
        ]

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        x = _pixels(images, size=self.size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        for weight in self.weights:
            x = torch.relu(torch.nn.functional.conv2d(x, weight, stride=2, padding=1))
        return x.mean(dim=(2, 3))


class ToyClassifierFeatures:
    """Penultimate features of the toy colour/shape classifier (``toy-classifier``)."""

    name = "toy-classifier"

    def __init__(self):
        from core.engine.toy import classifier as toy_classifier

        self._module = toy_classifier
        self.model = toy_classifier.load_toy_classifier()

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if len(images) == 0:
            raise ValueError("no images to encode")
        if hasattr(self.model, "features"):
            feats = self.model.features(list(images))
        else:
            feats = self._module.features(self.model, list(images))
        return torch.as_tensor(feats).detach().float().cpu()


def standardize(features: torch.Tensor) -> torch.Tensor:
    """L2-normalise each row and scale it by √D, so that x·y/D = cos(x, y).

    The polynomial kernels of MMD and KID, (x·y/D + 1)^p, then become (cos(x, y) + 1)^p:
    bounded and independent of an extractor's feature scale, so numbers from different
    extractors (toy classifier, CLIP) are on the same footing. The benchmark applies it to
    every extractor before any metric.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {tuple(features.shape)}")
    d = features.shape[1]
    return torch.nn.functional.normalize(features.double(), dim=1) * d**0.5


def load_feature_extractor(
    spec: str = "toy-classifier", *, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    """``toy-classifier`` (default), ``random-proxy`` (tests only) or a local CLIP folder path."""
    if spec in ("toy", "toy-classifier"):
        return ToyClassifierFeatures()
    if spec == "random-proxy":
        return RandomProxyFeatures()
    path = Path(spec.removeprefix("clip:"))
    if path.is_dir():
        return ClipImageFeatures(path, device=device)
    raise ValueError(
        f"unknown feature extractor {spec!r}: use 'toy-classifier', 'random-proxy' or a local CLIP folder"
    )
