"""``mnemo bench sweep``: tune the consolidation strengths with the same budget for every method.

Two modes, both on a *tuning* sequence of concepts given by name (``--concept-names``), which must
not be the evaluation concepts of ``mnemo bench cl``:

* ``--mode movement`` (fast, 2 tasks): for each method with a λ (``ewc``, ``ewc_dc``, ``c_lora``)
  and each λ of ``--lambdas``, learn task 2 on top of the same task 1 and measure how far the
  adapter moves, against the unregularised reference (``lora_sequential`` for the continual
  methods: ‖θ_2 − θ_1‖; ``c_lora`` at λ = 0 for C-LoRA: ‖B_2 A_2‖). A ratio near 0 means frozen,
  near 1 free. It also records the Fisher mean F̄ of plain EWC and EWC-DC before normalisation.
* ``--mode cl`` (the fair protocol, issue 18 part 4): every method gets ``--budget`` configurations
  drawn (seeded) from its own grid of λ (``--lambdas``) × τ (``--taus``, a factor on the calibrated
  τ, for methods with DC scores); methods without a hyper-parameter run once. Each configuration is
  a full ``bench.cl.run_sequence`` on the tuning concepts with ``--seeds``; the best by A_MMD
  (unbiased MMD², lower is better) is reported per method. Everything goes to ``--out/sweep.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench.cl import add_concept_arguments, default_preset, select_concepts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("movement", "cl"), default="movement")
    parser.add_argument("--backbone", default="toy", help="toy | tiny | a local diffusers SD folder")
    parser.add_argument("--preset", default=None, help="engine preset (default: per backbone)")
    add_concept_arguments(parser)
    parser.add_argument("--methods", default="ewc,ewc_dc,c_lora", help="comma-separated methods")
    parser.add_argument("--lambdas", default="0.01,0.1,1,10,100", help="λ grid (normalised penalties)")
    parser.add_argument("--taus", default="0.5,1,2", help="factors on the preset's calibrated τ (mode cl)")
    parser.add_argument("--budget", type=int, default=3, help="configurations per method (mode cl)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per task (preset default)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--n-eval", type=int, default=24, help="eval images per concept and task (mode cl)")
    parser.add_argument("--gen-steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--features", default="toy-classifier")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="output folder (default bench/results/sweep_<backbone>)")


# --- shared ------------------------------------------------------------------------------------


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def lambda_field(method: str) -> str | None:
    """The config field of a method's consolidation strength (None: the method has none)."""
    from core.engine.methods import get_method

    spec = get_method(method)
    if spec.c_lora_reg:
        return "c_lora_lambda"
    return "ewc_lambda" if spec.ewc != "none" else None


def uses_tau(method: str) -> bool:
    """DC temperatures matter for EWC-DC's Fisher (Eq. 5) and DSC (Eq. 6)."""
    from core.engine.methods import get_method

    spec = get_method(method)
    return spec.ewc == "dc" or spec.dsc


def method_grid(method: str, *, lambdas: list[float], taus: list[float]) -> list[dict[str, float]]:
    """Every configuration a method could be tuned over: {field: value} (τ as a factor)."""
    field = lambda_field(method)
    lam_axis = [{field: lam} for lam in lambdas] if field else [{}]
    tau_axis = [{"tau_factor": tau} for tau in taus] if uses_tau(method) else [{}]
    return [{**a, **b} for a, b in itertools.product(lam_axis, tau_axis)]


def budgeted(grid: list[dict[str, float]], *, budget: int, seed: int) -> list[dict[str, float]]:
    """The same number of configurations for every method: a seeded sample of ``budget`` points."""
    if len(grid) <= budget:
        return list(grid)
    return random.Random(seed).sample(grid, budget)


def apply(config: Any, point: dict[str, float]) -> Any:
    """The preset with a grid point applied (τ factor scales both the student and the teacher τ)."""
    changes = {k: v for k, v in point.items() if k != "tau_factor"}
    if "tau_factor" in point:
        changes["dc_tau"] = config.dc_tau * point["tau_factor"]
        changes["teacher_tau"] = config.teacher_tau * point["tau_factor"]
    return config.with_(**changes)


def movement(before: dict[str, Any], after: dict[str, Any]) -> float:
    """‖θ_after − θ_before‖₂ over the adapter tensors both hold."""
    return float(sum(((after[k] - before[k]).double() ** 2).sum() for k in after if k in before) ** 0.5)


def delta_norm(adapter: dict[str, Any]) -> float:
    """‖Σ_layers B A‖_F: the size of a per-task LoRA's ΔW."""
    from core.engine.adapters import lora_delta, lora_modules

    return float(sum((lora_delta(adapter, m).double() ** 2).sum() for m in lora_modules(adapter)) ** 0.5)


# --- mode movement -----------------------------------------------------------------------------


def movement_report(
    *, backbone: Any, concepts: list[Any], config: Any, methods: list[str], lambdas: list[float], cache: Path
) -> dict[str, Any]:
    """Task-2 movement per (method, λ) relative to the unregularised reference, from one task 1."""
    from bench.cl import learn_sequence
    from core.engine.losses import fisher_mean, normalise_fisher

    def task(state: Any, index: int, method: str, cfg: Any) -> Any:
        return learn_sequence(
            backbone=backbone,
            concepts=concepts[index : index + 1],
            method=method,
            config=cfg,
            prior_cache_dir=cache,
            state=state,
        )

    first_seq = task(None, 0, "lora_sequential", config)
    second_seq = task(first_seq, 1, "lora_sequential", config)
    free = movement(first_seq.task_adapters[0], second_seq.task_adapters[1])
    report: dict[str, Any] = {"reference": {"lora_sequential": free}, "methods": {}}
    for method in methods:
        field = lambda_field(method)
        if field is None:
            raise ValueError(f"{method} has no consolidation strength to sweep")
        first = task(None, 0, method, config)
        entry: dict[str, Any] = {"field": field, "by_lambda": {}}
        if first.fisher is not None:
            entry["fisher_mean_raw"] = fisher_mean(first.fisher)
            entry["fisher_mean_normalised"] = fisher_mean(
                normalise_fisher(first.fisher, mean=first.fisher_scale)
            )
        if field == "c_lora_lambda":
            unregularised = task(first, 1, method, config.with_(c_lora_lambda=0.0))
            reference = delta_norm(unregularised.task_adapters[1])
        else:
            reference = free
        entry["reference"] = reference
        for lam in lambdas:
            second = task(first, 1, method, config.with_(**{field: lam}))
            moved = (
                delta_norm(second.task_adapters[1])
                if field == "c_lora_lambda"
                else movement(first.task_adapters[0], second.task_adapters[1])
            )
            entry["by_lambda"][str(lam)] = {
                "movement": moved,
                "ratio": moved / reference if reference else None,
            }
        report["methods"][method] = entry
    return report


# --- mode cl -----------------------------------------------------------------------------------


def cl_sweep(
    *, args: argparse.Namespace, backbone: Any, concepts: list[Any], config: Any, out: Path, log
) -> dict:
    """Same-budget tuning: every method's sampled configurations, each a full tuning sequence."""
    from bench.cl import retention_summary, run_sequence
    from core.engine.metrics import a_mmd, bwt_mmd
    from core.engine.metrics.features import load_feature_extractor, standardize

    extractor = load_feature_extractor(args.features, device=args.device)
    real = [standardize(extractor(c.images)) for c in concepts]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    lambdas, taus = floats(args.lambdas), floats(args.taus)
    results: dict[str, Any] = {}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        points = budgeted(method_grid(method, lambdas=lambdas, taus=taus), budget=args.budget, seed=0)
        trials = []
        for point in points:
            scores = []
            for seed in seeds:
                record, _ = run_sequence(
                    backbone=backbone,
                    concepts=concepts,
                    method=method,
                    seed=seed,
                    config=apply(config, point).with_(seed=seed),
                    extractor=extractor,
                    real_features=real,
                    n_eval=args.n_eval,
                    gen_steps=args.gen_steps,
                    guidance=args.guidance,
                    dc_trials=0,
                    prior_cache_dir=out / "prior_cache",
                    log=log,
                )
                scores.append(
                    {
                        "a_mmd": a_mmd(_matrix(record["to_real"])),
                        "bwt_mmd": bwt_mmd(_matrix(record["to_real"])),
                        "recognition": record.get("recognition"),
                    }
                )
            mean_a = sum(s["a_mmd"] for s in scores) / len(scores)
            kept = retention_summary([s["recognition"] for s in scores])
            trials.append({"point": point, "per_seed": scores, "a_mmd": mean_a, "recognition": kept})
            log(f"{method} {point}: A_MMD x1e3 = {mean_a * 1e3:.2f}; recognition {kept}")
            results[method] = {"trials": trials, "budget": len(points)}
            # A sweep runs for an hour or more: what it measured so far survives an interruption.
            (out / "cl.partial.json").write_text(json.dumps(results, indent=1) + "\n")
        best = min(trials, key=lambda t: t["a_mmd"])
        results[method] = {"trials": trials, "best": best["point"], "budget": len(points)}
    return results


def _matrix(rows: list[list[float | None]]) -> list[list[float]]:
    from core.engine.metrics.report import to_matrix

    return to_matrix(rows)


# --- the command -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/cl.py
    from bench.cl import _logger
    from core.engine.backbone import load_backbone
    from core.engine.config import PRESETS
    from core.engine.errors import EngineError

    wall = time.perf_counter()
    log = _logger()
    try:
        preset = args.preset or default_preset(args.backbone)
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        config = PRESETS[preset]
        if args.steps is not None:
            config = config.with_(train_steps=args.steps)
        concepts = select_concepts(args)
        if len(concepts) < 2:
            raise ValueError("a sweep needs at least 2 tuning concepts")
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        for method in methods:
            lambda_field(method)
        backbone = load_backbone(args.backbone, device=args.device)
    except (EngineError, ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or f"bench/results/sweep_{Path(args.backbone).name}")
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.mode == "movement":
            result = movement_report(
                backbone=backbone,
                concepts=concepts,
                config=config,
                methods=methods,
                lambdas=floats(args.lambdas),
                cache=out / "prior_cache",
            )
        else:
            result = cl_sweep(
                args=args, backbone=backbone, concepts=concepts, config=config, out=out, log=log
            )
    except (EngineError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    record = {
        "command": "mnemo bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
        "mode": args.mode,
        "backbone": backbone.name,
        "weights": backbone.base_digest,
        "preset": preset,
        "config": config.to_dict(),
        "concepts": [c.name for c in concepts],
        "result": result,
        "wall_seconds": round(time.perf_counter() - wall, 1),
    }
    path = out / f"{args.mode}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"written to {path}", file=sys.stderr)
    return 0
