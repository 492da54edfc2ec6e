"""Hyper-parameters of a task, in one object (paper §4 "Implementation", App. H).

``PAPER`` is the setup of the paper on SD v1.4. ``TOY`` and ``TINY`` are scaled-down
presets for the embedded toy backbone and for the tiny test models: fewer steps and
prior images, the same ratios (consolidation = 1/5 of training) and the same losses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

DcReduction = Literal["sum", "mean"]


@dataclass(frozen=True)
class EngineConfig:
    # Adapters (App. H: rank 16 as C-LoRA; VeRA rank 256).
    adapter_type: Literal["lora", "vera"] = "lora"
    lora_rank: int = 16
    vera_rank: int = 256
    # Optimisation (App. H: batch 1 x grad-accum 8; lr 5e-4 for LoRA methods, 5e-6 otherwise).
    train_steps: int = 1000
    batch_size: int = 1
    grad_accum: int = 8
    lora_lr: float = 5e-4
    token_lr: float = 5e-4
    full_lr: float = 5e-6
    # Prior regularisation on the shared prior concept c0 (200 generated images).
    prior_prompt: str = "a photo of a person"
    prior_images: int = 200
    prior_weight: float = 1.0
    prior_steps: int = 50
    # EWC (App. H: lambda 1e6; Eq. 5: delta 0.5, k = 5 with c0 and c_n always in).
    ewc_lambda: float = 1e6
    ewc_delta: float = 0.5
    dc_k: int = 5
    consolidation_fraction: float = 0.2
    # DC scores (Eq. 3): tau 1 for students, 0.05 for DSC teachers; reduction of the error.
    dc_tau: float = 1.0
    teacher_tau: float = 0.05
    dc_reduction: DcReduction = "sum"
    # DSC (Eq. 6): gamma 0.1, lambda 1.5.
    dsc_gamma: float = 0.1
    dsc_lambda: float = 1.5
    # C-LoRA self-regularisation (Eq. 2), coefficient 1e8.
    c_lora_lambda: float = 1e8
    # Data.
    resolution: int = 512
    hflip: bool = True
    # Bookkeeping.
    checkpoint_every: int = 100
    seed: int = 0

    @property
    def consolidation_steps(self) -> int:
        """Steps of each consolidation phase (Fisher, DSC): 1/5 of training in the paper."""
        return max(1, round(self.train_steps * self.consolidation_fraction))

    def with_(self, **changes: Any) -> EngineConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PAPER = EngineConfig()
# The toy's pooled caption also scales and shifts every ResNet (FiLM), so a concept token moves
# the whole UNet: LoRA 2e-3 / token 5e-3 left 2 of 8 bundled concepts closer than the class
# word on run H's weights (coloured noise), 5e-4 / 1e-3 learned 6 of 8; run K (shipped), whose
# caption path is stronger, overshoots into texture at 5e-4 / 1e-3 (4 of 8) and learns 6 of 8 at
# 2.5e-4 / 5e-4 (MODEL_CARD.md, "Personalization").
TOY = EngineConfig(
    train_steps=120,
    grad_accum=1,
    batch_size=2,
    lora_lr=2.5e-4,
    token_lr=5e-4,
    full_lr=1e-4,
    prior_prompt="a photo of a shape",
    prior_images=16,
    prior_steps=20,
    resolution=64,
    checkpoint_every=40,
)
TINY = TOY.with_(
    train_steps=10,
    prior_images=4,
    prior_steps=4,
    resolution=16,
    checkpoint_every=5,
    lora_lr=2e-3,  # the tiny random backbone's tests were sized for these rates
    token_lr=5e-3,
)

PRESETS: dict[str, EngineConfig] = {"paper": PAPER, "toy": TOY, "tiny": TINY}
