"""Kernel Inception Distance (Binkowski et al., 2018), computed on any feature extractor.

KID is the unbiased MMD² with the cubic kernel ``(x·y/d + 1)^3``, averaged over random
subsets of equal size drawn without replacement from each set (the torch-fidelity /
torchmetrics procedure). The paper reports it ×10^5 (Table 1); this function returns the raw
value and the table scales it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.engine.metrics.kernels import KID_DEGREE, mmd2_unbiased


@dataclass(frozen=True)
class KidResult:
    mean: float
    std: float
    subset_size: int
    subsets: int


def kid(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> KidResult:
    """KID between real [N, D] and generated [M, D] features.

    ``subset_size`` is clipped to ``min(N, M)`` (torchmetrics raises instead; with the handful
    of images a personal concept has, clipping is the only usable choice). When the subset
    covers both sets entirely, every subset is identical, so one is computed.
    """
    if subsets < 1:
        raise ValueError("subsets must be >= 1")
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {real.shape[0]} and {fake.shape[0]}")
    if size == real.shape[0] == fake.shape[0]:
        value = mmd2_unbiased(real, fake, degree=KID_DEGREE)
        return KidResult(mean=value, std=0.0, subset_size=size, subsets=1)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        real_idx = torch.randperm(real.shape[0], generator=generator)[:size]
        fake_idx = torch.randperm(fake.shape[0], generator=generator)[:size]
        values.append(mmd2_unbiased(real[real_idx], fake[fake_idx], degree=KID_DEGREE))
    stacked = torch.tensor(values, dtype=torch.float64)
    std = float(stacked.std(unbiased=False)) if len(values) > 1 else 0.0
    return KidResult(mean=float(stacked.mean()), std=std, subset_size=size, subsets=subsets)
