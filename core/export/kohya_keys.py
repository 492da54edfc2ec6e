"""The kohya (sd-scripts) LoRA format that ComfyUI and AUTOMATIC1111 load.

Keys are ``lora_unet_<module path with "_" for ".">.lora_down.weight`` (A, [r, in]),
``….lora_up.weight`` (B, [out, r]) and ``….alpha`` (a scalar); those tools compute
ΔW = (alpha / r) · up @ down, so alpha = r gives ΔW = B A, the update ``core.export.merge`` writes.
sd-scripts names SD 1.x/2.x UNet modules by their diffusers paths, as here.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.export import safetensors_io
from core.export.merge import LoraModule
from core.export.safetensors_io import Tensor
from core.export.tensors import scalar

FILE_NAME = "mnemo_lora.safetensors"
PREFIX = "lora_unet_"


def kohya_name(module: str) -> str:
    """``down_blocks.0.attentions.0…attn2.to_k`` -> ``lora_unet_down_blocks_0_attentions_0…attn2_to_k``."""
    return PREFIX + module.replace(".", "_")


def kohya_tensors(modules: Mapping[str, LoraModule]) -> dict[str, Tensor]:
    tensors = {}
    for module, lora in modules.items():
        name = kohya_name(module)
        tensors[f"{name}.lora_down.weight"] = lora.down
        tensors[f"{name}.lora_up.weight"] = lora.up
        tensors[f"{name}.alpha"] = scalar(float(lora.rank))
    return tensors


def kohya_file(modules: Mapping[str, LoraModule], *, base_model: str) -> bytes:
    metadata = {"ss_network_module": "networks.lora", "mnemo_backbone": base_model, "format": "pt"}
    return safetensors_io.write(kohya_tensors(modules), metadata=metadata)
