"""Quality check of the toy backbone (``mnemo toy check``).

Generates images for colour x shape combinations that never appeared in training
(``dataset.HELD_OUT``) and for some seen ones, with the engine's own sampler (DDIM +
classifier-free guidance, ``core.engine.generate``) and an empty user state, and scores them
with the toy classifier (trained only on the generator's ground truth). Also measures the
seconds per generated 64x64 image.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from core.engine.toy import dataset

QUICK_HELD_OUT = (("red", "star"), ("blue", "triangle"), ("purple", "square"), ("orange", "circle"))
SEEN = (
    ("red", "circle"),
    ("green", "square"),
    ("blue", "star"),
    ("yellow", "heart"),
    ("purple", "cross"),
    ("orange", "triangle"),
    ("white", "square"),
    ("black", "heart"),
)


@dataclass(frozen=True)
class CheckPrompt:
    prompt: str
    colour: str
    shape: str
    background: str | None
    held_out: bool


def check_prompts(*, quick: bool, per_combo: int, seed: int = 0) -> list[CheckPrompt]:
    """Held-out (and, unless ``quick``, seen) combos; half the prompts name a background."""
    rng = random.Random(seed)
    prompts: list[CheckPrompt] = []
    groups = [(QUICK_HELD_OUT, True)] if quick else [(sorted(dataset.HELD_OUT), True), (SEEN, False)]
    for combos, held in groups:
        for colour, shape in combos:
            for k in range(per_combo):
                background = None
                if k % 2 == 1:
                    background = rng.choice([b for b in dataset.BACKGROUND_NAMES if b != colour])
                prompts.append(
                    CheckPrompt(
                        dataset.full_caption(colour, shape, background), colour, shape, background, held
                    )
                )
    return prompts


def run_check(
    *,
    steps: int = 25,
    guidance_scale: float = 7.5,
    quick: bool = False,
    per_combo: int | None = None,
    grid_path: Path | None = None,
    seed: int = 0,
    backbone=None,
) -> dict[str, Any]:
    """Generate, classify and summarise; returns the figures (and writes the grid if asked)."""
    import torch

    from core.engine.backbone import load_backbone
    from core.engine.generate import generate
    from core.engine.state import UserState
    from core.engine.toy.classifier import load_toy_classifier, predict

    per_combo = per_combo or (2 if quick else 6)
    backbone = backbone or load_backbone("toy")
    state = UserState.empty()
    classifier = load_toy_classifier()
    prompts = check_prompts(quick=quick, per_combo=per_combo, seed=seed)
    images: list[Image.Image] = []
    # One image per prompt with its own seed, generated in batches of identical prompts.
    start = time.perf_counter()
    for i, item in enumerate(prompts):
        images += generate(
            backbone=backbone,
            state=state,
            prompt=item.prompt,
            n=1,
            steps=steps,
            guidance_scale=guidance_scale,
            seed=seed * 100_003 + i,
        )
    seconds_per_image = (time.perf_counter() - start) / len(prompts)
    batch_start = time.perf_counter()
    generate(
        backbone=backbone,
        state=state,
        prompt=prompts[0].prompt,
        n=8,
        steps=steps,
        guidance_scale=guidance_scale,
        seed=seed,
    )
    seconds_per_image_batched = (time.perf_counter() - batch_start) / 8
    predictions = predict(images, model=classifier)
    summary: dict[str, Any] = {
        "steps": steps,
        "guidance_scale": guidance_scale,
        "threads": torch.get_num_threads(),
        "seconds_per_image": round(seconds_per_image, 4),
        "seconds_per_image_batch8": round(seconds_per_image_batched, 4),
    }
    for name, held in (("held_out", True), ("seen", False)):
        rows = [(p, pred) for p, pred in zip(prompts, predictions, strict=True) if p.held_out == held]
        if not rows:
            continue
        with_bg = [(p, pred) for p, pred in rows if p.background]
        summary[name] = {
            "images": len(rows),
            "combos": sorted({f"{p.colour} {p.shape}" for p, _ in rows}),
            "colour_accuracy": round(sum(p.colour == pred["colour"] for p, pred in rows) / len(rows), 4),
            "shape_accuracy": round(sum(p.shape == pred["shape"] for p, pred in rows) / len(rows), 4),
            "background_accuracy": round(
                sum(p.background == pred["background"] for p, pred in with_bg) / max(1, len(with_bg)), 4
            ),
        }
    if grid_path is not None:
        labels = [f"{p.colour} {p.shape}{' / ' + p.background if p.background else ''}" for p in prompts]
        verdicts = [
            pred["colour"] == p.colour and pred["shape"] == p.shape
            for p, pred in zip(prompts, predictions, strict=True)
        ]
        sample_grid(images, labels=labels, ok=verdicts, columns=per_combo * 2).save(grid_path)
        summary["grid"] = str(grid_path)
    summary["vae_ceiling"] = vae_ceiling(backbone=backbone)
    return summary


def vae_ceiling(*, backbone, n: int = 128, seed: int = 54_321) -> dict[str, float]:
    """The judge's accuracy on VAE reconstructions (posterior mean) of fresh generator images.

    Generation decodes through the same VAE, so this is the most the check can score: if it is
    high, a low check figure is the UNet's (or the text's) doing, not the autoencoder's.
    """
    import torch

    from core.engine.toy.classifier import evaluate_on_ground_truth, load_toy_classifier

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        return backbone.vae.decode(backbone.vae.encode(x).latent_dist.mean).sample.clamp(-1.0, 1.0)

    accuracy = evaluate_on_ground_truth(load_toy_classifier(), seed=seed, n=n, through=reconstruct)
    return {key: round(value, 4) for key, value in accuracy.items()}


def sample_grid(
    images: list[Image.Image],
    *,
    labels: list[str],
    ok: list[bool] | None = None,
    columns: int = 8,
    scale: int = 2,
) -> Image.Image:
    """A labelled grid (green/red frame: the classifier agrees/disagrees with the prompt)."""
    size = dataset.IMAGE_SIZE * scale
    label_h = 12
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * (size + 4), rows * (size + label_h + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, image in enumerate(images):
        x, y = (i % columns) * (size + 4), (i // columns) * (size + label_h + 4)
        if ok is not None:
            draw.rectangle(
                [x, y + label_h, x + size + 3, y + label_h + size + 3],
                fill=(40, 170, 60) if ok[i] else (210, 40, 40),
            )
        grid.paste(image.resize((size, size), Image.Resampling.NEAREST), (x + 2, y + label_h + 2))
        draw.text((x + 2, y), labels[i][:22], fill=(0, 0, 0))
    return grid
