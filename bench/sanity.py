"""``mnemo bench sanity``: the paper's two sanity checks of DC scores (§4.3).

I. Fig. 6 / Fig. 18 — "DC scores reduce the uncertainty in FIM estimation": after learning
   ``--tasks`` concepts (method ``--method``, default ``ewc_dc``), per-sample gradients of
   (a) L_denoise (plain EWC) and (b) L_ewc of Eq. 5 (with DC scores over {c0, c_n, k−2
   previous concepts}) are taken w.r.t. the newest LoRA on the SAME (x, t, ε) draws, against
   the UNet's regression target (ε, or v on a v-prediction model such as the toy). The empirical
   Fisher F = 1/S Σ g gᵀ has the same non-zero eigenvalues as the S×S Gram matrix 1/S [g_s · g_r],
   so its top eigenvalues come from ``eigvalsh`` of that Gram matrix, per
   LoRA factor (A, B) of a down-, mid- and up-block layer, and for all LoRA tensors together;
   the diagonal-Fisher magnitude (mean of diag F) is reported too.
II. Fig. 7 — training-set DC accuracy per method after the last task: read from the runs of
   ``mnemo bench cl`` (``--cl-results``), which computes it for every (method, seed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TOP_K = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="toy", help="toy | tiny | a local diffusers SD folder")
    parser.add_argument("--preset", default=None, help="engine preset (default: per backbone)")
    parser.add_argument("--concepts", default=None, help="folder of concept sub-folders (default: bundled)")
    parser.add_argument("--tasks", type=int, default=3, help="concepts learned before the Fisher probe")
    parser.add_argument("--method", default="ewc_dc", help="method that trains the probed LoRA")
    parser.add_argument("--steps", type=int, default=None, help="training steps per task (preset default)")
    parser.add_argument("--samples", type=int, default=None, help="gradient samples (default 0.2 x steps)")
    parser.add_argument("--dc-reduction", choices=("sum", "mean"), default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cl-results", default=None, help="a `mnemo bench cl` output folder (Fig. 7)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="output folder (default bench/results/sanity_<backbone>)")


# --- Sanity check I: Fisher spectra with / without DC ------------------------------------------


def top_eigenvalues(grads: Any, *, k: int = TOP_K) -> list[float]:
    """Top-k eigenvalues of the empirical Fisher 1/S Σ g gᵀ from the S×S Gram matrix (g: [S, P])."""
    import torch

    g = grads.double()
    gram = g @ g.T / g.shape[0]
    values = torch.linalg.eigvalsh(gram).flip(0)
    return [float(v) for v in values[:k].clamp_min(0.0)]


def noisy_sample(scheduler: Any, x0: Any, *, generator: Any, n_steps: int) -> tuple[Any, Any, Any]:
    """(x_t, regression target, t) for one draw of (t, ε): the target is what the UNet was trained
    to predict (ε, or v for a v-prediction scheduler such as the shipped toy's), as in training."""
    import torch

    from core.engine.losses import regression_target

    t = torch.randint(0, n_steps, (x0.shape[0],), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    return scheduler.add_noise(x0, eps, t), regression_target(scheduler, x0, eps, t), t


def per_sample_gradients(
    *,
    backbone: Any,
    state: Any,
    config: Any,
    images: list[Any],
    samples: int,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """{"w/o DC": {tensor: [S, P]}, "w/ DC": {...}} for the newest LoRA, on shared draws."""
    import torch

    from core.engine.adapters import activate, ensure_slot, slot_parameters, write_slot
    from core.engine.data import encode_latents, to_pixels
    from core.engine.losses import batched_eps, dc_errors, dc_log_probs, denoise_loss, ewc_dc_objective
    from core.engine.metrics.dc_accuracy import DC_PROMPT
    from core.engine.tokens import encode_prompts

    generator = torch.Generator().manual_seed(seed)
    adapter = state.task_adapters[-1]
    rank = next(v.shape[0] for k, v in adapter.items() if k.endswith("lora_A"))
    unet = backbone.unet
    ensure_slot(unet, "sanity", config=config.with_(lora_rank=rank))
    write_slot(unet, "sanity", adapter)
    activate(unet, ["sanity"])
    params = slot_parameters(unet, "sanity")
    for p in params.values():
        p.requires_grad_(True)
    names = [c.token for c in state.concepts]
    latents = encode_latents(backbone, to_pixels(images, resolution=backbone.resolution, hflip=False))
    n_steps = int(backbone.scheduler.config.num_train_timesteps)
    out: dict[str, dict[str, list[Any]]] = {label: {k: [] for k in params} for label in ("w/o DC", "w/ DC")}
    try:
        with torch.no_grad():
            table = {k: v.to(backbone.device) for k, v in state.token_embeddings.items()}
        for _ in range(samples):
            previous = names[:-1]
            pick = torch.randperm(len(previous), generator=generator)[: max(0, config.dc_k - 2)].tolist()
            prompts = [backbone.prior_prompt, DC_PROMPT.format(token=names[-1])]
            prompts += [DC_PROMPT.format(token=previous[i]) for i in pick]
            with torch.no_grad():
                cond = encode_prompts(backbone, prompts, table)
            x0 = latents[torch.randint(0, latents.shape[0], (1,), generator=generator)]
            x_t, target, t = noisy_sample(backbone.scheduler, x0, generator=generator, n_steps=n_steps)
            eps_pred = batched_eps(unet, x_t, t, cond)  # [1, k, C, H, W]
            denoise = denoise_loss(eps_pred[:, 1], target)
            errors = dc_errors(eps_pred, target, reduction=config.dc_reduction)
            log_probs = dc_log_probs(errors, tau=config.dc_tau)
            with_dc = ewc_dc_objective(denoise, log_probs, target=1, delta=config.ewc_delta)
            for label, loss in (("w/o DC", denoise), ("w/ DC", with_dc)):
                grads = torch.autograd.grad(loss, list(params.values()), retain_graph=label == "w/o DC")
                for key, grad in zip(params, grads, strict=True):
                    out[label][key].append(grad.detach().flatten().double().cpu())
    finally:
        activate(unet, [])
    return {label: {k: torch.stack(v) for k, v in by_key.items()} for label, by_key in out.items()}


def fisher_report(grads: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Top-5 eigenvalues and diag-Fisher magnitude per probed layer/factor and overall."""
    import torch

    keys = sorted(next(iter(grads.values())))
    layers = sorted({k.rsplit(".", 1)[0] for k in keys})
    picks = {}
    for block in ("down_blocks", "mid_block", "up_blocks"):
        found = [layer for layer in layers if layer.startswith(block)]
        if found:
            picks[block] = found[0]
    result: dict[str, Any] = {"layers": picks, "with_vs_without": {}}
    for label, by_key in grads.items():
        entry: dict[str, Any] = {}
        everything = torch.cat([by_key[k] for k in keys], dim=1)
        entry["all_lora"] = {
            "top_eigenvalues": top_eigenvalues(everything),
            "diag_fisher_mean": float((everything**2).mean()),
        }
        for block, layer in picks.items():
            for factor in ("lora_A", "lora_B"):
                g = by_key[f"{layer}.{factor}"]
                entry[f"{block}:{factor}"] = {
                    "top_eigenvalues": top_eigenvalues(g),
                    "diag_fisher_mean": float((g**2).mean()),
                }
        result[label] = entry
    for name in result["w/ DC"]:
        with_dc, without = result["w/ DC"][name], result["w/o DC"][name]
        result["with_vs_without"][name] = {
            "top1_ratio": with_dc["top_eigenvalues"][0] / max(without["top_eigenvalues"][0], 1e-300),
            "diag_ratio": with_dc["diag_fisher_mean"] / max(without["diag_fisher_mean"], 1e-300),
        }
    return result


# --- Sanity check II: DC accuracy per method (from bench cl runs) ------------------------------


def dc_accuracy_from_cl(folder: Path) -> dict[str, Any]:
    runs = sorted((folder / "runs").glob("*__seed*.json"))
    by_method: dict[str, list[float]] = {}
    chance = None
    for path in runs:
        record = json.loads(path.read_text())
        if record.get("dc_accuracy"):
            by_method.setdefault(record["method"], []).append(record["dc_accuracy"]["overall"])
            chance = record["dc_accuracy"].get("chance", chance)
    return {"per_method": by_method, "chance": chance, "source": str(folder)}


def _plot(fisher: dict[str, Any], accuracy: dict[str, Any] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in fisher["w/ DC"] if n != "all_lora"] + ["all_lora"]
    cols = len(names) + (1 if accuracy and accuracy["per_method"] else 0)
    fig, axes = plt.subplots(1, cols, figsize=(3.0 * cols, 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        for label, style in (("w/o DC", "o--"), ("w/ DC", "s-")):
            values = fisher[label][name]["top_eigenvalues"]
            ax.semilogy(range(1, len(values) + 1), [max(v, 1e-30) for v in values], style, label=label)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("eigenvalue index")
    axes[0][0].legend(fontsize=7)
    if accuracy and accuracy["per_method"]:
        ax = axes[0][-1]
        methods = list(accuracy["per_method"])
        means = [100 * sum(v) / len(v) for v in accuracy["per_method"].values()]
        ax.barh(methods, means)
        if accuracy.get("chance"):
            ax.axvline(100 * accuracy["chance"], color="k", ls=":", label="chance")
        ax.set_xlabel("train-set DC accuracy (%)")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/cl.py
    from bench.cl import bundled_concepts, default_preset, learn_sequence, load_concept_folder
    from core.engine.backbone import load_backbone
    from core.engine.config import PRESETS
    from core.engine.errors import EngineError
    from core.engine.methods import get_method

    wall_start = time.perf_counter()
    try:
        method = get_method(args.method)
        if method.adapter != "lora" or method.per_task_adapters:
            raise ValueError("the Fisher probe needs a continually trained LoRA method (e.g. ewc_dc, ewc)")
        if args.tasks < 2:
            raise ValueError("--tasks must be at least 2 (the DC set needs a previous concept)")
        config = PRESETS[args.preset or default_preset(args.backbone)].with_(seed=args.seed)
        if args.steps is not None:
            config = config.with_(train_steps=args.steps)
        if args.dc_reduction is not None:
            config = config.with_(dc_reduction=args.dc_reduction)
        concepts = load_concept_folder(Path(args.concepts)) if args.concepts else bundled_concepts()
        if len(concepts) < args.tasks:
            raise ValueError(f"{args.tasks} tasks asked but only {len(concepts)} concepts")
        backbone = load_backbone(args.backbone, device=args.device)
    except (EngineError, ValueError, KeyError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or f"bench/results/sanity_{Path(args.backbone).name}")
    out.mkdir(parents=True, exist_ok=True)
    state = learn_sequence(
        backbone=backbone,
        concepts=concepts[: args.tasks],
        method=args.method,
        config=config,
        prior_cache_dir=out / "prior_cache",
    )
    print(f"learned {', '.join(state.tokens)} ({time.perf_counter() - wall_start:.0f}s)", file=sys.stderr)
    samples = args.samples or config.consolidation_steps
    grads = per_sample_gradients(
        backbone=backbone,
        state=state,
        config=config,
        images=list(concepts[args.tasks - 1].images),
        samples=samples,
        seed=args.seed,
    )
    fisher = fisher_report(grads)
    accuracy = None
    if args.cl_results:
        accuracy = dc_accuracy_from_cl(Path(args.cl_results))
    result = {
        "backbone": backbone.name,
        "method": args.method,
        "tasks": args.tasks,
        "samples": samples,
        "config": config.to_dict(),
        "fisher": fisher,
        "dc_accuracy": accuracy,
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
    }
    (out / "sanity.json").write_text(json.dumps(result, indent=1))
    _plot(fisher, accuracy, out / "sanity.png")
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for name, ratio in fisher["with_vs_without"].items():
            top_with = fisher["w/ DC"][name]["top_eigenvalues"][0]
            top_without = fisher["w/o DC"][name]["top_eigenvalues"][0]
            print(
                f"{name:28s} top eigenvalue w/o DC {top_without:.3e}  w/ DC {top_with:.3e}  "
                f"ratio {ratio['top1_ratio']:.2f}  diag-F ratio {ratio['diag_ratio']:.2f}"
            )
        if accuracy:
            for m, values in accuracy["per_method"].items():
                mean = 100 * sum(values) / len(values)
                print(f"DC train accuracy {m:22s} {mean:5.1f}% over {len(values)} seeds")
        print(f"outputs in {out}/ (sanity.json, sanity.png)")
    print(f"total wall time: {result['wall_seconds']:.1f} s", file=sys.stderr)
    return 0
