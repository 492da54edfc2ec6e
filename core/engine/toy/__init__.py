"""The embedded toy backbone: a small text-to-image model with Stable Diffusion's classes.

It is trained by ``mnemo toy train`` on procedurally generated captioned 64x64 images
(:mod:`core.engine.toy.dataset`) and shipped in ``weights/`` as an ordinary diffusers
folder (``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``). Nothing here
imports torch at package import time.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"
CLASSIFIER_PATH = WEIGHTS_DIR / "classifier" / "classifier.safetensors"

__all__ = ["CLASSIFIER_PATH", "PACKAGE_DIR", "WEIGHTS_DIR"]
