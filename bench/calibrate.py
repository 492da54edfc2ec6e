"""``mnemo bench calibrate``: the DC temperature τ of a backbone preset, measured once and recorded.

The DSC teacher is the LoRA θ_n right after training task n, read on the DC set {c0, c_n, c_{n−1}}
(Eq. 6). This command learns the first ``--tasks`` concepts with ``lora_sequential`` at the preset,
draws ``--trials`` (t, ε) per training image of task n, computes the teacher's errors err_i (Eq. 3,
``--reduction``) and bisects log τ so that the mean top-1 DC probability is ``--target``
(``core.engine.dc_calibration``). It writes ``core/engine/assets/dc_calibration_<preset>.json``
(``--out`` to write elsewhere) with the command, the weights digest and the top-1 probability at the
paper's τ (1 and 0.05) for comparison; ``core/engine/config.py`` reads that file into the preset.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench.cl import add_concept_arguments, default_preset, learn_sequence, select_concepts

PAPER_TAUS = (1.0, 0.05)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="toy", help="toy | tiny | a local diffusers SD folder")
    parser.add_argument("--preset", default=None, help="engine preset (default: toy, tiny or paper)")
    add_concept_arguments(parser)
    parser.add_argument("--tasks", type=int, default=2, help="concepts learned; the last one is probed")
    parser.add_argument("--steps", type=int, default=None, help="training steps per task (preset default)")
    parser.add_argument("--trials", type=int, default=8, help="(t, ε) draws per training image")
    parser.add_argument("--reduction", choices=("sum", "mean"), default="mean", help="err_i of Eq. 3")
    parser.add_argument("--target", type=float, default=0.8, help="teacher mean top-1 DC probability")
    parser.add_argument(
        "--student-target", type=float, default=None, help="top-1 of the student/Fisher τ (default --target)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON path (default: the preset's calibration file)")


def teacher_errors(*, backbone: Any, state: Any, images: list[Any], trials: int, reduction: str, seed: int):
    """The newest adapter's errors on {c0, c_n, c_{n−1}} (DSC's DC set) for task n's images: [S, 3]."""
    from core.engine.data import encode_latents, to_pixels
    from core.engine.metrics.dc_accuracy import DC_PROMPT, dc_error_samples

    tokens = state.tokens
    prompts = [backbone.prior_prompt, *(DC_PROMPT.format(token=tok) for tok in (tokens[-1], tokens[-2]))]
    latents = encode_latents(backbone, to_pixels(images, resolution=backbone.resolution, hflip=False))
    errors = dc_error_samples(
        backbone=backbone,
        state=state,
        latents=latents,
        prompts=prompts,
        trials=trials,
        reduction=reduction,
        seed=seed,
    )
    return errors.reshape(-1, errors.shape[-1])


def calibration_record(errors: Any, *, target: float, student_target: float) -> dict[str, Any]:
    """τ for the teacher and the student, the top-1 they give, and the top-1 at the paper's τ."""
    from core.engine.dc_calibration import calibrate_tau, mean_top1

    teacher_tau = calibrate_tau(errors, target=target)
    dc_tau = calibrate_tau(errors, target=student_target)
    gaps = errors - errors.min(dim=-1, keepdim=True).values
    return {
        "teacher_tau": teacher_tau,
        "dc_tau": dc_tau,
        "teacher_top1": mean_top1(errors, tau=teacher_tau),
        "student_top1": mean_top1(errors, tau=dc_tau),
        "target": target,
        "student_target": student_target,
        "top1_at_paper_tau": {str(tau): mean_top1(errors, tau=tau) for tau in PAPER_TAUS},
        "samples": int(errors.shape[0]),
        "conditions": int(errors.shape[1]),
        "median_error_gap": float(gaps[gaps > 0].median()) if bool((gaps > 0).any()) else 0.0,
    }


def prior_cache_dir(args: argparse.Namespace) -> Path:
    """Next to ``--out`` when given, else ``bench/results/calibrate_<backbone>/prior_cache``."""
    if args.out:
        return Path(args.out).parent / "prior_cache"
    return Path(f"bench/results/calibrate_{Path(args.backbone).name}/prior_cache")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/cl.py
    from core.engine.backbone import load_backbone
    from core.engine.config import PRESETS
    from core.engine.dc_calibration import calibration_path, write_calibration
    from core.engine.errors import EngineError

    wall = time.perf_counter()
    try:
        preset = args.preset or default_preset(args.backbone)
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        if args.tasks < 2:
            raise ValueError("--tasks must be at least 2 (the DC set holds an earlier concept)")
        config = PRESETS[preset].with_(seed=args.seed, dc_reduction=args.reduction)
        if args.steps is not None:
            config = config.with_(train_steps=args.steps)
        concepts = select_concepts(args)
        if len(concepts) < args.tasks:
            raise ValueError(f"{args.tasks} tasks asked but only {len(concepts)} concepts")
        backbone = load_backbone(args.backbone, device=args.device)
    except (EngineError, ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    state = learn_sequence(
        backbone=backbone,
        concepts=concepts[: args.tasks],
        method="lora_sequential",
        config=config,
        prior_cache_dir=prior_cache_dir(args),
    )
    print(f"learned {', '.join(state.tokens)} ({time.perf_counter() - wall:.0f}s)", file=sys.stderr)
    probed = concepts[args.tasks - 1]
    errors = teacher_errors(
        backbone=backbone,
        state=state,
        images=list(probed.images),
        trials=args.trials,
        reduction=args.reduction,
        seed=args.seed,
    )
    try:
        record = calibration_record(
            errors, target=args.target, student_target=args.student_target or args.target
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    record.update(
        {
            "command": "mnemo bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
            "backbone": backbone.name,
            "weights": backbone.base_digest,
            "preset": preset,
            "dc_reduction": args.reduction,
            "concepts": [c.name for c in concepts[: args.tasks]],
            "train_steps": config.train_steps,
            "trials": args.trials,
            "seed": args.seed,
            "wall_seconds": round(time.perf_counter() - wall, 1),
        }
    )
    out = write_calibration(record, path=Path(args.out) if args.out else calibration_path(preset))
    print(
        f"{preset}: teacher τ = {record['teacher_tau']:.4g} (top-1 {record['teacher_top1']:.3f}), "
        f"student τ = {record['dc_tau']:.4g}; top-1 at τ = 1: {record['top1_at_paper_tau']['1.0']:.3f}, "
        f"at τ = 0.05: {record['top1_at_paper_tau']['0.05']:.3f}; written to {out}"
    )
    return 0
