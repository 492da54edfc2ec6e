"""``mnemo bench personalization``: learn unseen concepts on the toy backbone, recognised or not.

For each concept (bundled ``core.engine.toy.concepts``: the drawn evaluation objects, the
drawn tuning objects, scikit-image photographs), one task of ``run_task`` with the default
method and the ``toy`` preset, exactly as the service runs it, from an empty user state.
Then ``--n-eval`` generations of "a photo of <concept>" and of the base model's "a photo of a
<class word>" are scored two ways:

* **recognition** (drawn concepts): the share of images in which the judge reads every
  attribute of the concept (shape, pattern, colours; ``core.engine.toy.recognition``);
* the paper's MMD (App. E, unbiased MMD² with the quadratic kernel) in the toy classifier's
  feature space, against the concept's own images.

Personalization works when ``<concept>`` is recognised far more often than the class word.
The schedule knobs (``GRID``: ``--steps``, ``--lora-lr``, ``--token-lr``, ``--batch-size``,
``--lora-rank``, ``--prior-weight``) take comma-separated lists: every combination is run (a
schedule sweep; pick it on ``--concepts tuning``, never on the evaluation set).
Reports the seconds per task (the shared prior set c0 is generated once beforehand and timed
separately, as the service caches it per backbone). Writes ``personalization.json`` and a
grid (rows per concept: real images, base class-word images, <concept> images, of the first
setting) into ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


# The schedule knobs a sweep may vary: (flag, EngineConfig field, parser of the list, help).
GRID: tuple[tuple[str, str, Any, str], ...] = (
    ("--steps", "train_steps", _ints, "training steps per task, e.g. 120,240"),
    ("--lora-lr", "lora_lr", _floats, "LoRA learning rates, e.g. 1e-3,3e-3"),
    ("--token-lr", "token_lr", _floats, "new-token learning rates, e.g. 1e-2"),
    ("--batch-size", "batch_size", _ints, "concept images per step, e.g. 2,8"),
    ("--lora-rank", "lora_rank", _ints, "LoRA rank, e.g. 4,16"),
    ("--prior-weight", "prior_weight", _floats, "weight of the prior (c0) loss, e.g. 0,1"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="toy", help="toy | tiny | a local diffusers SD folder")
    parser.add_argument(
        "--preset", default=None, help="engine preset (default: toy; tiny for the tiny backbone)"
    )
    parser.add_argument(
        "--concepts",
        default="smiley",
        help="comma-separated bundled concept names, 'all' (evaluation set + photos), 'drawn' or 'tuning'",
    )
    parser.add_argument("--method", default=None, help="continual method (default: the engine's default)")
    for flag, field, parse, text in GRID:
        parser.add_argument(flag, dest=field, type=parse, default=(), help=text)
    parser.add_argument("--n-eval", type=int, default=24, help="generated images per prompt")
    parser.add_argument("--gen-steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--features", default="toy-classifier", help="feature extractor of the MMD")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/personalization"))


def select_concepts(spec: str) -> list:
    """Bundled concepts named by ``spec`` ('all', 'drawn', 'tuning' or comma-separated names)."""
    from core.engine.toy.concepts import get_concept, sample_concepts, tuning_concepts

    if spec == "all":
        return sample_concepts()
    if spec == "drawn":
        return sample_concepts(photos=False)
    if spec == "tuning":
        return tuning_concepts()
    try:
        return [get_concept(name.strip()) for name in spec.split(",") if name.strip()]
    except KeyError as error:
        raise SystemExit(str(error)) from error


def settings(args: argparse.Namespace, base) -> list:
    """Every combination of the ``GRID`` values asked for, as engine configs (unset: the preset's)."""
    fields = [field for _, field, _, _ in GRID]
    configs = []
    for values in itertools.product(*(getattr(args, field) or (None,) for field in fields)):
        overrides = {k: v for k, v in zip(fields, values, strict=True) if v is not None}
        configs.append(base.with_(seed=args.seed, **overrides))
    return configs


def _knobs(config) -> dict[str, Any]:
    """The ``GRID`` fields of ``config``, by name."""
    return {field: getattr(config, field) for _, field, _, _ in GRID}


def _describe(config) -> str:
    return " ".join(f"{flag.lstrip('-')} {getattr(config, field):g}" for flag, field, _, _ in GRID)


def evaluate_concept(*, concept, config, method: str, sample, extractor, prior_dir: Path, backbone, k: int):
    """One task on ``concept`` from an empty state; its row and the images generated."""
    from core.engine.metrics import mmd
    from core.engine.state import UserState
    from core.engine.task import run_task
    from core.engine.toy.recognition import recognition

    real = extractor(concept.images)
    base_prompt = f"a photo of a {concept.class_word}"
    base_images = sample(UserState.empty(), base_prompt, config.seed * 1000 + k)
    start = time.perf_counter()
    result = run_task(
        backbone=backbone,
        state=UserState.empty(),
        concept=concept.name,
        class_word=concept.class_word,
        images=concept.images,
        method=method,
        config=config,
        prior_cache_dir=prior_dir,
    )
    task_seconds = time.perf_counter() - start
    token = f"<{concept.name}>"
    concept_images = sample(result.state, f"a photo of {token}", config.seed * 1000 + k)
    row: dict[str, Any] = {
        "concept": concept.name,
        "class_word": concept.class_word,
        "images": len(concept.images),
        "task_seconds": round(task_seconds, 2),
        "phase_seconds": {p: round(s, 2) for p, s in result.seconds.items()},
        "mmd_concept_prompt": mmd(real, extractor(concept_images)),
        "mmd_base_class_word": mmd(real, extractor(base_images)),
    }
    if concept.attributes is not None:
        row["recognition_concept_prompt"] = recognition(concept_images, concept.attributes)
        row["recognition_base_class_word"] = recognition(base_images, concept.attributes)
    return row, base_prompt, base_images, token, concept_images


def _setting_summary(config, rows: list[dict[str, Any]]) -> dict[str, Any]:
    judged = [r for r in rows if "recognition_concept_prompt" in r]
    summary: dict[str, Any] = {
        **_knobs(config),
        "mean_task_seconds": round(sum(r["task_seconds"] for r in rows) / len(rows), 2),
        "concepts_closer_mmd": sum(r["mmd_concept_prompt"] < r["mmd_base_class_word"] for r in rows),
        "concepts": rows,
    }
    if judged:
        summary["mean_recognition_concept_prompt"] = round(
            sum(r["recognition_concept_prompt"]["recognised"] for r in judged) / len(judged), 4
        )
        summary["mean_recognition_base_class_word"] = round(
            sum(r["recognition_base_class_word"]["recognised"] for r in judged) / len(judged), 4
        )
    return summary


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.cl import generate_chunked
    from core.engine.backbone import load_backbone
    from core.engine.config import PRESETS
    from core.engine.methods import DEFAULT_METHOD
    from core.engine.metrics.features import load_feature_extractor
    from core.engine.prior import prior_latents
    from core.engine.toy.check import sample_grid

    if args.threads:
        torch.set_num_threads(args.threads)
    method = args.method or DEFAULT_METHOD
    base = PRESETS[args.preset or ("tiny" if args.backbone == "tiny" else "toy")]
    configs = settings(args, base)
    concepts = select_concepts(args.concepts)
    args.out.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(args.backbone)
    extractor = load_feature_extractor(args.features)
    prior_dir = args.out / "prior_cache"
    start = time.perf_counter()
    prior_latents(backbone, config=configs[0], cache_dir=prior_dir)
    prior_seconds = time.perf_counter() - start

    def sample(state, prompt: str, seed: int) -> list:
        return generate_chunked(
            backbone=backbone,
            state=state,
            prompt=prompt,
            n=args.n_eval,
            steps=args.gen_steps,
            guidance_scale=args.guidance,
            seed=seed,
        )

    results, grid_images, grid_labels = [], [], []
    shown = min(8, args.n_eval)
    total = len(configs) * len(concepts)
    for s, config in enumerate(configs):
        rows = []
        for k, concept in enumerate(concepts):
            row, base_prompt, base_images, token, concept_images = evaluate_concept(
                concept=concept,
                config=config,
                method=method,
                sample=sample,
                extractor=extractor,
                prior_dir=prior_dir,
                backbone=backbone,
                k=k,
            )
            rows.append(row)
            _print_row(row, done=s * len(concepts) + k + 1, total=total, config=config)
            if s == 0:
                for label, images in (
                    (f"{concept.name} (real)", concept.images),
                    (base_prompt, base_images),
                    (token, concept_images),
                ):
                    padded = list(images[:shown]) + [images[0].copy()] * max(0, shown - len(images))
                    grid_images += padded[:shown]
                    grid_labels += [label] * shown
        results.append(_setting_summary(config, rows))
    grid_path = args.out / "personalization.png"
    sample_grid(grid_images, labels=grid_labels, columns=shown).save(grid_path)
    summary = {
        "command": "mnemo bench personalization " + " ".join(_argv(args)),
        "backbone": args.backbone,
        "backbone_digest": backbone.base_digest,
        "method": method,
        "features": getattr(extractor, "name", args.features),
        "mmd": "unbiased MMD^2, quadratic kernel (paper App. E)",
        "recognition": "judge reads shape, pattern and colours all right (core.engine.toy.recognition)",
        "n_eval": args.n_eval,
        "gen_steps": args.gen_steps,
        "guidance": args.guidance,
        "threads": torch.get_num_threads(),
        "prior_seconds": round(prior_seconds, 2),
        "settings": results,
        "grid": str(grid_path),
    }
    (args.out / "personalization.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for result in results:
            print(
                " ".join(f"{flag.lstrip('-')} {result[field]:g}" for flag, field, _, _ in GRID) + ": "
                f"recognised {result.get('mean_recognition_concept_prompt', float('nan')):.1%} "
                f"(class word {result.get('mean_recognition_base_class_word', float('nan')):.1%}), "
                f"{result['mean_task_seconds']:.1f} s per task"
            )
        print(f"grid: {grid_path}")
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    parts = [f"--concepts {args.concepts}", f"--n-eval {args.n_eval}", f"--seed {args.seed}"]
    if args.method:
        parts.append(f"--method {args.method}")
    if args.guidance != 7.5:
        parts.append(f"--guidance {args.guidance:g}")
    for flag, field, _, _ in GRID:
        values = getattr(args, field)
        if values:
            parts.append(f"{flag} {','.join(f'{v:g}' for v in values)}")
    return parts


def _print_row(row: dict[str, Any], *, done: int, total: int, config) -> None:
    """One progress line per task on stderr (plain text: readable in a log file too)."""
    recognised = row.get("recognition_concept_prompt", {}).get("recognised")
    base = row.get("recognition_base_class_word", {}).get("recognised")
    judged = f"recognised {recognised:.0%} (class word {base:.0%})  " if recognised is not None else ""
    print(
        f"[{done}/{total}] {_describe(config)}  {row['concept']:20s} {judged}task {row['task_seconds']:.1f}s",
        file=sys.stderr,
        flush=True,
    )
