"""Quality check of the toy backbone (``mnemo toy check``).

Generates images for colour x shape combinations that never appeared in training
(``dataset.HELD_OUT``), for some seen ones, and for whole patterned objects that never
appeared (``dataset.HELD_OUT_OBJECTS``, "a photo of a red and white ringed circle"), with the
engine's own sampler (DDIM + classifier-free guidance, ``core.engine.generate``) and an empty
user state, and scores them with the toy classifier (trained only on the generator's ground
truth): colour and shape for the solid prompts, pattern, colours and recognition
(``recognition.py``: every attribute right) for the objects. Also measures the seconds per
generated 64x64 image.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from core import progress
from core.engine.toy import dataset
from core.engine.toy.recognition import Attributes, summarise, verdicts

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


QUICK_OBJECTS = dataset.EVAL_OBJECTS[:4]
GROUPS = ("held_out", "seen", "objects")


@dataclass(frozen=True)
class CheckPrompt:
    prompt: str
    colour: str
    shape: str
    background: str | None
    group: str  # one of GROUPS
    pattern: str = "solid"
    colour2: str | None = None

    @property
    def held_out(self) -> bool:
        return self.group != "seen"

    @property
    def attributes(self) -> Attributes:
        return Attributes.of_object((self.colour, self.colour2, self.pattern, self.shape))


def check_prompts(*, quick: bool, per_combo: int, seed: int = 0) -> list[CheckPrompt]:
    """Held-out colour x shape and held-out objects (and, unless ``quick``, seen combos);
    half the prompts name a background."""
    rng = random.Random(seed)
    solid = [(c, None, "solid", s) for c, s in (QUICK_HELD_OUT if quick else sorted(dataset.HELD_OUT))]
    groups = [(solid, "held_out")]
    if not quick:
        groups.append(([(c, None, "solid", s) for c, s in SEEN], "seen"))
    groups.append((list(QUICK_OBJECTS if quick else sorted(dataset.HELD_OUT_OBJECTS)), "objects"))
    prompts: list[CheckPrompt] = []
    for objects, group in groups:
        for colour, colour2, pattern, shape in objects:
            for k in range(per_combo):
                background = None
                if k % 2 == 1:
                    background = rng.choice(
                        [b for b in dataset.BACKGROUND_NAMES if b not in (colour, colour2)]
                    )
                caption = dataset.full_caption(colour, shape, background, pattern=pattern, colour2=colour2)
                prompts.append(CheckPrompt(caption, colour, shape, background, group, pattern, colour2))
    return prompts


def _solid_summary(rows: list[tuple[CheckPrompt, dict]]) -> dict[str, Any]:
    with_bg = [(p, pred) for p, pred in rows if p.background]
    return {
        "images": len(rows),
        "combos": sorted({f"{p.colour} {p.shape}" for p, _ in rows}),
        "colour_accuracy": round(sum(p.colour == pred["colour"] for p, pred in rows) / len(rows), 4),
        "shape_accuracy": round(sum(p.shape == pred["shape"] for p, pred in rows) / len(rows), 4),
        "background_accuracy": round(
            sum(p.background == pred["background"] for p, pred in with_bg) / max(1, len(with_bg)), 4
        ),
    }


def _object_summary(rows: list[tuple[CheckPrompt, dict]]) -> dict[str, Any]:
    rates = summarise([verdicts([pred], p.attributes)[0] for p, pred in rows])
    return {
        "images": rates["images"],
        "objects": sorted({p.attributes.describe() for p, _ in rows}),
        "pattern_accuracy": rates["pattern"],
        "shape_accuracy": rates["shape"],
        "colours_accuracy": rates["colours"],
        "recognition": rates["recognised"],
    }


def _correct(prompt: CheckPrompt, pred: dict) -> bool:
    if prompt.group == "objects":
        return verdicts([pred], prompt.attributes)[0]["recognised"]
    return pred["colour"] == prompt.colour and pred["shape"] == prompt.shape


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
    for i, item in enumerate(progress.bar(prompts, desc="check: generate", every=15.0)):
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
    for group in GROUPS:
        rows = [(p, pred) for p, pred in zip(prompts, predictions, strict=True) if p.group == group]
        if rows:
            summary[group] = (_object_summary if group == "objects" else _solid_summary)(rows)
    if grid_path is not None:
        labels = [p.attributes.describe() + (f" / {p.background}" if p.background else "") for p in prompts]
        ok = [_correct(p, pred) for p, pred in zip(prompts, predictions, strict=True)]
        sample_grid(images, labels=labels, ok=ok, columns=per_combo * 2).save(grid_path)
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
