"""``mnemo bench cl``: the continual-learning table of the paper (Table 1, Fig. 12), per method.

For every method and seed, the concepts are learned one task at a time with
``core.engine.task.run_task`` (exactly what the service runs). After every task, ``--n-eval``
images of every concept seen so far are generated with "a photo of <token>" and encoded by
the feature extractor; the per-(task, concept) MMD/KID/I2I matrices of each run are cached in
``--out/runs/`` so an interrupted benchmark resumes where it stopped. From the cached runs
it writes ``table.md`` (Table 1 layout), ``evolution.png`` (Fig. 12), ``forgetting.png``
(MMD of concept j after task i), ``samples.png`` (methods × concepts after the last task)
and ``results.json`` (all raw numbers). Real images stay inside the harness.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.vocabulary import slug_from

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
EVAL_PROMPT = "a photo of {token}"
GENERATE_CHUNK = 16
"""Images per ``generate`` call (its own limit)."""
REFERENCE_METHOD = "lora_sequential"
"""Every difference in the tables is against sequential LoRA (issue 18, part 2)."""
CLASS_WORD_METHODS = {"textual_inversion", "custom_diffusion", "custom_diffusion_ewc"}
"""Paper §4: "For CD and TI, we additionally include the concept name after the modifier token"."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="toy", help="toy | tiny | a local diffusers SD folder")
    parser.add_argument(
        "--preset", default=None, help="engine preset (default: toy, tiny or paper per backbone)"
    )
    add_concept_arguments(parser)
    parser.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=None, help="training steps per task (preset default)")
    parser.add_argument(
        "--n-eval", type=int, default=24, help="generated images per concept and task (>= 24 for the tables)"
    )
    parser.add_argument("--gen-steps", type=int, default=25, help="sampling steps of the evaluation images")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    parser.add_argument(
        "--features", default="toy-classifier", help="toy-classifier | random-proxy | a local CLIP folder"
    )
    add_consolidation_arguments(parser)
    parser.add_argument(
        "--dc-trials", type=int, default=8, help="noise draws per image for DC accuracy (0: skip)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="output folder (default bench/results/cl_<backbone>)")
    parser.add_argument(
        "--cached-only", action="store_true", help="report only the runs cached in --out (run nothing)"
    )


def add_consolidation_arguments(parser: argparse.ArgumentParser) -> None:
    """Overrides of the preset's consolidation strengths and DC temperature (docs/method.md)."""
    parser.add_argument("--dc-reduction", choices=("sum", "mean"), default=None, help="override the preset")
    parser.add_argument("--dc-tau", type=float, default=None, help="student/Fisher DC τ (Eq. 3)")
    parser.add_argument("--teacher-tau", type=float, default=None, help="DSC teacher τ (Eq. 6)")
    parser.add_argument(
        "--ewc-lambda", type=float, default=None, help="λ of plain EWC (ewc, dsc_ewc, custom_diffusion_ewc)"
    )
    parser.add_argument("--ewc-dc-lambda", type=float, default=None, help="λ of EWC-DC (ewc_dc, dsc_ewc_dc)")
    parser.add_argument("--c-lora-lambda", type=float, default=None, help="λ of C-LoRA's Eq. 2")


def preset_config(args: argparse.Namespace, preset: str) -> Any:
    """The preset with the command line's steps, reduction and τ applied (λ are per method)."""
    from core.engine.config import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    changes = {
        "train_steps": args.steps,
        "dc_reduction": args.dc_reduction,
        "dc_tau": args.dc_tau,
        "teacher_tau": args.teacher_tau,
    }
    return PRESETS[preset].with_(**{k: v for k, v in changes.items() if v is not None})


def method_config(config: Any, method: str, args: argparse.Namespace) -> Any:
    """``config`` with the λ flag that applies to ``method`` (plain EWC, EWC-DC or C-LoRA)."""
    from core.engine.methods import get_method

    spec = get_method(method)
    if spec.c_lora_reg and args.c_lora_lambda is not None:
        return config.with_(c_lora_lambda=args.c_lora_lambda)
    flag = {"plain": args.ewc_lambda, "dc": args.ewc_dc_lambda}.get(spec.ewc)
    return config.with_(ewc_lambda=flag) if flag is not None else config


# --- concepts -------------------------------------------------------------------------------


@dataclass
class Concept:
    name: str
    class_word: str | None
    images: list[Any]  # PIL images
    attributes: Any = None  # core.engine.toy.recognition.Attributes when the toy's judge can score it


def load_concept_folder(folder: Path) -> list[Concept]:
    """One sub-folder per concept, sorted by name; an optional ``class_word.txt`` in each."""
    from PIL import Image

    if not folder.is_dir():
        raise FileNotFoundError(f"concepts folder {folder} does not exist")
    concepts = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            continue
        images = []
        for file in files:
            with Image.open(file) as image:
                images.append(image.convert("RGB"))
        word_file = sub / "class_word.txt"
        class_word = word_file.read_text().strip() or None if word_file.is_file() else None
        concepts.append(Concept(name=slug_from(sub.name), class_word=class_word, images=images))
    if not concepts:
        raise ValueError(f"no concept sub-folders with images in {folder}")
    return concepts


def bundled_concepts() -> list[Concept]:
    """The toy backbone's 6 drawn sample concepts (``core.engine.toy.concepts.sample_concepts``).

    The two bundled photographs are left out: the offline feature extractor (the toy
    classifier) knows nothing about photographs, so metrics on them would be noise.
    """
    from core.engine.toy.concepts import sample_concepts

    found = sample_concepts(photos=False)  # the 6 drawn novel objects: in the toy classifier's domain
    items = found.items() if isinstance(found, dict) else found
    concepts = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, value = item
            if isinstance(value, list):
                concepts.append(Concept(name=name, class_word=None, images=value))
                continue
            item = value
        concepts.append(_as_concept(item))
    return concepts


def _as_concept(item: Any) -> Concept:
    """A ``core.engine.toy.concepts.SampleConcept`` as the benchmark's ``Concept``."""
    return Concept(
        name=item.name,
        class_word=getattr(item, "class_word", None),
        images=list(item.images),
        attributes=getattr(item, "attributes", None),
    )


def named_concepts(names: Sequence[str]) -> list[Concept]:
    """Bundled toy concepts by name, in the given order (``core.engine.toy.concepts.get_concept``)."""
    from core.engine.toy.concepts import get_concept

    concepts = []
    for name in names:
        try:
            concepts.append(_as_concept(get_concept(name)))
        except KeyError as error:
            raise ValueError(str(error).strip("'\"")) from None
    return concepts


def learn_task(
    *, backbone: Any, state: Any, concept: Concept, method: str, config: Any, prior_cache_dir: Path
) -> Any:
    """One task of ``concept`` on top of ``state`` (``core.engine.task.run_task``): its TaskResult."""
    from core.engine.task import run_task

    return run_task(
        backbone=backbone,
        state=state,
        concept=concept.name,
        class_word=concept.class_word,
        images=list(concept.images),
        method=method,
        config=config,
        prior_cache_dir=prior_cache_dir,
    )


def learn_sequence(
    *,
    backbone: Any,
    concepts: Sequence[Concept],
    method: str,
    config: Any,
    prior_cache_dir: Path,
    state: Any = None,
) -> Any:
    """The user state after learning ``concepts`` in order with ``method``."""
    from core.engine.state import UserState

    state = state or UserState.empty()
    for concept in concepts:
        state = learn_task(
            backbone=backbone,
            state=state,
            concept=concept,
            method=method,
            config=config,
            prior_cache_dir=prior_cache_dir,
        ).state
    return state


def add_concept_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concepts", default=None, help="folder with one sub-folder of images per concept (sorted order)"
    )
    parser.add_argument(
        "--concept-names",
        default=None,
        help="comma-separated bundled toy concepts by name, in task order (e.g. a tuning sequence)",
    )
    parser.add_argument("--n-concepts", type=int, default=None, help="use only the first N concepts")


def select_concepts(args: argparse.Namespace) -> list[Concept]:
    """--concepts (a folder) or --concept-names (bundled, by name) or the bundled drawn concepts."""
    if args.concepts and args.concept_names:
        raise ValueError("give --concepts or --concept-names, not both")
    if args.concepts:
        concepts = load_concept_folder(Path(args.concepts))
    elif args.concept_names:
        concepts = named_concepts([n.strip() for n in args.concept_names.split(",") if n.strip()])
    else:
        concepts = bundled_concepts()
    return concepts[: args.n_concepts] if args.n_concepts is not None else concepts


def concepts_fingerprint(concepts: Sequence[Concept]) -> str:
    digest = hashlib.sha256()
    for concept in concepts:
        digest.update(f"{concept.name}|{concept.class_word}|{len(concept.images)}".encode())
        for image in concept.images:
            digest.update(image.convert("RGB").tobytes())
    return digest.hexdigest()[:16]


# --- one (method, seed) run -----------------------------------------------------------------


def eval_prompt(method: str, concept: Concept) -> str:
    prompt = EVAL_PROMPT.format(token=f"<{concept.name}>")
    if method in CLASS_WORD_METHODS and concept.class_word:
        prompt += f" {concept.class_word}"
    return prompt


def parameter_counts(backbone: Any, *, method_name: str, config: Any, n_tasks: int) -> dict[str, int]:
    """Parameters trained per task and kept over the sequence (beyond the frozen U-Net).

    Trained: the adapter (LoRA r·(in+out) / VeRA out+r per attn2 K/V layer, full K/V for Custom
    Diffusion, nothing for textual inversion; token rows are not counted, as in Table 1).
    Stored: one adapter for a continually trained one, one per task for per-task adapters and
    for DSC (its teacher 2 is a stored old-task adapter), plus one Fisher of the adapter's size
    for EWC methods (the anchor θ* is the stored adapter itself).
    """
    from core.engine.adapters import kv_modules
    from core.engine.methods import get_method

    method = get_method(method_name)
    layers = kv_modules(backbone.unet).values()
    if method.adapter == "none":
        per_task = 0
    elif method.adapter == "kv":
        per_task = sum(layer.in_features * layer.out_features for layer in layers)
    elif config.adapter_type == "vera":
        per_task = sum(layer.out_features + config.vera_rank for layer in layers)
    else:
        per_task = sum(config.lora_rank * (layer.in_features + layer.out_features) for layer in layers)
    adapters = n_tasks if (method.per_task_adapters or method.dsc) else 1
    stored = per_task * adapters + (per_task if method.ewc != "none" else 0)
    unet = sum(p.numel() for n, p in backbone.unet.named_parameters() if not _is_adapter_param(n))
    return {"trained": per_task, "stored": stored, "unet": unet}


def _is_adapter_param(name: str) -> bool:
    """peft-injected adapter tensors (the U-Net's own weights live on as ``base_layer``)."""
    return any(part in name for part in (".lora_", ".vera_"))


def generate_chunked(*, n: int, seed: int, **kwargs: Any) -> list[Any]:
    """``n`` images in calls of at most ``GENERATE_CHUNK`` (the engine's limit per call); the
    chunk at ``offset`` uses seed ``seed + offset``, so the first chunk is a plain ``generate``."""
    from core.engine.generate import generate

    images: list[Any] = []
    for offset in range(0, n, GENERATE_CHUNK):
        images += generate(n=min(GENERATE_CHUNK, n - offset), seed=seed + offset, **kwargs)
    return images


def run_sequence(
    *,
    backbone: Any,
    concepts: Sequence[Concept],
    method: str,
    seed: int,
    config: Any,
    extractor: Any,
    real_features: Sequence[Any],
    n_eval: int,
    gen_steps: int,
    guidance: float,
    dc_trials: int,
    prior_cache_dir: Path,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], list[Any]]:
    """Learn ``concepts`` in order with ``method``; evaluate every seen concept after each task."""
    import torch

    from core.engine.metrics import image_image_similarity, kid, mmd, n_param_store_pct, n_param_train_pct
    from core.engine.metrics.features import standardize
    from core.engine.state import UserState
    from core.engine.toy.recognition import recognition

    n = len(concepts)
    nan = float("nan")
    to_real = [[nan] * n for _ in range(n)]
    drift = [[nan] * n for _ in range(n)]
    kid_m = [[nan] * n for _ in range(n)]
    i2i = [[nan] * n for _ in range(n)]
    recognised = [[nan] * n for _ in range(n)]  # the judge's recognition of concept j after task i
    own_features: list[Any] = [None] * n  # X_{j,j}
    seconds = {"train": 0.0, "eval": 0.0}
    losses: list[dict[str, float]] = []
    state = UserState.empty()
    last_images: list[Any] = []
    for i, concept in enumerate(concepts):
        torch.manual_seed(seed * 1000 + i)
        start = time.perf_counter()
        result = learn_task(
            backbone=backbone,
            state=state,
            concept=concept,
            method=method,
            config=config,
            prior_cache_dir=prior_cache_dir,
        )
        state = result.state
        seconds["train"] += time.perf_counter() - start
        losses.append({k: float(v[-1]) for k, v in result.losses.items() if len(v)})
        start = time.perf_counter()
        last_images = []
        for j in range(i + 1):
            images = generate_chunked(
                backbone=backbone,
                state=state,
                prompt=eval_prompt(method, concepts[j]),
                n=n_eval,
                steps=gen_steps,
                guidance_scale=guidance,
                seed=seed * 100_000 + j * 100,
            )
            last_images.append(images[0])
            feats = standardize(extractor(images))
            if j == i:
                own_features[j] = feats
            to_real[i][j] = mmd(real_features[j], feats)
            drift[i][j] = drift_mmd(own_features[j], feats, same_task=j == i)
            kid_m[i][j] = kid(real_features[j], feats, seed=seed).mean
            i2i[i][j] = image_image_similarity(real_features[j], feats)
            if concepts[j].attributes is not None:
                recognised[i][j] = recognition(images, concepts[j].attributes)["recognised"]
        seconds["eval"] += time.perf_counter() - start
        log(
            f"  task {i + 1}/{n} {concept.name}: train+consolidate {result_seconds(result):.0f}s, "
            f"MMD(real, gen) of seen concepts x1e3 = {[round(v * 1e3, 1) for v in to_real[i][: i + 1]]}"
        )
    accuracy = None
    if dc_trials > 0:
        from core.engine.metrics.dc_accuracy import dc_training_accuracy

        start = time.perf_counter()
        accuracy = dc_training_accuracy(
            backbone=backbone,
            state=state,
            concepts=[(c.name, list(c.images)) for c in concepts],
            config=config,
            trials=dc_trials,
            seed=seed,
        )
        seconds["dc_accuracy"] = time.perf_counter() - start
    counts = parameter_counts(backbone, method_name=method, config=config, n_tasks=n)
    from core.engine.metrics.report import to_json_matrix

    record = {
        "method": method,
        "seed": seed,
        "concepts": [c.name for c in concepts],
        "to_real": to_json_matrix(to_real),
        "drift": to_json_matrix(drift),
        "kid": to_json_matrix(kid_m),
        "i2i": to_json_matrix(i2i),
        "recognition": to_json_matrix(recognised),
        "dc_accuracy": accuracy,
        "params": counts,
        "n_param_train_pct": n_param_train_pct(trained=counts["trained"], unet=counts["unet"]),
        "n_param_store_pct": n_param_store_pct(stored=counts["stored"], unet=counts["unet"]),
        "final_losses": losses,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    return record, last_images


def retention_summary(matrices: Sequence[Any]) -> dict[str, Any] | None:
    """Mean over seeds of R[j][j] (recognition just after task j) and R[T][j] (after the last
    task), and the smallest kept ratio R[T][j] / R[j][j] over the earlier concepts j < T."""
    from core.engine.metrics.report import to_matrix

    found = [to_matrix(m) for m in matrices if m]
    if not found or all(math.isnan(v) for v in found[0][-1]):
        return None
    n = len(found[0])
    mean = _mean_matrix(found)
    just, end = [mean[j][j] for j in range(n)], [mean[n - 1][j] for j in range(n)]
    ratios = [e / j for j, e in zip(just[:-1], end[:-1], strict=True) if j and j > 0]
    return {
        "just_learned": [None if math.isnan(v) else round(v, 4) for v in just],
        "at_the_end": [None if math.isnan(v) else round(v, 4) for v in end],
        "min_kept_earlier": round(min(ratios), 4) if ratios else None,
    }


def drift_mmd(own: Any, later: Any, *, same_task: bool) -> float:
    """MMD(F(X_{j,j}), F(X_{i,j})) of Eq. 8: 0 for the same set (i = j, or an unchanged model such as
    textual inversion's, whose images are bit-identical), else the unbiased MMD² of two samples."""
    import torch

    from core.engine.metrics import mmd

    if same_task or torch.equal(own, later):
        return 0.0
    return mmd(own, later)


def result_seconds(result: Any) -> float:
    return float(sum(getattr(result, "seconds", {}).values()))


# --- the command ----------------------------------------------------------------------------


def default_preset(backbone: str) -> str:
    return backbone if backbone in ("toy", "tiny") else "paper"


class SequenceFailed(RuntimeError):
    """One (method, seed) sequence raised an engine error; the message names both."""


@dataclass
class Setup:
    """What a ``mnemo bench cl`` run was asked for, validated and loaded."""

    methods: list[str]
    seeds: list[int]
    preset: str
    config: Any
    concepts: list[Concept]
    backbone: Any
    extractor: Any

    @property
    def concept_names(self) -> list[str]:
        return [c.name for c in self.concepts]


def run(args: argparse.Namespace) -> int:
    """Validate and load, run (or load from the cache) every (seed, method), write the report."""
    # Spinning OpenMP workers make a contended CPU several times slower (measured here: 8x per
    # training step with 2 threads on a shared 2-core machine); must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from core.engine.errors import EngineError

    wall_start = time.perf_counter()
    log = _logger()
    try:
        setup = prepare(args)
    except (EngineError, ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or f"bench/results/cl_{Path(args.backbone).name}")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    try:
        records, finals, configs = run_all(setup, args=args, out=out, log=log)
    except SequenceFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    records = {method: runs for method, runs in records.items() if runs}
    if not records:
        print(f"error: no finished runs in {out / 'runs'} for these settings", file=sys.stderr)
        return 1
    results = write_report(setup, args=args, out=out, records=records, finals=finals, configs=configs)
    wall = time.perf_counter() - wall_start
    results["wall_seconds"] = round(wall, 1)
    _write_json(out / "results.json", results)
    if args.json:
        print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=1, allow_nan=False))
    else:
        print((out / "table.md").read_text())
        print(f"outputs in {out}/ (table.md, evolution.png, forgetting.png, samples.png, results.json)")
    print(f"total wall time: {wall:.1f} s", file=sys.stderr if args.json else sys.stdout)
    return 0


def prepare(args: argparse.Namespace) -> Setup:
    """The methods, seeds, preset and concepts asked for, checked; the backbone and features loaded."""
    from core.engine.backbone import load_backbone
    from core.engine.methods import METHODS, get_method
    from core.engine.metrics.features import load_feature_extractor

    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(METHODS)
    for method in methods:
        get_method(method)
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    preset = args.preset or default_preset(args.backbone)
    config = preset_config(args, preset)
    concepts = select_concepts(args)
    if len(concepts) < 2:
        raise ValueError("a continual benchmark needs at least 2 concepts")
    if args.n_eval < 2:
        raise ValueError("--n-eval must be at least 2 (MMD and KID are unbiased estimates)")
    for concept in concepts:
        if len(concept.images) < 2:
            raise ValueError(f"concept {concept.name} needs at least 2 images for the metrics")
    backbone = load_backbone(args.backbone, device=args.device)
    extractor = load_feature_extractor(args.features, device=args.device)
    return Setup(methods, seeds, preset, config, concepts, backbone, extractor)


def run_all(
    setup: Setup, *, args: argparse.Namespace, out: Path, log: Callable[[str], None]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]], dict[str, Any]]:
    """Every (seed, method) run, seed-major (a first seed of every method is complete before the
    second starts), each loaded from ``out/runs`` when its fingerprint matches, else run and cached.
    Returns the records per method, each method's last images, and each method's config."""
    from core.engine.errors import EngineError
    from core.engine.metrics.features import standardize

    real_features = [standardize(setup.extractor(c.images)) for c in setup.concepts]
    fingerprint = run_fingerprint_base(setup, args=args)
    _warn_if_calibrated_elsewhere(setup.preset, setup.backbone.base_digest, log)
    configs = {method: method_config(setup.config, method, args) for method in setup.methods}
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in setup.methods}
    finals: dict[str, list[Any]] = {}
    for seed in setup.seeds:
        for method in setup.methods:
            path = out / "runs" / f"{method}__seed{seed}.json"
            strip = out / "samples" / f"{method}__seed{seed}.png"
            fingerprint_here = {**fingerprint, "config": configs[method].to_dict()}
            cached = _load_cached(path, fingerprint_here)
            if cached is not None:
                log(f"{method} seed {seed}: cached ({path})")
                records[method].append(cached)
                if method not in finals and strip.is_file():
                    finals[method] = _split_strip(strip, len(setup.concepts))
                continue
            if args.cached_only:
                log(f"{method} seed {seed}: not run yet, left out (--cached-only)")
                continue
            log(f"{method} seed {seed}: {len(setup.concepts)} tasks, {setup.config.train_steps} steps each")
            start = time.perf_counter()
            try:
                record, images = run_sequence(
                    backbone=setup.backbone,
                    concepts=setup.concepts,
                    method=method,
                    seed=seed,
                    config=configs[method].with_(seed=seed),
                    extractor=setup.extractor,
                    real_features=real_features,
                    n_eval=args.n_eval,
                    gen_steps=args.gen_steps,
                    guidance=args.guidance,
                    dc_trials=args.dc_trials,
                    prior_cache_dir=out / "prior_cache",
                    log=log,
                )
            except EngineError as error:
                raise SequenceFailed(f"{method} seed {seed}: {error}") from error
            record["seconds"]["total"] = round(time.perf_counter() - start, 2)
            record["fingerprint"] = fingerprint_here
            _write_json(path, record)
            _save_strip(images, strip)
            records[method].append(record)
            finals.setdefault(method, images)
            log(f"{method} seed {seed}: done in {record['seconds']['total']:.0f}s")
    return records, finals, configs


def run_fingerprint_base(setup: Setup, *, args: argparse.Namespace) -> dict[str, Any]:
    """What a cached run must have been made with to be reused (the method's config is added per run)."""
    return {
        "backbone": setup.backbone.name,
        "weights": setup.backbone.base_digest,
        "config": setup.config.to_dict(),
        "concepts": concepts_fingerprint(setup.concepts),
        "n_eval": args.n_eval,
        "gen_steps": args.gen_steps,
        "guidance": args.guidance,
        "features": setup.extractor.name,
        "feature_normalisation": "l2 x sqrt(d)",
        "mmd": "unbiased MMD² (U-statistic), quadratic kernel",
        "dc_trials": args.dc_trials,
    }


def write_report(
    setup: Setup,
    *,
    args: argparse.Namespace,
    out: Path,
    records: dict[str, list[dict[str, Any]]],
    finals: dict[str, list[Any]],
    configs: dict[str, Any],
) -> dict[str, Any]:
    """``table.md`` (the paper's table, differences vs sequential LoRA, recognition kept) and the
    figures into ``out``; returns the ``results.json`` record (without its wall time)."""
    from core.engine.metrics import report
    from core.engine.metrics.bootstrap import differences_vs_reference, markdown_differences

    config, extractor, names = setup.config, setup.extractor, setup.concept_names
    summary = {method: report.aggregate(runs) for method, runs in records.items()}
    command = "mnemo bench cl " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if len(sys.argv) > 2 else ""
    caption = (
        f"Continual personalization on `{setup.backbone.name}` ({len(setup.concepts)} concepts, "
        f"preset `{setup.preset}`, "
        f"{config.train_steps} train + {config.consolidation_steps} DSC/Fisher steps per task, "
        f"dc_reduction `{config.dc_reduction}`, seeds {setup.seeds} "
        "(column Seeds: runs finished per method), "
        f"{args.n_eval} eval images per concept and task, {args.gen_steps} sampling steps, "
        f"guidance {args.guidance})."
    )
    differences = differences_vs_reference(records, reference=REFERENCE_METHOD)
    table = report.markdown_table(summary, extractor=extractor.name, caption=caption)
    table += "\n" + markdown_differences(differences, reference=REFERENCE_METHOD)
    kept = {m: retention_summary([r.get("recognition") for r in runs]) for m, runs in records.items()}
    table += "\n" + markdown_retention(kept, concepts=names)
    (out / "table.md").write_text(table)
    report.plot_evolution(summary, out / "evolution.png", extractor=extractor.name)
    mean_to_real = {
        method: _mean_matrix([report.to_matrix(r["to_real"]) for r in runs])
        for method, runs in records.items()
    }
    report.plot_forgetting(mean_to_real, out / "forgetting.png", concepts=names, extractor=extractor.name)
    grid_rows = {"real": [c.images[0] for c in setup.concepts], **finals}
    report.sample_grid(grid_rows, out / "samples.png", concepts=names)
    return {
        "command": command,
        "backbone": setup.backbone.name,
        "preset": setup.preset,
        "features": extractor.name,
        "concepts": names,
        "methods": list(records),
        "seeds": setup.seeds,
        "config": config.to_dict(),
        "method_lambdas": {
            m: {"ewc_lambda": c.ewc_lambda, "c_lora_lambda": c.c_lora_lambda} for m, c in configs.items()
        },
        "summary": summary,
        "differences_vs_" + REFERENCE_METHOD: differences,
        "recognition": kept,
        "runs": records,
    }


def markdown_retention(kept: dict[str, Any], *, concepts: Sequence[str]) -> str:
    """Recognition of each concept right after its task and after the last task, per method."""
    judged = {m: k for m, k in kept.items() if k is not None}
    if not judged:
        return ""
    lines = [
        "Recognition by the toy's judge (shape, pattern and colours all right; docs/toy.md), mean over "
        "seeds: just after the concept's own task → after the last task (kept = ratio).",
        "",
        "| Method | " + " | ".join(concepts[:-1]) + f" | {concepts[-1]} (last) | min kept |",
        "|---|" + "---:|" * (len(concepts) + 1),
    ]
    for method, k in judged.items():
        cells = [
            "–" if just is None else f"{just:.0%} → {end:.0%}"
            for just, end in zip(k["just_learned"], k["at_the_end"], strict=True)
        ]
        low = k["min_kept_earlier"]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {'–' if low is None else f'{low:.0%}'} |")
    return "\n".join(lines) + "\n"


def _warn_if_calibrated_elsewhere(preset: str, weights: str, log: Callable[[str], None]) -> None:
    """The preset's recorded τ was measured on some weights; say so when these are others."""
    from core.engine.dc_calibration import calibration_path

    path = calibration_path(preset)
    if not path.is_file():
        return
    record = json.loads(path.read_text())
    if record.get("weights") != weights:
        log(
            f"warning: preset {preset}'s τ was calibrated on weights {record.get('weights')}, these are "
            f"{weights}; re-run `{record.get('command')}`"
        )


def _logger() -> Callable[[str], None]:
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.0f}s] {message}", file=sys.stderr, flush=True)

    return log


def _load_cached(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("fingerprint") == json.loads(json.dumps(fingerprint)) else None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False))
    tmp.replace(path)


def _save_strip(images: Sequence[Any], path: Path) -> None:
    from PIL import Image

    size = images[0].size
    strip = Image.new("RGB", (size[0] * len(images), size[1]))
    for k, image in enumerate(images):
        strip.paste(image.convert("RGB").resize(size), (k * size[0], 0))
    strip.save(path)


def _split_strip(path: Path, count: int) -> list[Any]:
    from PIL import Image

    with Image.open(path) as strip:
        strip = strip.convert("RGB")
    width = strip.size[0] // count
    return [strip.crop((k * width, 0, (k + 1) * width, strip.size[1])) for k in range(count)]


def _mean_matrix(matrices: Sequence[list[list[float]]]) -> list[list[float]]:
    n = len(matrices[0])
    return [[sum(m[i][j] for m in matrices) / len(matrices) for j in range(n)] for i in range(n)]
