"""``mnemo bench speed``: cost of each phase per iteration, measured side by side in one run.

Reports seconds per iteration of training, of the EWC-DC Fisher phase and of DSC,
the ratios EWC-DC/train and DSC/train at k = 2, 3, 5, 7, and the iteration time at
task 2, 10 and 50 for ``ewc_dc``, ``dsc_ewc_dc`` and ``c_lora`` (whose cost grows with
the number of past LoRAs). A whole task of ``ewc_dc`` grows until the DC set reaches k
concepts (task k − 1); after that its cost is flat. Every phase runs with batch 1 and no
gradient accumulation, so an "iteration" is one optimiser step on one image (+ one prior image when training)
— the paper's setting (App. H). Earlier tasks are synthetic (random adapters, tokens
and Fisher): the cost of an iteration does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import time

from core import progress

DEFAULT_KS = (2, 3, 5, 7)
DEFAULT_TASKS = (2, 10, 50)
GROWTH_METHODS = ("ewc_dc", "dsc_ewc_dc", "c_lora")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="toy", help="toy, tiny or a local SD folder")
    parser.add_argument("--preset", default="toy", help="engine preset (paper, toy, tiny)")
    parser.add_argument("--steps", type=int, default=12, help="iterations timed per phase")
    parser.add_argument("--ks", type=int, nargs="+", default=list(DEFAULT_KS))
    parser.add_argument("--tasks", type=int, nargs="+", default=list(DEFAULT_TASKS))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; medians are reported")
    parser.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    import torch

    from core.engine.backbone import load_backbone
    from core.engine.config import PRESETS

    torch.manual_seed(0)
    started = time.perf_counter()
    backbone = load_backbone(args.backbone, device=args.device)
    config = PRESETS[args.preset].with_(
        batch_size=1, grad_accum=1, train_steps=args.steps, consolidation_fraction=1.0, checkpoint_every=10**9
    )
    _task_seconds(backbone, config, method="dsc_ewc_dc", previous=1)  # warm-up (caches, allocator)

    cases = [("k", k, "dsc_ewc_dc", max(k - 1, 1)) for k in args.ks]
    cases += [("task", n, method, n - 1) for method in GROWTH_METHODS for n in args.tasks]
    samples: dict[tuple, list[dict[str, float]]] = {case: [] for case in cases}
    bar = progress.bar(total=args.rounds * len(cases), desc="speed: tasks", every=20.0)
    for _ in range(args.rounds):  # interleaved, so that load drifts hit every case alike
        for case in cases:
            kind, value, method, previous = case
            case_config = config.with_(dc_k=value) if kind == "k" else config
            samples[case].append(_task_seconds(backbone, case_config, method=method, previous=previous))
            bar.update(1)
    bar.close()
    median = {case: _median(rows) for case, rows in samples.items()}

    by_k = {}
    for k in args.ks:
        per_it = median[("k", k, "dsc_ewc_dc", max(k - 1, 1))]
        by_k[k] = {
            **per_it,
            "ewc_dc_over_train": per_it["fisher"] / per_it["train"],
            "dsc_over_train": per_it["dsc"] / per_it["train"],
        }
    by_task = {}
    for method in GROWTH_METHODS:
        times = {n: median[("task", n, method, n - 1)] for n in args.tasks}
        first, last = times[args.tasks[0]], times[args.tasks[-1]]
        by_task[method] = {
            "seconds_per_iteration": {n: t["task"] for n, t in times.items()},
            "phases": times,
            "last_over_first": last["task"] / first["task"],
            "train_last_over_first": last["train"] / first["train"],
        }
        if len(args.tasks) > 2:  # from the task where the DC set first reaches k
            second = times[args.tasks[1]]
            by_task[method]["last_over_second"] = last["task"] / second["task"]
    summary = {
        "backbone": backbone.name,
        "device": str(backbone.device),
        "torch_threads": torch.get_num_threads(),
        "iterations_per_phase": args.steps,
        "rounds": args.rounds,
        "dc_reduction": config.dc_reduction,
        "by_k": by_k,
        "by_task": by_task,
        "paper_a6000": {"ewc_dc_over_train": 6.6, "dsc_over_train": 7.1, "c_lora_task50_over_task6": 4.75},
        "targets": {"ewc_dc_over_train": 2.5, "dsc_over_train": 3.5, "ours_task50_over_task2": 1.1},
        "wall_seconds": time.perf_counter() - started,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_table(summary)
    return 0


def _task_seconds(backbone, config, *, method: str, previous: int) -> dict[str, float]:
    """Seconds per iteration of each phase of one task on top of ``previous`` synthetic tasks."""
    from bench.synthetic import concept_images, synthetic_history
    from core.engine.task import run_task

    state = synthetic_history(backbone, config=config, method=method, n_tasks=previous)
    result = run_task(
        backbone=backbone,
        state=state,
        concept="timed",
        class_word=None,
        images=concept_images(seed=previous),
        method=method,
        config=config,
    )
    per_it = {phase: result.seconds[phase] / len(result.losses[phase]) for phase in result.losses}
    phases = [p for p in ("train", "dsc", "fisher") if p in result.losses]
    per_it["task"] = sum(result.seconds[p] for p in phases) / len(result.losses["train"])
    return per_it


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    import statistics

    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def _print_table(summary: dict) -> None:
    print(
        f"backbone {summary['backbone']} on {summary['device']}, {summary['iterations_per_phase']} it/phase"
    )
    header = ("k", "train s/it", "EWC-DC s/it", "DSC s/it", "EWC-DC/train", "DSC/train")
    print(" ".join(f"{h:>12}" for h in header))
    for k, row in summary["by_k"].items():
        cells = (row["train"], row["fisher"], row["dsc"], row["ewc_dc_over_train"], row["dsc_over_train"])
        print(f"{k:>12} " + " ".join(f"{c:>12.4f}" for c in cells))
    for method, row in summary["by_task"].items():
        cells = "  ".join(f"task {n}: {s:.4f}" for n, s in row["seconds_per_iteration"].items())
        ratio, train_ratio = row["last_over_first"], row["train_last_over_first"]
        print(f"{method:>12}  whole-task seconds per training iteration: {cells}  (last/first {ratio:.2f},")
        print(f"{'':>12}  training iteration alone last/first {train_ratio:.2f})")
