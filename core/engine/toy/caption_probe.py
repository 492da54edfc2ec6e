"""Does the toy's UNet read its caption? Two probes of the same question.

* ``CaptionProbe``, logged while training (``mnemo toy train``): the loss with a wrong shape
  colour minus the loss with the right caption on a fixed batch at t in [500, 1000).
* ``caption_losses`` (``mnemo toy check --caption-losses``): the loss with right, wrong-colour,
  wrong-shape and empty captions per timestep band on fresh images and shared noise.

Both use the training objective of paper Eq. 1 with the backbone's target (``regression_target``).
Equal losses mean the text is ignored: that is what the first toy did.
"""

from __future__ import annotations

import random

from core.engine.toy import dataset
from core.engine.toy.train import tokenize


class CaptionProbe:
    """How much the caption matters: the loss with a wrong shape colour minus the loss with the right one.

    A fixed batch of pool latents with fixed noise at t in [500, 1000), where the caption decides
    the image; a gap near 0 means the UNet ignores the text (what sank the first toy).
    """

    def __init__(self, *, latents, specs, tokenizer, scheduler, seed: int, n: int = 32) -> None:
        import torch

        from core.engine.losses import regression_target

        rng = random.Random(seed)
        generator = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(specs), generator=generator)[:n]
        self.latents = latents[pick]
        picked = [specs[i] for i in pick.tolist()]
        noise = torch.randn(self.latents.shape, generator=generator)
        self.timesteps = torch.randint(500, 1000, (n,), generator=generator)
        self.noisy = scheduler.add_noise(self.latents, noise, self.timesteps)
        self.target = regression_target(scheduler, self.latents, noise, self.timesteps)
        wrong = [rng.choice([c for c in dataset.COLOUR_NAMES if c != spec.colour]) for spec in picked]
        self.right_ids = tokenize(tokenizer, [dataset.full_caption(x.colour, x.shape) for x in picked])
        self.wrong_ids = tokenize(
            tokenizer, [dataset.full_caption(c, x.shape) for c, x in zip(wrong, picked, strict=True)]
        )

    def gap(self, *, unet, text_encoder) -> float:
        import torch

        device = next(unet.parameters()).device
        losses = []
        with torch.no_grad():
            for ids in (self.right_ids, self.wrong_ids):
                hidden = text_encoder(ids.to(device)).last_hidden_state
                pred = unet(self.noisy.to(device), self.timesteps.to(device), hidden).sample
                losses.append((pred - self.target.to(device)).pow(2).mean().item())
        return losses[1] - losses[0]


CAPTION_BANDS = ((0, 200), (200, 500), (500, 800), (800, 1000))


def caption_losses(*, backbone, seed: int = 0, n: int = 128) -> dict[str, dict[str, float]]:
    """Does the UNet read its caption? The training loss (Eq. 1, the backbone's target) on ``n``
    fresh generator images with the right caption, a wrong shape colour, a wrong shape and the
    empty caption, per timestep band, on shared noise. Equal columns mean the text is ignored.
    """
    import torch

    from core.engine.losses import regression_target

    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    images, _, specs = dataset.batch(seed + 20_000, 0, n, pair_p=0.0)
    device = backbone.device
    captions = {
        "right": [dataset.full_caption(s.colour, s.shape) for s in specs],
        "wrong_colour": [
            dataset.full_caption(rng.choice([c for c in dataset.COLOUR_NAMES if c != s.colour]), s.shape)
            for s in specs
        ],
        "wrong_shape": [
            dataset.full_caption(s.colour, rng.choice([x for x in dataset.SHAPES if x != s.shape]))
            for s in specs
        ],
        "empty": [""] * n,
    }
    scheduler = backbone.scheduler
    result: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        latents = backbone.vae.encode(torch.from_numpy(images).to(device)).latent_dist.mean.cpu()
        latents = latents * backbone.vae_scaling
        hidden = {
            name: backbone.text_encoder(tokenize(backbone.tokenizer, texts).to(device)).last_hidden_state
            for name, texts in captions.items()
        }
        for low, high in CAPTION_BANDS:
            noise = torch.randn(latents.shape, generator=generator)
            t = torch.randint(low, high, (n,), generator=generator)
            noisy = scheduler.add_noise(latents, noise, t)
            target = regression_target(scheduler, latents, noise, t)
            noisy, target, t = noisy.to(device), target.to(device), t.to(device)
            result[f"{low}-{high}"] = {
                name: round((backbone.unet(noisy, t, states).sample - target).pow(2).mean().item(), 5)
                for name, states in hidden.items()
            }
    return result
