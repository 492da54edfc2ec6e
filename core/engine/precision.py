"""Numerical precision and memory options of a loaded backbone (docs/gpu.md).

The frozen base (UNet, VAE, text encoder) is stored in the *compute* dtype (``fp32``, ``bf16`` or
``fp16``); everything that trains — LoRA/VeRA tensors, Custom Diffusion's K/V deltas, the new
token row — and the optimiser state stay fp32 ("master weights", Micikevicius et al. 2018). The
forward passes run under ``torch.autocast`` in the compute dtype; with ``fp16`` the losses are
scaled by a ``torch.amp.GradScaler`` so that small gradients do not underflow.

These are runtime options, not hyper-parameters: they live outside ``EngineConfig`` (whose
``to_dict`` fingerprints checkpoints and benchmark runs) and are read from the environment:

* ``MNEMO_PRECISION``: ``fp32`` | ``fp16`` | ``bf16`` | ``auto`` (default: bf16 on a CUDA device
  that supports it, else fp32; always fp32 on CPU);
* ``MNEMO_GRADIENT_CHECKPOINTING``: ``1`` recomputes UNet activations in the backward pass;
* ``MNEMO_DC_CHUNK``: most UNet rows (images × conditions) per forward of the DC phases; ``0``
  (default) puts all k conditions in one forward and halves only after a CUDA out-of-memory.

With the defaults on CPU every function here is a pass-through: fp32 weights, no autocast, a
disabled scaler, one forward per DC call — the same operations as before these options existed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Precision = Literal["fp32", "fp16", "bf16"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclass(frozen=True)
class RuntimeOptions:
    """How a backbone runs (not what it learns): precision, checkpointing, DC chunk size."""

    precision: Precision = "fp32"
    gradient_checkpointing: bool = False
    dc_chunk: int = 0
    """Most UNet rows per DC forward (0: all in one, halved after a CUDA out-of-memory)."""


def resolve_precision(requested: str, *, device: str | torch.device) -> Precision:
    """``auto`` -> bf16 on a CUDA device that supports it, else fp32; other names as given."""
    if requested not in (*DTYPES, "auto"):
        raise ValueError(f"precision must be one of fp32, fp16, bf16, auto; got {requested!r}")
    if requested != "auto":
        return requested  # type: ignore[return-value]
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def runtime_from_env(
    *, device: str | torch.device, environ: Mapping[str, str] | None = None
) -> RuntimeOptions:
    """``RuntimeOptions`` from ``MNEMO_PRECISION``, ``MNEMO_GRADIENT_CHECKPOINTING``, ``MNEMO_DC_CHUNK``."""
    env = os.environ if environ is None else environ
    chunk = int(env.get("MNEMO_DC_CHUNK", "0") or 0)
    if chunk < 0:
        raise ValueError(f"MNEMO_DC_CHUNK must be >= 0; got {chunk}")
    return RuntimeOptions(
        precision=resolve_precision(env.get("MNEMO_PRECISION", "auto") or "auto", device=device),
        gradient_checkpointing=env.get("MNEMO_GRADIENT_CHECKPOINTING", "0").lower() in ("1", "true", "yes"),
        dc_chunk=chunk,
    )


def cast_frozen(modules: Iterable[nn.Module], precision: Precision) -> None:
    """Store the frozen base modules in ``precision`` (no copy when they already are); adapter
    tensors already injected into them stay fp32."""
    dtype = DTYPES[precision]
    for module in modules:
        if any(p.dtype != dtype for p in module.parameters()):
            module.to(dtype)
            keep_fp32(p for name, p in module.named_parameters() if _is_adapter(name))


def keep_fp32(params: Iterable[torch.Tensor]) -> None:
    """Trainable tensors in fp32 whatever the base dtype (peft casts new adapters to the base's)."""
    for param in params:
        if param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()


def compute_dtype(module: nn.Module) -> torch.dtype:
    """The dtype the frozen base of ``module`` is stored (and computes) in."""
    return next(p.dtype for name, p in module.named_parameters() if not _is_adapter(name))


def _is_adapter(name: str) -> bool:
    """Whether a parameter name is one of peft's LoRA / VeRA tensors (not the frozen base)."""
    return ".lora_" in name or ".vera_" in name


def autocast(module: nn.Module) -> AbstractContextManager:
    """``torch.autocast`` in ``module``'s base dtype; a no-op context for an fp32 base."""
    dtype = compute_dtype(module)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    device = next(module.parameters()).device
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(module: nn.Module) -> torch.amp.GradScaler:
    """Dynamic loss scaling for an fp16 base; a disabled scaler (exact pass-through) otherwise."""
    device = next(module.parameters()).device
    return torch.amp.GradScaler(device.type, enabled=compute_dtype(module) == torch.float16)


def scaled_grads(
    objective: torch.Tensor, inputs: Sequence[torch.Tensor], *, scaler: torch.amp.GradScaler
) -> tuple[torch.Tensor | None, ...]:
    """∇ objective w.r.t. ``inputs`` (Eq. 4's per-sample gradient), unscaled.

    With an enabled (fp16) scaler the gradient is taken of ``S · objective`` and divided by S,
    halving S and retrying while it overflows; a disabled scaler is the plain ``autograd.grad``.
    """
    if not scaler.is_enabled():
        return torch.autograd.grad(objective, list(inputs), allow_unused=True)
    while True:
        scaled = scaler.scale(objective)
        scale = float(scaler.get_scale())
        grads = torch.autograd.grad(scaled, list(inputs), allow_unused=True, retain_graph=True)
        if all(g is None or torch.isfinite(g).all() for g in grads):
            return tuple(None if g is None else g / scale for g in grads)
        if scale <= 1.0:
            return grads  # not finite at scale 1: the caller's finiteness check reports it
        scaler.update(scale / 2)
