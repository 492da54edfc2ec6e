"""The diffusers (PEFT) LoRA format that ``pipe.load_lora_weights`` loads.

Keys are ``unet.<module path>.lora_A.weight`` (A, [r, in]) and ``unet.<module path>.lora_B.weight``
(B, [out, r]); with no alphas diffusers sets lora_alpha = r, so its update is (α / r) B A = B A,
which is what ``core.export.merge`` writes. The file name is diffusers' default, so
``pipe.load_lora_weights(folder)`` finds it without ``weight_name``.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.export import safetensors_io
from core.export.merge import LoraModule
from core.export.safetensors_io import Tensor

FILE_NAME = "pytorch_lora_weights.safetensors"
PREFIX = "unet."


def diffusers_key(module: str, kind: str) -> str:
    """``down_blocks.0…attn2.to_k`` + ``lora_A`` -> ``unet.down_blocks.0…attn2.to_k.lora_A.weight``."""
    return f"{PREFIX}{module}.{kind}.weight"


def diffusers_tensors(modules: Mapping[str, LoraModule]) -> dict[str, Tensor]:
    tensors = {}
    for module, lora in modules.items():
        tensors[diffusers_key(module, "lora_A")] = lora.down
        tensors[diffusers_key(module, "lora_B")] = lora.up
    return tensors


def diffusers_file(modules: Mapping[str, LoraModule]) -> bytes:
    return safetensors_io.write(diffusers_tensors(modules), metadata={"format": "pt"})
