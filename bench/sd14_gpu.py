"""The continual-learning benchmark on Stable Diffusion v1.4 (the paper's Custom Concept setup).

Runs ``mnemo bench cl`` with the PAPER preset (LoRA rank 16 on attn2 K/V, batch 1 × grad-accum
8, 1000 training + 200 DSC + 200 Fisher iterations per task, 200 prior images of
"a photo of a person", λ_ewc 1e6, k = 5) on a LOCAL SD v1.4 diffusers folder, with a CLIP image
encoder from a LOCAL folder as the feature extractor (the paper's metric space). Nothing is
downloaded: without local weights it stops with a clear message.

Sized for 10-minute GPU runs: ``--n-concepts`` and ``--steps`` cut the sequence (one concept at
the default ``--steps`` fits in one run on an H100); results are cached per (method, seed) in
``--out``, so runs with more concepts or seeds add to the same table. See bench/README.md.

    python -m bench.sd14_gpu --weights /models/stable-diffusion-v1-4 \\
        --clip /models/clip-vit-large-patch14 --concepts /data/custom-concept \\
        --n-concepts 1 --methods dsc_ewc_dc --seeds 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PAPER_STEPS = 1000
TEN_MINUTE_STEPS = 300
"""Training steps of one task that fit in a 10-minute H100 run with its DSC, Fisher and eval."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sd14_gpu", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", default=None, help="local SD v1.4 diffusers folder (model_index.json, unet/...)"
    )
    parser.add_argument("--clip", default=None, help="local CLIP folder (CLIPVisionModelWithProjection)")
    parser.add_argument(
        "--concepts", required=False, default=None, help="one sub-folder of images per concept"
    )
    parser.add_argument("--n-concepts", type=int, default=1, help="concepts of the sequence (paper: 6)")
    parser.add_argument(
        "--steps", type=int, default=TEN_MINUTE_STEPS, help=f"training steps per task (paper: {PAPER_STEPS})"
    )
    parser.add_argument("--methods", default="dsc_ewc_dc", help="comma-separated (paper: all)")
    parser.add_argument("--seeds", default="0", help="comma-separated (paper: 0,1,2)")
    parser.add_argument("--n-eval", type=int, default=16, help="images per concept and task (paper: 400)")
    parser.add_argument("--gen-steps", type=int, default=50, help="sampling steps (paper: 50)")
    parser.add_argument("--dc-trials", type=int, default=4)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="bench/results/cl_sd14")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


class SetupError(Exception):
    """A missing local input (weights, CLIP, concepts): reported with exit status 2."""


def check_weights(weights: str | None) -> Path:
    """The SD folder, or ``SetupError`` saying what is missing."""
    if not weights:
        raise SetupError(
            "no local SD v1.4 weights given. Pass --weights /path/to/stable-diffusion-v1-4 "
            "(a diffusers folder with model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/); "
            "this benchmark never downloads weights."
        )
    folder = Path(weights)
    missing = [p for p in ("unet", "vae", "text_encoder", "scheduler") if not (folder / p).is_dir()]
    if not folder.is_dir() or missing:
        raise SetupError(
            f"{folder} is not a local SD diffusers folder"
            + (f" (missing: {', '.join(missing)})" if folder.is_dir() else " (it does not exist)")
        )
    return folder


def to_cl_args(args: argparse.Namespace, weights: Path) -> argparse.Namespace:
    from bench import cl

    parser = argparse.ArgumentParser()
    cl.add_arguments(parser)
    parser.add_argument("--json", action="store_true")
    argv = [
        "--backbone", str(weights), "--preset", "paper", "--steps", str(args.steps),
        "--n-concepts", str(args.n_concepts), "--methods", args.methods, "--seeds", args.seeds,
        "--n-eval", str(args.n_eval), "--gen-steps", str(args.gen_steps), "--dc-trials", str(args.dc_trials),
        "--features", args.clip or "toy-classifier", "--device", args.device, "--out", args.out,
    ]  # fmt: skip
    if args.concepts:
        argv += ["--concepts", args.concepts]
    if args.json:
        argv.append("--json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        weights = check_weights(args.weights)
        if not args.concepts or not Path(args.concepts).is_dir():
            raise SetupError("--concepts must be a local folder with one sub-folder of images per concept")
        if not args.clip or not Path(args.clip).is_dir():
            raise SetupError(
                "--clip must be a local CLIP folder: the paper's metrics are in CLIP feature space"
            )
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from bench import cl

    return cl.run(to_cl_args(args, weights))


if __name__ == "__main__":
    sys.exit(main())
