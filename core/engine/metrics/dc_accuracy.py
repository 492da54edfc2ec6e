"""Training-set classification accuracy of the diffusion classifier (paper Fig. 7, Eq. 3).

After the last task, every training image of concept j is classified among the conditions
{c0, c_1, ..., c_N} (the shared prior concept and all of the user's concepts) by the
Diffusion Classifier rule: the condition with the lowest noise-prediction error, averaged
over ``trials`` shared (t, ε) draws (Li et al. 2023) — for one trial this is the argmax of
the DC scores of Eq. 3. The prediction is correct when it is c_j. The paper uses the same
probe to check that DC scores carry reliable class information (Sanity check II, §4.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

DC_PROMPT = "a photo of {token}"


@torch.no_grad()
def dc_error_samples(
    *,
    backbone: Any,
    state: Any,
    latents: torch.Tensor,
    prompts: Sequence[str],
    trials: int,
    reduction: str,
    seed: int,
) -> torch.Tensor:
    """err_i of Eq. 3 per trial, latent and prompt under the state's adapters: [trials, B, k].

    Each trial draws one (t, ε) per latent, shared by all k prompts (one batched UNet call).
    """
    from core.engine.generate import user_adapters
    from core.engine.losses import batched_eps, dc_errors, regression_target
    from core.engine.tokens import encode_prompts

    if trials < 1:
        raise ValueError("trials must be >= 1")
    generator = torch.Generator().manual_seed(seed)
    scheduler = backbone.scheduler
    n_steps = int(scheduler.config.num_train_timesteps)
    out = []
    with user_adapters(backbone, state):
        cond = encode_prompts(backbone, list(prompts), state.token_embeddings)
        for _ in range(trials):
            t = torch.randint(0, n_steps, (latents.shape[0],), generator=generator).to(latents.device)
            eps = torch.randn(latents.shape, generator=generator).to(latents.device)
            x_t = scheduler.add_noise(latents, eps, t)
            eps_pred = batched_eps(backbone.unet, x_t, t, cond)
            target = regression_target(scheduler, latents, eps, t)
            out.append(dc_errors(eps_pred, target, reduction=reduction).double().cpu())  # type: ignore[arg-type]
    return torch.stack(out)


def dc_training_accuracy(
    *,
    backbone: Any,
    state: Any,
    concepts: Sequence[tuple[str, Sequence[Any]]],
    config: Any,
    trials: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Fig. 7: the fraction of training images whose DC prediction is their own concept.

    ``concepts``: (name, PIL images) in task order; condition 0 is the prior prompt c0.
    """
    from core.engine.data import encode_latents, to_pixels

    prompts = [backbone.prior_prompt, *(DC_PROMPT.format(token=f"<{name}>") for name, _ in concepts)]
    per_concept, correct, total = [], 0, 0
    for j, (_, images) in enumerate(concepts):
        pixels = to_pixels(list(images), resolution=backbone.resolution, hflip=False)
        latents = encode_latents(backbone, pixels)
        errors = dc_error_samples(
            backbone=backbone,
            state=state,
            latents=latents,
            prompts=prompts,
            trials=trials,
            reduction=config.dc_reduction,
            seed=seed * 7919 + j,
        )
        predicted = errors.sum(dim=0).argmin(dim=1)  # the lowest mean error over the trials
        hits = int((predicted == j + 1).sum())
        per_concept.append(hits / len(images))
        correct += hits
        total += len(images)
    return {
        "overall": correct / total,
        "per_concept": per_concept,
        "conditions": len(prompts),
        "trials": trials,
        "chance": 1.0 / len(prompts),
    }
