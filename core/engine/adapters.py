"""Adapters on the UNet's cross-attention K/V: peft LoRA / VeRA slots and a full K/V delta.

The backbone's UNet is shared by every user a worker serves, so adapter weights are
never left in it between calls: each phase loads the tensors it needs into named
*slots* (peft adapter names) and reads them back out as plain state dicts.

Tensor keys are ``<module path>.<kind>`` (kind: ``lora_A``, ``lora_B``,
``vera_lambda_b``, ``vera_lambda_d``, ``delta``), independent of the slot name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from peft import LoraConfig, VeraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.tuners.vera import VeraModel
from torch import nn

from core.engine.config import EngineConfig
from core.engine.precision import keep_fp32

KV_TARGETS = r".*attn2\.(to_k|to_v)"
AdapterState = dict[str, torch.Tensor]


def kv_modules(unet: nn.Module) -> dict[str, nn.Linear]:
    """The cross-attention key/value projections ``attn2.to_k`` / ``attn2.to_v`` (base layers)."""
    found = {}
    for name, module in unet.named_modules():
        if name.endswith(("attn2.to_k", "attn2.to_v")):
            found[name] = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
    return found


def _peft_config(config: EngineConfig) -> LoraConfig | VeraConfig:
    if config.adapter_type == "vera":
        return VeraConfig(r=config.vera_rank, target_modules=KV_TARGETS, projection_prng_key=0)
    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_rank,
        init_lora_weights="gaussian",
        target_modules=KV_TARGETS,
    )


def ensure_slot(unet: nn.Module, slot: str, *, config: EngineConfig) -> None:
    """Inject adapter ``slot`` (LoRA or VeRA per ``config``) unless the UNet has it already.

    Its tensors are fp32 whatever the base's dtype (docs/gpu.md: master weights in fp32).
    """
    if slot in _slots(unet):
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if config.adapter_type == "vera":
            _inject_vera(unet, slot, config=config)
        else:
            inject_adapter_in_model(_peft_config(config), unet, adapter_name=slot)
    for name, param in unet.named_parameters():
        if f".{slot}." in name or name.endswith(f".{slot}"):
            keep_fp32([param])
            param.requires_grad_(False)


def _inject_vera(unet: nn.Module, slot: str, *, config: EngineConfig) -> None:
    """VeRA's projections are shared state of a peft tuner: keep one tuner per UNet."""
    tuner = unet.__dict__.get("_mnemo_vera_tuner")
    if tuner is None:  # kept out of the module tree: the tuner wraps the UNet itself
        unet.__dict__["_mnemo_vera_tuner"] = VeraModel(unet, _peft_config(config), slot)
        return
    tuner.peft_config[slot] = _peft_config(config)
    tuner.inject_adapter(tuner.model, slot)


def _slots(unet: nn.Module) -> set[str]:
    names: set[str] = set()
    for module in unet.modules():
        if isinstance(module, BaseTunerLayer):
            names.update(getattr(module, "lora_A", {}).keys())
            names.update(getattr(module, "vera_lambda_b", {}).keys())
    return names


def slot_parameters(unet: nn.Module, slot: str) -> dict[str, nn.Parameter]:
    """The trainable tensors of ``slot``, keyed ``<module path>.<kind>``."""
    params = {}
    for name, param in unet.named_parameters():
        parts = name.split(".")
        if slot in parts:
            i = parts.index(slot)
            params[".".join(parts[:i])] = param
    return params


def read_slot(unet: nn.Module, slot: str) -> AdapterState:
    return {key: p.detach().clone() for key, p in slot_parameters(unet, slot).items()}


def write_slot(unet: nn.Module, slot: str, state: Mapping[str, torch.Tensor]) -> None:
    params = slot_parameters(unet, slot)
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state))[:3], sorted(set(state) - set(params))[:3]
        raise ValueError(f"adapter tensors do not match slot {slot!r}: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for key, param in params.items():
            param.copy_(state[key])


def fresh_state(unet: nn.Module, *, config: EngineConfig, seed: int) -> AdapterState:
    """A new adapter as peft initialises it (LoRA: A ~ N(0, 1/r), B = 0), from ``seed``."""
    ensure_slot(unet, "fresh", config=config)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, param in slot_parameters(unet, "fresh").items():
        if key.endswith("lora_A"):
            state[key] = torch.randn(param.shape, generator=generator) / config.lora_rank
        elif key.endswith("lora_B") or key.endswith("vera_lambda_b"):
            state[key] = torch.zeros_like(param)
        else:  # vera_lambda_d keeps peft's constant initial value
            state[key] = param.detach().clone()
    return {k: v.to(next(unet.parameters()).device) for k, v in state.items()}


def activate(unet: nn.Module, slots: Sequence[str], weights: Sequence[float] | None = None) -> None:
    """Make exactly ``slots`` active (summed, each scaled by its weight); none -> base model."""
    weights = list(weights) if weights is not None else [1.0] * len(slots)
    for module in unet.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        if not slots:
            module.enable_adapters(False)
            continue
        module.enable_adapters(True)
        module.set_adapter(list(slots))
        if hasattr(module, "set_scale"):
            for slot, weight in zip(slots, weights, strict=True):
                module.set_scale(slot, weight)
    for param in unet.parameters():
        param.requires_grad_(False)


def lora_delta(state: Mapping[str, torch.Tensor], module: str, *, scale: float = 1.0) -> torch.Tensor:
    """ΔW = scale · B A of one target module of a LoRA state (peft: lora_alpha / r = 1 here)."""
    return scale * state[f"{module}.lora_B"] @ state[f"{module}.lora_A"]


def lora_modules(state: Mapping[str, torch.Tensor]) -> list[str]:
    return sorted({key.rsplit(".", 1)[0] for key in state if key.endswith("lora_A")})


# --- Custom Diffusion: full-rank K/V deltas (W = W0 + Δ) --------------------------------------


def zero_kv_delta(unet: nn.Module) -> AdapterState:
    return {f"{name}.delta": torch.zeros_like(layer.weight) for name, layer in kv_modules(unet).items()}


@contextmanager
def kv_delta_applied(unet: nn.Module, deltas: Sequence[Mapping[str, torch.Tensor]]) -> Iterator[None]:
    """Add Σ Δ·x to every ``attn2.to_k/to_v`` output while inside (gradients flow into Δ)."""
    handles = []
    for name, layer in kv_modules(unet).items():
        parts = [d[f"{name}.delta"] for d in deltas if f"{name}.delta" in d]
        if not parts:
            continue

        def hook(_module, inputs, output, parts=parts):
            return output + sum(torch.nn.functional.linear(inputs[0], delta) for delta in parts)

        handles.append(layer.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
