"""``mnemo toy train | check | samples``: build, verify and try the embedded toy backbone.

Heavy imports (torch, diffusers) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("toy", help="train or check the embedded toy backbone")
    toy = parser.add_subparsers(dest="toy_command", required=True)

    train = toy.add_parser(
        "train", help="train the toy backbone (VAE, then UNet + text encoder) from scratch"
    )
    train.add_argument(
        "--minutes", type=float, default=60.0, help="wall-clock budget of the backbone (VAE + UNet)"
    )
    train.add_argument("--seed", type=int, default=0, help="seed of every random draw (data, init, noise)")
    train.add_argument("--out", type=Path, default=None, help="output folder (default: the shipped weights/)")
    train.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is steadiest on a busy machine)"
    )
    train.add_argument("--vae-steps", type=int, default=None, help="VAE steps (stage 1; default 1500)")
    train.add_argument("--unet-steps", type=int, default=None, help="UNet steps (stage 2; default 6000)")
    train.add_argument("--pool-size", type=int, default=None, help="training images encoded to latents")
    train.add_argument(
        "--what",
        choices=("all", "backbone", "classifier"),
        default="all",
        help="which networks to train (all: the backbone, then the judge classifier, ~8 min more)",
    )
    train.add_argument("--classifier-steps", type=int, default=2500, help="judge classifier steps")
    train.add_argument(
        "--resume", type=Path, default=None, help="continue stage 2 (UNet + text encoder) of a trained folder"
    )
    train.add_argument("--reinit-text", action="store_true", help="with --resume: a fresh text encoder")
    train.add_argument(
        "--vae-from", type=Path, default=None, help="reuse the VAE of a trained folder (stage 2 from scratch)"
    )
    train.add_argument("--unet-lr", type=float, default=None)
    train.add_argument("--min-snr-gamma", type=float, default=None, help="0: off (the default)")
    train.add_argument("--prediction-type", choices=("v_prediction", "epsilon"), default=None)
    train.add_argument("--device", default="cpu", help="torch device of stage 2 (cpu, cuda)")
    train.add_argument(
        "--unet-heads",
        type=_int_list,
        default=(),
        help="attention heads per UNet level, e.g. 2,4,8 (default: the architecture's 8 everywhere)",
    )
    train.add_argument(
        "--unet-channels",
        type=_int_list,
        default=(),
        help="UNet block channels per level, e.g. 64,128,128 (default: the architecture's)",
    )
    train.add_argument("--unet-batch", type=int, default=None, help="UNet training batch size")
    for flag, text in (
        ("--posterior-means", "train the UNet on the VAE's posterior means instead of samples"),
        ("--text-time-embedding", "also add a pooled caption embedding to the UNet's time embedding"),
        ("--scale-shift", "FiLM scale and shift in the UNet's ResNets"),
        ("--zero-terminal-snr", "rescale the noise schedule so that x_1000 is pure noise (trailing steps)"),
    ):  # on/off switches; None (neither given) leaves the config's default
        train.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
    train.add_argument(
        "--colour-only-weight",
        type=float,
        default=None,
        help="weight of the colour-only caption 'a photo of a red shape' (default 2.5; others 9.5)",
    )
    train.add_argument("--unet-layers", type=int, default=None, help="UNet layers per block")
    train.add_argument(
        "--snapshot-steps",
        type=_int_list,
        default=(),
        help="comma-separated UNet steps at which to also save the EMA weights into OUT/step_N",
    )
    train.set_defaults(handler=_train)

    check = toy.add_parser("check", help="colour/shape accuracy on held-out prompts, seconds per image")
    check.add_argument("--steps", type=int, default=25)
    check.add_argument("--guidance-scale", type=float, default=7.5)
    check.add_argument("--quick", action="store_true", help="4 held-out combos x 2 images")
    check.add_argument("--per-combo", type=int, default=None, help="images per colour x shape combination")
    check.add_argument("--seed", type=int, default=0, help="seed of the prompts' noise")
    check.add_argument("--grid", type=Path, default=Path("toy_check.png"), help="sample grid PNG to write")
    check.add_argument("--threads", type=int, default=None)
    check.add_argument("--json", action="store_true", help="print the figures as JSON")
    check.add_argument(
        "--caption-losses",
        action="store_true",
        help="also the UNet's loss with right / wrong / empty captions per timestep band",
    )
    check.add_argument("--backbone", default="toy", help="toy or a folder written by mnemo toy train")
    check.set_defaults(handler=_check)

    samples = toy.add_parser(
        "samples",
        help="write a bundled sample concept's images as PNG files (something to upload)",
    )
    samples.add_argument("name", help="a bundled concept, e.g. smiley")
    samples.add_argument("--out", type=Path, default=Path("."), help="folder for NAME-1.png ... NAME-6.png")
    samples.set_defaults(handler=_samples)


def _samples(args: argparse.Namespace) -> int:
    from core.engine.toy.concepts import get_concept

    try:
        concept = get_concept(args.name)
    except KeyError as error:
        print(f"mnemo toy samples: error: {error.args[0]}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(concept.images, start=1):
        path = args.out / f"{concept.name}-{index}.png"
        image.save(path)
        print(path)
    return 0


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected integers like 4000,8000, got {text!r}") from error


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from core.engine.toy import CLASSIFIER_PATH, WEIGHTS_DIR

    out = args.out or WEIGHTS_DIR
    report: dict = {}
    if args.what in ("all", "backbone"):
        from core.engine.toy.train import TrainConfig, train

        config = TrainConfig(seed=args.seed, minutes=args.minutes, threads=args.threads, device=args.device)
        overrides = {
            "vae_steps": args.vae_steps,
            "unet_steps": args.unet_steps,
            "pool_size": args.pool_size,
            "unet_lr": args.unet_lr,
            "unet_batch": args.unet_batch,
            "posterior_means": args.posterior_means,
            "colour_only_weight": args.colour_only_weight,
            "min_snr_gamma": args.min_snr_gamma,
            "snapshot_steps": args.snapshot_steps or None,
        }
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        architecture_overrides = {
            "prediction_type": args.prediction_type,
            "unet_head_dim": args.unet_heads or None,
            "unet_channels": args.unet_channels or None,
            "unet_layers_per_block": args.unet_layers,
            "unet_text_time_embedding": args.text_time_embedding,
            "unet_time_scale_shift": args.scale_shift,
            "zero_terminal_snr": args.zero_terminal_snr,
        }
        try:
            architecture = replace(
                config.architecture, **{k: v for k, v in architecture_overrides.items() if v is not None}
            )
        except ValueError as error:
            print(f"mnemo toy train: error: {error}", file=sys.stderr)
            return 2
        config = replace(config, architecture=architecture)
        report["backbone"] = train(
            config=config, out=out, resume=args.resume, reinit_text=args.reinit_text, vae_from=args.vae_from
        )
    if args.what in ("all", "classifier"):
        import torch

        from core.engine.toy.classifier import train_classifier

        torch.set_num_threads(args.threads)
        target = out / "classifier" / CLASSIFIER_PATH.name if args.out else CLASSIFIER_PATH
        report["classifier"] = train_classifier(seed=args.seed, steps=args.classifier_steps, out=target)
    print(json.dumps(report, indent=2))
    return 0


def _check(args: argparse.Namespace) -> int:
    import torch

    from core.engine.backbone import load_backbone
    from core.engine.toy.caption_probe import caption_losses
    from core.engine.toy.check import run_check

    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone)
    summary = run_check(
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        quick=args.quick,
        per_combo=args.per_combo,
        grid_path=args.grid,
        seed=args.seed,
        backbone=backbone,
    )
    if args.caption_losses:
        summary["caption_losses"] = caption_losses(backbone=backbone, seed=args.seed)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name in ("held_out", "seen"):
            if name in summary:
                part = summary[name]
                print(
                    f"{name:9s} colour {part['colour_accuracy']:.1%}  shape {part['shape_accuracy']:.1%}  "
                    f"({part['images']} images)"
                )
        if "objects" in summary:
            part = summary["objects"]
            print(
                f"objects   pattern {part['pattern_accuracy']:.1%}  colours {part['colours_accuracy']:.1%}  "
                f"shape {part['shape_accuracy']:.1%}  recognised {part['recognition']:.1%}  "
                f"({part['images']} images)"
            )
        print(f"seconds per 64x64 image at {args.steps} steps: {summary['seconds_per_image']:.3f}")
        ceiling = summary["vae_ceiling"]
        print(f"judge on VAE reconstructions: colour {ceiling['colour']:.1%}  shape {ceiling['shape']:.1%}")
        print(f"grid: {summary.get('grid')}")
        for band, losses in summary.get("caption_losses", {}).items():
            print(f"loss at t in {band}: " + "  ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    sys.stdout.flush()
    return 0
