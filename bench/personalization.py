"""``mnemo bench personalization``: learn unseen concepts on the toy backbone, before/after MMD.

For each concept (bundled ``core.engine.toy.concepts``: drawn novel objects and scikit-image
photographs), one task of ``run_task`` with the default method and the ``toy`` preset,
exactly as the service runs it. Reports the seconds per task (phases included; the shared
prior set c0 is generated once beforehand and timed separately, as the service caches it per
backbone) and the paper's MMD (App. E, biased MMD² with the quadratic kernel) in the feature
space of the toy classifier between

* the concept's images and ``--n-eval`` generations of "a photo of <concept>" after the task;
* the concept's images and the base model's generations of "a photo of a <class word>".

Personalization works when the first is clearly smaller. Writes a grid (rows per concept:
real images, base class-word images, <concept> images) and, with ``--json``, prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="toy", help="toy | tiny | a local diffusers SD folder")
    parser.add_argument(
        "--preset", default=None, help="engine preset (default: toy; tiny for the tiny backbone)"
    )
    parser.add_argument(
        "--concepts", default="smiley", help="comma-separated bundled concept names, or 'all'"
    )
    parser.add_argument("--method", default=None, help="continual method (default: the engine's default)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of the task (preset default)")
    parser.add_argument("--lora-lr", type=float, default=None, help="LoRA learning rate (preset default)")
    parser.add_argument("--token-lr", type=float, default=None, help="new-token learning rate (preset)")
    parser.add_argument("--n-eval", type=int, default=16, help="generated images per prompt")
    parser.add_argument("--gen-steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--features", default="toy-classifier", help="feature extractor of the MMD")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/personalization"))


def run(args: argparse.Namespace) -> int:
    import torch

    from core.engine.backbone import load_backbone
    from core.engine.config import PRESETS
    from core.engine.generate import generate
    from core.engine.methods import DEFAULT_METHOD
    from core.engine.metrics import mmd
    from core.engine.metrics.features import load_feature_extractor
    from core.engine.prior import prior_latents
    from core.engine.state import UserState
    from core.engine.task import run_task
    from core.engine.toy.check import sample_grid
    from core.engine.toy.concepts import sample_concepts

    if args.threads:
        torch.set_num_threads(args.threads)
    method = args.method or DEFAULT_METHOD
    config = PRESETS[args.preset or ("tiny" if args.backbone == "tiny" else "toy")]
    overrides = {"train_steps": args.steps, "lora_lr": args.lora_lr, "token_lr": args.token_lr}
    config = config.with_(seed=args.seed, **{k: v for k, v in overrides.items() if v is not None})
    bundled = {c.name: c for c in sample_concepts()}
    names = (
        list(bundled)
        if args.concepts == "all"
        else [n.strip() for n in args.concepts.split(",") if n.strip()]
    )
    unknown = [n for n in names if n not in bundled]
    if unknown:
        raise SystemExit(f"unknown concepts {unknown}; bundled: {', '.join(bundled)}")
    args.out.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(args.backbone)
    extractor = load_feature_extractor(args.features)
    prior_dir = args.out / "prior_cache"
    start = time.perf_counter()
    prior_latents(backbone, config=config, cache_dir=prior_dir)
    prior_seconds = time.perf_counter() - start

    def sample(state: UserState, prompt: str, seed: int) -> list:
        return generate(
            backbone=backbone,
            state=state,
            prompt=prompt,
            n=args.n_eval,
            steps=args.gen_steps,
            guidance_scale=args.guidance,
            seed=seed,
        )

    rows: list[dict[str, Any]] = []
    grid_images, grid_labels = [], []
    for k, name in enumerate(names):
        concept = bundled[name]
        real = extractor(concept.images)
        base_prompt = f"a photo of a {concept.class_word}"
        base_images = sample(UserState.empty(), base_prompt, args.seed * 1000 + k)
        start = time.perf_counter()
        result = run_task(
            backbone=backbone,
            state=UserState.empty(),
            concept=name,
            class_word=concept.class_word,
            images=concept.images,
            method=method,
            config=config,
            prior_cache_dir=prior_dir,
        )
        task_seconds = time.perf_counter() - start
        token = f"<{name}>"
        concept_images = sample(result.state, f"a photo of {token}", args.seed * 1000 + k)
        row = {
            "concept": name,
            "class_word": concept.class_word,
            "images": len(concept.images),
            "task_seconds": round(task_seconds, 2),
            "phase_seconds": {p: round(s, 2) for p, s in result.seconds.items()},
            "mmd_concept_prompt": mmd(real, extractor(concept_images)),
            "mmd_base_class_word": mmd(real, extractor(base_images)),
        }
        row["mmd_ratio"] = row["mmd_concept_prompt"] / max(row["mmd_base_class_word"], 1e-12)
        rows.append(row)
        shown = min(8, args.n_eval)
        for label, images in (("real", concept.images), (base_prompt, base_images), (token, concept_images)):
            padded = list(images[:shown]) + [images[0].copy()] * max(0, shown - len(images))
            grid_images += padded[:shown]
            grid_labels += [label if label != "real" else f"{name} (real)"] * shown
    grid_path = args.out / "personalization.png"
    sample_grid(grid_images, labels=grid_labels, columns=min(8, args.n_eval)).save(grid_path)
    summary = {
        "backbone": args.backbone,
        "method": method,
        "train_steps": config.train_steps,
        "lora_lr": config.lora_lr,
        "token_lr": config.token_lr,
        "features": getattr(extractor, "name", args.features),
        "mmd": "biased MMD^2, quadratic kernel (paper App. E)",
        "n_eval": args.n_eval,
        "gen_steps": args.gen_steps,
        "guidance": args.guidance,
        "threads": torch.get_num_threads(),
        "prior_seconds": round(prior_seconds, 2),
        "mean_task_seconds": round(sum(r["task_seconds"] for r in rows) / len(rows), 2),
        "concepts_closer": sum(r["mmd_concept_prompt"] < r["mmd_base_class_word"] for r in rows),
        "concepts": rows,
        "grid": str(grid_path),
    }
    (args.out / "personalization.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for r in rows:
            print(
                f"{r['concept']:20s} task {r['task_seconds']:6.1f}s  "
                f"MMD <concept> {r['mmd_concept_prompt']:.4g}  "
                f"MMD base '{r['class_word']}' {r['mmd_base_class_word']:.4g}  ratio {r['mmd_ratio']:.2f}"
            )
        print(f"grid: {grid_path}")
    return 0
