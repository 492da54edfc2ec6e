"""Custom Diffusion's constrained merge of per-task K/V updates (Kumari et al. 2023, §3.3), replay-free.

The paper's best Custom Diffusion variant trains separate K/V weights W_j per task and merges them:

    Ŵ = argmin_W ‖(W − W0) C_regᵀ‖²_F   s.t.   W C_jᵀ = W_j C_jᵀ  for every task j ≤ n,

where C_j [m_j, d] are the text features of task j's prompt (its token's row up to EOS) and
C_reg [r, d] those of regularisation captions (generic prompts, no images: replay-free). With
C = [C_1; …; C_n], R = [Δ_1 C_1ᵀ, …, Δ_n C_nᵀ] (Δ_j = W_j − W0) and M = C_regᵀ C_reg + εI, the
Lagrangian gives the closed form

    Ŵ − W0 = R (C M⁻¹ Cᵀ)⁺ C M⁻¹,

a pseudo-inverse where the constraints are linearly dependent (more feature rows than d).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

RIDGE = 1e-2
"""ε of M = C_regᵀ C_reg + ε · mean(diag(C_regᵀ C_reg)) · I: keeps M invertible for few captions."""


def constrained_merge(
    *,
    deltas: Sequence[torch.Tensor],
    features: Sequence[torch.Tensor],
    regulariser: torch.Tensor,
    ridge: float = RIDGE,
) -> torch.Tensor:
    """Ŵ − W0 of the module docstring for one K/V layer: deltas Δ_j [out, d], features C_j [m_j, d]."""
    if len(deltas) != len(features) or not deltas:
        raise ValueError("one feature matrix per task delta, at least one task")
    c = torch.cat([f.double() for f in features])
    r = torch.cat([d.double() @ f.double().T for d, f in zip(deltas, features, strict=True)], dim=1)
    gram = regulariser.double().T @ regulariser.double()
    scale = float(gram.diagonal().mean()) or 1.0
    m = gram + ridge * scale * torch.eye(gram.shape[0], dtype=torch.float64)
    c_minv = torch.linalg.solve(m, c.T).T  # C M⁻¹ (M symmetric)
    merged = r @ torch.linalg.pinv(c_minv @ c.T, hermitian=True) @ c_minv
    return merged.to(deltas[0].dtype)


def merge_kv_deltas(
    *,
    task_deltas: Sequence[Mapping[str, torch.Tensor]],
    features: Sequence[torch.Tensor],
    regulariser: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The merged ``<layer>.delta`` of every K/V layer from each task's raw deltas (same keys)."""
    return {
        key: constrained_merge(
            deltas=[deltas[key] for deltas in task_deltas], features=features, regulariser=regulariser
        )
        for key in task_deltas[-1]
    }


def prompt_rows(
    hidden: torch.Tensor, ids: torch.Tensor, *, eos_id: int, starts: Sequence[int] | None = None
) -> list[torch.Tensor]:
    """Per prompt, its text features from ``starts[b]`` up to and with the first EOS: B × [m_b, D].

    CLIP's attention is causal, so the rows before a concept token ("a photo of") are the same in
    every task's prompt: as constraints of different tasks they would contradict each other. The
    task loop starts each concept prompt at its token; those generic rows belong to C_reg.
    """
    rows = []
    for b in range(hidden.shape[0]):
        positions = (ids[b] == eos_id).nonzero()
        end = int(positions[0]) + 1 if len(positions) else hidden.shape[1]
        start = starts[b] if starts is not None else 0
        rows.append(hidden[b, start:end].detach())
    return rows
