"""The losses of the paper, each a small pure function of tensors.

Notation: B images, k conditions (concept prompts), latents of shape [C, H, W].
``eps`` is the sampled noise, ``eps_pred`` the UNet's prediction of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.engine.adapters import lora_delta, lora_modules
from core.engine.config import DcReduction
from core.engine.memory import ConditionBatcher

Tensors = Mapping[str, torch.Tensor]


def regression_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the UNet regresses in Eq. 1: ε for ε-prediction backbones (SD 1.x, SD 2.x-base), the
    velocity v = α_t ε − σ_t x0 for v-prediction ones (SD 2.x 768, the toy since its v-recipe)."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    return noise


def denoise_loss(eps_pred: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Eq. 1: E ||ε − ε_θ(x_t, c, t)||², as the per-element mean (diffusers' convention)."""
    return F.mse_loss(eps_pred.float(), eps.float(), reduction="mean")


def batched_eps(
    unet: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    *,
    batcher: ConditionBatcher | None = None,
) -> torch.Tensor:
    """ε_θ(x_t, c_i, t) for all k conditions in ONE UNet call (paper §3.1, "efficient DC").

    x_t: [B, C, H, W], t: [B], cond: [k, L, D] -> [B, k, C, H, W]. Every condition sees
    the same (x_t, t), so the k errors of an image differ only by the condition. A ``batcher``
    (``core.engine.memory``) may split the B·k rows into chunks when one call does not fit.
    """
    b, k = x_t.shape[0], cond.shape[0]
    sample = x_t.repeat_interleave(k, dim=0)
    timesteps = t.repeat_interleave(k, dim=0)
    hidden = cond.repeat(b, 1, 1)
    if batcher is None:
        return unet(sample, timesteps, hidden).sample.view(b, k, *x_t.shape[1:])
    return batcher.eps(unet, sample, timesteps, hidden).view(b, k, *x_t.shape[1:])


def dc_errors(eps_pred: torch.Tensor, eps: torch.Tensor, *, reduction: DcReduction) -> torch.Tensor:
    """err_i = ||ε − ε_θ(x_t, c_i, t)||² per image and condition: [B, k, C, H, W] -> [B, k].

    ``sum`` is Eq. 3 as written; ``mean`` divides by C·H·W as the Diffusion Classifier
    code does, which raises the effective temperature by that factor.
    """
    sq = (eps.unsqueeze(1).float() - eps_pred.float()) ** 2
    return sq.flatten(2).sum(-1) if reduction == "sum" else sq.flatten(2).mean(-1)


def dc_log_probs(errors: torch.Tensor, *, tau: float) -> torch.Tensor:
    """Eq. 3: log p_θ(c_i | x) = log softmax_i(−err_i / τ) over the k conditions."""
    return torch.log_softmax(-errors / tau, dim=-1)


def ewc_dc_objective(
    denoise: torch.Tensor, log_probs: torch.Tensor, *, target: int, delta: float
) -> torch.Tensor:
    """Eq. 5: L_ewc = L_denoise + δ E_x Σ_i (2·1[i = n] − 1) H(p_θ, c_i).

    H(p_θ, c_i) = −log p_θ(c_i | x): pulled towards the task's own concept c_n (index
    ``target``) and pushed away from every other concept of the DC set.
    """
    sign = -torch.ones(log_probs.shape[-1], device=log_probs.device)
    sign[target] = 1.0
    cross_entropy = -log_probs  # H(p, c_i) against the one-hot label of c_i
    return denoise + delta * (cross_entropy * sign).sum(-1).mean()


def squared_grads(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One sample's contribution to the diagonal empirical Fisher (Eq. 4): (∇θ L_ewc)²."""
    return {
        k: (p.grad.detach() ** 2 if p.grad is not None else torch.zeros_like(p)) for k, p in params.items()
    }


def merge_fisher(
    previous: Tensors | None, task_fisher: Tensors, *, task_index: int
) -> dict[str, torch.Tensor]:
    """Online EWC (Schwarz et al. 2018): F ← ((n−1)·F_{n−1} + F_n) / n, a running mean over tasks.

    Always called with the STORED F_{n−1} of the parent version, never with the current
    one, so a retried task computes the same F and cannot count itself twice.
    """
    n = task_index
    if previous is None or n <= 1:
        return {k: v.clone() for k, v in task_fisher.items()}
    merged = {}
    for key, value in task_fisher.items():
        old = previous.get(key)
        merged[key] = value.clone() if old is None else ((n - 1) * old.to(value) + value) / n
    return merged


def elementwise_mean(tensors: Tensors) -> float:
    """x̄ = Σ_k Σ_e x_k[e] / Σ_k |x_k|: the mean over every element of every tensor (0 when empty)."""
    count = sum(value.numel() for value in tensors.values())
    if count == 0:
        return 0.0
    return float(sum(value.double().sum() for value in tensors.values()) / count)


def fisher_mean(fisher: Tensors) -> float:
    """F̄ = Σ_e F[e] / P: the mean of the diagonal Fisher over all P adapter elements (docs/method.md)."""
    return elementwise_mean(fisher)


def normalise_fisher(fisher: Tensors, *, mean: float) -> dict[str, torch.Tensor]:
    """F̃ = F / F̄, so that mean(F̃) = 1 (docs/method.md, "Fisher normalisation").

    The EWC penalty λ Σ F̃ (θ − θ*)² then depends on the Fisher's *shape* only, not on its
    scale, which differs by orders of magnitude between plain EWC (Eq. 4 on L_denoise) and
    EWC-DC (Eq. 5, whose DC term scales with 1/τ and the error reduction) and between
    backbones; one λ means the same for all of them. A Fisher that is 0 everywhere (F̄ = 0)
    is returned unchanged: its penalty is 0 whatever the scale.
    """
    if not mean > 0.0:
        return {key: value.clone() for key, value in fisher.items()}
    return {key: value / mean for key, value in fisher.items()}


def ewc_penalty(params: Tensors, *, anchor: Tensors, fisher: Tensors, weight: float) -> torch.Tensor:
    """EWC (Kirkpatrick et al. 2017, as in Algorithm 4 line 2): λ Σ F (θ − θ*)².

    The task loop passes the normalised Fisher F̃ = F / F̄ (``normalise_fisher``), so λ is
    scale-free; this function applies whatever Fisher it is given.
    """
    total = None
    for key, param in params.items():
        if key not in fisher:
            continue
        term = (fisher[key].to(param) * (param - anchor[key].to(param)) ** 2).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(iter(params.values())).device)
    return weight * total


def c_lora_occupancy(past: Sequence[Tensors]) -> dict[str, torch.Tensor]:
    """|Σ_{n'<n} A_{n'}B_{n'}| per K/V layer: the spots earlier tasks occupy (constant within a task)."""
    if not past:
        return {}
    return {
        module: sum(lora_delta(state, module) for state in past).abs() for module in lora_modules(past[0])
    }


def occupancy_rms(occupied: Mapping[str, torch.Tensor]) -> float:
    """R = sqrt(mean_e |Σ_{n'<n} A_{n'}B_{n'}|²_e) over every K/V element (0 when nothing is occupied)."""
    return elementwise_mean({key: value**2 for key, value in occupied.items()}) ** 0.5


def normalise_occupancy(occupied: Mapping[str, torch.Tensor], *, rms: float) -> dict[str, torch.Tensor]:
    """|Σ A B| / R: Eq. 2's weights (|Σ A B| / R)² then have mean 1, as the normalised Fisher F̃ has.

    Eq. 2 is then λ Σ_e w_e (A_n B_n)²_e with mean(w) = 1, an EWC-like penalty on the new ΔW whose
    λ no longer depends on how large earlier tasks' ΔW are on a backbone (docs/method.md).
    """
    if not rms > 0.0:
        return {key: value.clone() for key, value in occupied.items()}
    return {key: value / rms for key, value in occupied.items()}


def c_lora_forget_loss(occupied: Mapping[str, torch.Tensor], current: Tensors) -> torch.Tensor:
    """Eq. 2 (C-LoRA): L_forget = || |Σ_{n'<n} A_{n'}B_{n'}| ⊙ A_n B_n ||²_F, over all K/V layers."""
    total = torch.zeros((), device=next(iter(current.values())).device)
    for module, spots in occupied.items():
        total = total + ((spots.to(current[f"{module}.lora_A"]) * lora_delta(current, module)) ** 2).sum()
    return total


def soft_cross_entropy(teacher_log_probs: torch.Tensor, student_log_probs: torch.Tensor) -> torch.Tensor:
    """H(p_teacher, p_student) = −Σ_i p_teacher,i log p_student,i, averaged over images."""
    return -(teacher_log_probs.exp() * student_log_probs).sum(-1).mean()


def dsc_loss(
    *,
    student_log_probs: torch.Tensor,
    new_teacher_log_probs: torch.Tensor,
    old_teacher_log_probs: torch.Tensor,
    student_eps_new: torch.Tensor,
    new_teacher_eps: torch.Tensor,
    student_eps_old: torch.Tensor,
    old_teacher_eps: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Eq. 6 (DSC double distillation).

    L = γ [H(p_θn, p_θs) + H(p_θj, p_θs)] + λ [L_MSE(ε_θn, ε_θs) + L_MSE(ε_θj, ε_θs)],
    where teacher θ_n is read on c_n and teacher θ_j on c_j, and the student's noise
    prediction is compared with each teacher's on that teacher's concept. L_MSE is the
    per-element mean, on the same scale as Eq. 1.
    """
    distill = soft_cross_entropy(new_teacher_log_probs, student_log_probs) + soft_cross_entropy(
        old_teacher_log_probs, student_log_probs
    )
    match = denoise_loss(student_eps_new, new_teacher_eps) + denoise_loss(student_eps_old, old_teacher_eps)
    return gamma * distill + lam * match
