"""A small CNN that reads the ground truth of a toy image: shape, colour, pattern, background.

Heads: ``shape``, ``colour`` (the object's first colour), ``pattern`` (``render.PATTERNS``),
``background`` (softmax each) and ``colours`` (which colours are on the object: one sigmoid
per colour, so the two colours of a patterned object are read without an order). It is
trained only on the procedural generator's labels (every combination, the held-out objects
included, with blur/noise/colour augmentation so that it tolerates decoded diffusion samples), and
it is the judge of ``mnemo toy check``. Its penultimate activations (``features``, D =
``FEATURE_DIM``) are the offline feature space of the metrics (MMD, KID): semantic for the
toy domain, honest about being nothing like CLIP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from core.engine.toy import CLASSIFIER_PATH, dataset
from core.progress import bar as progress_bar

FEATURE_DIM = 128
ALL_COMBOS: tuple[tuple[str, str], ...] = tuple((c, s) for c in dataset.COLOUR_NAMES for s in dataset.SHAPES)
NOTHING: frozenset = frozenset()  # the judge sees every object, the held-out ones included, one at a time


def colours_target(specs: Sequence[dataset.ShapeSpec]) -> torch.Tensor:
    """[N, colours] multi-hot: 1 for each colour on the object."""
    return torch.tensor(
        [[float(c in s.colours) for c in dataset.COLOUR_NAMES] for s in specs], dtype=torch.float32
    )


class ToyClassifier(nn.Module):
    """4 stages of 2 conv-BN-ReLU (16-32-64-128 channels, 64 -> 4 px), average pool, 128-d features.

    (A GroupNorm/SiLU variant with one conv per stage learned colour at once but stayed at
    chance on shape for 1200 steps; batch norm and two convs per stage learn both.)
    """

    def __init__(self) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]

        self.body = nn.Sequential(
            *stage(3, 16),
            *stage(16, 32),
            *stage(32, 64),
            *stage(64, 128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, FEATURE_DIM),
            nn.ReLU(),
        )
        self.shape_head = nn.Linear(FEATURE_DIM, len(dataset.SHAPES))
        self.colour_head = nn.Linear(FEATURE_DIM, len(dataset.COLOUR_NAMES))
        self.background_head = nn.Linear(FEATURE_DIM, len(dataset.BACKGROUND_NAMES))
        self.pattern_head = nn.Linear(FEATURE_DIM, len(dataset.PATTERNS))
        self.colours_head = nn.Linear(FEATURE_DIM, len(dataset.COLOUR_NAMES))

    def features(self, x: torch.Tensor | Sequence[Image.Image]) -> torch.Tensor:
        """Penultimate features [N, FEATURE_DIM] of a [-1, 1] tensor or of PIL images."""
        if isinstance(x, torch.Tensor):
            return self.body(x)
        with torch.no_grad():
            return self.body(images_to_tensor(list(x))) if len(x) else torch.zeros(0, FEATURE_DIM)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.body(x)
        return {
            "shape": self.shape_head(f),
            "colour": self.colour_head(f),
            "background": self.background_head(f),
            "pattern": self.pattern_head(f),
            "colours": self.colours_head(f),
        }


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur, noise and small brightness/contrast shifts, per image ([-1, 1] tensors)."""
    n = x.shape[0]
    sigma = torch.rand(n, generator=generator) * 1.5
    out = []
    for i in range(n):
        img = x[i : i + 1]
        s = float(sigma[i])
        if s > 0.3:
            radius = 2
            grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
            k1 = torch.exp(-(grid**2) / (2 * s * s))
            k1 = k1 / k1.sum()
            kernel = (k1[:, None] * k1[None, :]).expand(3, 1, -1, -1)
            padded = nn.functional.pad(img, (radius,) * 4, mode="replicate")
            img = nn.functional.conv2d(padded, kernel, groups=3)
        out.append(img)
    x = torch.cat(out)
    contrast = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.3
    bright = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.2
    noise = torch.randn(x.shape, generator=generator) * torch.rand(n, 1, 1, 1, generator=generator) * 0.1
    return (x * contrast + bright + noise).clamp(-1, 1)


def train_classifier(
    *,
    seed: int = 0,
    steps: int = 3000,
    batch: int = 32,
    lr: float = 2e-3,
    out: Path = CLASSIFIER_PATH,
    progress: bool = True,
) -> dict[str, Any]:
    """Train on fresh generator samples of every object; report held-aside accuracy.

    Loss: cross-entropy of shape, colour and pattern, half that of the background, and the
    binary cross-entropy of the colours present (a multi-label target).
    """
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = ToyClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    multi_label = nn.BCEWithLogitsLoss()
    start = time.monotonic()
    bar = progress_bar(range(steps), desc="classifier", disable=not progress)
    for step in bar:
        images, _, specs = dataset.batch(
            seed + 500, step * batch, batch, combos=ALL_COMBOS, exclude=NOTHING, pair_p=0.0
        )
        x = _augment(torch.from_numpy(images), generator)
        logits = model(x)
        loss = (
            loss_fn(logits["shape"], torch.tensor([s.shape_index for s in specs]))
            + loss_fn(logits["colour"], torch.tensor([s.colour_index for s in specs]))
            + loss_fn(logits["pattern"], torch.tensor([s.pattern_index for s in specs]))
            + 0.5 * loss_fn(logits["background"], torch.tensor([s.background_index for s in specs]))
            + multi_label(logits["colours"], colours_target(specs))
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    accuracy = evaluate_on_ground_truth(model, seed=seed + 900)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return {
        "steps": steps,
        "batch": batch,
        "seconds": round(time.monotonic() - start, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "ground_truth_accuracy": accuracy,
    }


def evaluate_on_ground_truth(
    model: ToyClassifier,
    *,
    seed: int,
    n: int = 1024,
    through: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Accuracy on ``n`` fresh generator images (no augmentation), first passed ``through`` a map if given."""
    images, _, specs = dataset.batch(seed, 0, n, combos=ALL_COMBOS, exclude=NOTHING, pair_p=0.0)
    with torch.no_grad():
        x = torch.from_numpy(images)
        logits = model(through(x) if through is not None else x)

    def acc(key: str, attr: str) -> float:
        truth = torch.tensor([getattr(s, attr) for s in specs])
        return float((logits[key].argmax(1) == truth).float().mean())

    colours_read = [set(c) for c in read_colours(logits)]
    return {
        "shape": acc("shape", "shape_index"),
        "colour": acc("colour", "colour_index"),
        "pattern": acc("pattern", "pattern_index"),
        "background": acc("background", "background_index"),
        "colours": sum(c == s.colours for c, s in zip(colours_read, specs, strict=True)) / len(specs),
    }


def read_colours(logits: dict[str, torch.Tensor]) -> list[tuple[str, ...]]:
    """The colours on each object: the top one when the pattern head reads ``solid``, else the top two."""
    solid = logits["pattern"].argmax(1) == dataset.PATTERNS.index("solid")
    top = logits["colours"].topk(2, dim=1).indices.tolist()
    return [
        tuple(dataset.COLOUR_NAMES[j] for j in (row[:1] if is_solid else row))
        for row, is_solid in zip(top, solid.tolist(), strict=True)
    ]


@lru_cache(maxsize=2)
def load_toy_classifier(path: Path = CLASSIFIER_PATH) -> ToyClassifier:
    """The shipped classifier (eval mode, CPU). Raises FileNotFoundError if not trained yet."""
    from safetensors.torch import load_file

    model = ToyClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def images_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL images (any size/mode) -> [N, 3, 64, 64] float tensor in [-1, 1]."""
    size = dataset.IMAGE_SIZE
    resized = [
        im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        if im.size != (size, size)
        else im.convert("RGB")
        for im in images
    ]
    return torch.from_numpy(dataset.to_array(resized))


def features(images: list[Image.Image], *, model: ToyClassifier | None = None) -> torch.Tensor:
    """Penultimate features [N, FEATURE_DIM] of the toy classifier (the metrics' feature space)."""
    return (model or load_toy_classifier()).features(list(images))


def predict(images: list[Image.Image], *, model: ToyClassifier | None = None) -> list[dict[str, Any]]:
    """Predicted ``{"shape", "colour", "pattern", "background"}`` names for each image, and
    ``"colours"``: the set of colours read on the object (``read_colours``)."""
    model = model or load_toy_classifier()
    if not images:
        return []
    with torch.no_grad():
        logits = model(images_to_tensor(images))
    names = {
        "shape": dataset.SHAPES,
        "colour": dataset.COLOUR_NAMES,
        "pattern": dataset.PATTERNS,
        "background": dataset.BACKGROUND_NAMES,
    }
    idx = {k: logits[k].argmax(1).tolist() for k in names}
    colours = read_colours(logits)
    return [
        {**{k: names[k][idx[k][i]] for k in names}, "colours": frozenset(colours[i])}
        for i in range(len(images))
    ]
