"""Memory savers: gradient checkpointing and the chunked DC forward (docs/gpu.md).

The DC phases evaluate the UNet on B images × k conditions (paper §3.1, "efficient DC"); one
forward of all B·k rows is the fastest (``losses.batched_eps``). When it does not fit, the rows
go through in chunks of at most ``chunk`` rows: the same numbers up to float rounding, since every
row is an independent sample of the batch.
"""

from __future__ import annotations

import torch
from torch import nn


def set_gradient_checkpointing(unet: nn.Module, *, enabled: bool) -> None:
    """Recompute the UNet's block activations in the backward pass instead of storing them.

    diffusers checkpoints each resnet/transformer block (non-reentrant ``torch.utils.checkpoint``)
    whenever gradients are enabled, so frozen-weight LoRA training is covered; ``no_grad`` passes
    (teachers, sampling) are unaffected.
    """
    if enabled:
        unet.enable_gradient_checkpointing()
    else:
        unet.disable_gradient_checkpointing()


def chunked_eps(
    unet: nn.Module, sample: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor, *, chunk: int
) -> torch.Tensor:
    """``unet(sample, timesteps, hidden).sample`` in slices of at most ``chunk`` rows (0: one call)."""
    rows = sample.shape[0]
    if chunk <= 0 or chunk >= rows:
        return unet(sample, timesteps, hidden).sample
    parts = [
        unet(sample[i : i + chunk], timesteps[i : i + chunk], hidden[i : i + chunk]).sample
        for i in range(0, rows, chunk)
    ]
    return torch.cat(parts)


class ConditionBatcher:
    """Runs the DC forwards with the largest chunk that fits, remembered for the next calls.

    ``chunk`` 0 starts with all rows in one forward; a CUDA out-of-memory halves the chunk and
    retries the same call (at one row per forward it is raised).
    """

    def __init__(self, *, chunk: int = 0):
        self.chunk = chunk

    def eps(
        self, unet: nn.Module, sample: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor
    ) -> torch.Tensor:
        while True:
            try:
                return chunked_eps(unet, sample, timesteps, hidden, chunk=self.chunk)
            except torch.OutOfMemoryError:
                current = self.chunk if self.chunk > 0 else sample.shape[0]
                if current <= 1:
                    raise
                self.chunk = current // 2
            torch.cuda.empty_cache()  # outside ``except``: its traceback held the failed call's tensors
