"""Train the toy backbone from scratch on the procedural data set (``mnemo toy train``).

Two stages, as Stable Diffusion was built:

1. **VAE** (``AutoencoderKL``, 64x64x3 -> 16x16x4): L1 + L2 reconstruction and a tiny KL
   term (weight ``kl_weight``); then the latent scaling factor is set to 1/std of the
   latents of held-aside data, as SD's 0.18215 was.
2. **UNet + text encoder** from scratch on scaled latents (the VAE's posterior means of a
   pool of encoded images) with the DDPM objective of
   paper Eq. 1 in its v-prediction form (``E ||v - v_theta(x_t, c, t)||^2``, as SD 2.x; the
   epsilon form is ``architecture.prediction_type = "epsilon"``), 10 % empty captions for
   classifier-free guidance, and an EMA of the weights (the EMA is what ships). Min-SNR
   weighting is off by default: its weight on the x0 error is min(SNR, gamma), i.e. ~0.01 at
   t = 900, exactly where the caption decides the image (the first toy ignored its captions).
   ``CaptionProbe`` logs how much the caption matters while training.

Every random draw comes from ``seed``. ``minutes`` is a wall-clock budget: the learning-rate
schedule follows ``max(step / steps, elapsed / budget)`` so that a run that reaches the budget
still ends with a fully decayed schedule; the log records whether that happened (then the
run is not step-for-step reproducible on a slower machine).
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import progress
from core.engine.toy import dataset
from core.engine.toy.architecture import TOY, ToyArchitecture


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    minutes: float = 60.0
    threads: int = 1
    vae_fraction: float = 0.27
    vae_steps: int = 1500
    vae_batch: int = 8
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6
    # Patterned objects (dataset.PATTERNS) need a larger pool of encoded images than solid ones.
    pool_size: int = 16384
    scale_images: int = 512
    unet_steps: int = 6000
    unet_batch: int = 32
    # Train on the VAE's posterior means instead of samples: the samples' per-element noise
    # (std ~0.2 of the scaled latents) is an irreducible part of the loss at low t.
    posterior_means: bool = True
    # Weight of the colour-only caption "a photo of a red shape" among the templates
    # (dataset.CAPTION_TEMPLATES gives it 0.5 of 10). 2.5 (17 % of all captions) teaches the
    # colour word apart from the shape word: held-out colour 83 % -> 96 % (MODEL_CARD.md, runs H, K).
    colour_only_weight: float = 2.5
    unet_lr: float = 5e-4
    text_lr_scale: float = 1.0
    warmup_steps: int = 150
    min_snr_gamma: float = 0.0  # 0: off (see the module docstring)
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    save_every_minutes: float = 8.0
    device: str = "cpu"
    snapshot_steps: tuple[int, ...] = ()
    probe_every: int = 100
    architecture: ToyArchitecture = field(default_factory=lambda: TOY)


def _schedule(progress: float, *, step: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % over ``progress`` in [0, 1]."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    return warm * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


class _Budget:
    def __init__(self, seconds: float, steps: int) -> None:
        self.start = time.monotonic()
        self.seconds = seconds
        self.steps = steps

    def progress(self, step: int) -> float:
        return max(step / self.steps, (time.monotonic() - self.start) / self.seconds)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


class _Log:
    def __init__(self, out: Path) -> None:
        self.rows: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.out = out

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "training_log.json").write_text(json.dumps({**self.meta, "rows": self.rows}, indent=1))
        keys = sorted({k for row in self.rows for k in row})
        with (self.out / "training_log.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


def train_vae(*, config: TrainConfig, log: _Log, seconds: float):
    """Stage 1: the autoencoder on freshly generated images (data seed ``seed``)."""
    import torch

    torch.manual_seed(config.seed)
    vae = config.architecture.build_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    budget = _Budget(seconds, config.vae_steps)
    bar = progress.bar(total=config.vae_steps, desc="vae")
    step = 0
    while step < config.vae_steps and budget.progress(step) < 1.0:
        lr = config.vae_lr * _schedule(budget.progress(step), step=step, warmup=50)
        for group in opt.param_groups:
            group["lr"] = lr
        images, _, _ = dataset.batch(config.seed, step * config.vae_batch, config.vae_batch)
        x = torch.from_numpy(images)
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=generator)
        recon = vae.decode(z).sample
        l1 = (recon - x).abs().mean()
        l2 = (recon - x).pow(2).mean()
        kl = posterior.kl().mean()
        loss = l1 + l2 + config.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), config.grad_clip)
        opt.step()
        if step % 25 == 0:
            log.add(
                stage="vae",
                step=step,
                seconds=round(budget.elapsed, 1),
                loss=loss.item(),
                l1=l1.item(),
                l2=l2.item(),
                kl=kl.item(),
                lr=lr,
            )
            bar.set_postfix(l1=f"{l1.item():.4f}", kl=f"{kl.item():.0f}")
        bar.update(1)
        step += 1
    bar.close()
    log.meta["vae_steps_done"] = step
    log.meta["vae_seconds"] = round(budget.elapsed, 1)
    vae.eval()
    return vae


def latent_scaling_factor(vae, *, seed: int, n: int = 512) -> float:
    """1 / std of posterior samples on ``n`` held-aside images (how SD's 0.18215 was chosen)."""
    import torch

    images, _, _ = dataset.batch(seed + 10_000, 0, n)
    with torch.no_grad():
        latents = vae.encode(torch.from_numpy(images)).latent_dist.sample(
            generator=torch.Generator().manual_seed(seed)
        )
    return float(1.0 / latents.std())


def encode_pool(vae, *, config: TrainConfig):
    """Posterior means/stds of ``pool_size`` training images (data offset 1e6) and their specs."""
    import torch

    means, stds, specs = [], [], []
    chunk = 256
    with torch.no_grad():
        for start in progress.bar(range(0, config.pool_size, chunk), desc="encode"):
            images, _, batch_specs = dataset.batch(config.seed, 1_000_000 + start, chunk)
            dist = vae.encode(torch.from_numpy(images)).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
            specs.extend(batch_specs)
    return torch.cat(means), torch.cat(stds), specs


def tokenize(tokenizer, captions: list[str]):
    return tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def training_latents(mean, std, *, noise, scale: float, posterior_means: bool):
    """Scaled UNet inputs x0: a posterior sample ``mean + std * noise``, or the mean itself."""
    return (mean if posterior_means else mean + std * noise) * scale


def min_snr_weights(scheduler, timesteps, gamma: float):
    import torch

    """Min-SNR-gamma weights (Hang et al. 2023): min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v."""
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1.0 - alphas)
    if not gamma:
        return torch.ones_like(snr)
    if scheduler.config.prediction_type == "v_prediction":
        return snr.clamp(max=gamma) / (snr + 1.0)
    return snr.clamp(max=gamma) / snr


def train_denoiser(
    *,
    vae,
    tokenizer,
    config: TrainConfig,
    log: _Log,
    seconds: float,
    out: Path,
    save: Callable[..., None],
    init: tuple[Any, Any] | None = None,
):
    """Stage 2: UNet + text encoder on scaled VAE latents (DDPM loss, Eq. 1); from scratch or ``init``."""
    import copy

    import torch

    from core.engine.losses import regression_target

    torch.manual_seed(config.seed + 1)
    arch = config.architecture
    unet, text_encoder, scheduler = arch.build_unet(), arch.build_text_encoder(), arch.build_scheduler()
    if init is not None:
        unet.load_state_dict(init[0].state_dict())
        if init[1] is not None:
            text_encoder.load_state_dict({k: v.float() for k, v in init[1].state_dict().items()})
    device = torch.device(config.device)
    unet, text_encoder = unet.to(device), text_encoder.to(device)
    scale = vae.config.scaling_factor
    means, stds, specs = encode_pool(vae, config=config)
    log.meta["pool_encode_seconds"] = round(time.monotonic() - log.meta["_t_stage2"], 1)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    groups = [
        {"params": list(unet.parameters()), "scale": 1.0},
        {"params": list(text_encoder.parameters()), "scale": config.text_lr_scale},
    ]
    opt = torch.optim.AdamW(groups, lr=config.unet_lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = list(ema_unet.parameters()) + list(ema_text.parameters())
    for p in ema_params:
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(config.seed + 2)
    rng = random.Random(config.seed + 3)
    from core.engine.toy.caption_probe import CaptionProbe

    probe = CaptionProbe(
        latents=means * scale, specs=specs, tokenizer=tokenizer, scheduler=scheduler, seed=config.seed + 4
    )
    templates = dataset.caption_templates(colour_only_weight=config.colour_only_weight)
    budget = _Budget(seconds - (time.monotonic() - log.meta["_t_stage2"]), config.unet_steps)
    next_save = config.save_every_minutes * 60
    bar = progress.bar(total=config.unet_steps, desc="unet")
    step, running = 0, None
    while step < config.unet_steps and budget.progress(step) < 1.0:
        lr = config.unet_lr * _schedule(budget.progress(step), step=step, warmup=config.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr * group["scale"]
        index = torch.randint(0, len(specs), (config.unet_batch,), generator=generator)
        latents = training_latents(
            means[index],
            stds[index],
            # drawn with posterior means too: the generator's stream, and so a seed's run, stays the same
            noise=torch.randn(means[index].shape, generator=generator),
            scale=scale,
            posterior_means=config.posterior_means,
        )
        captions = [dataset.sample_caption(rng, specs[i], templates=templates) for i in index.tolist()]
        ids = tokenize(tokenizer, captions)
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (config.unet_batch,), generator=generator
        )
        weights = min_snr_weights(scheduler, timesteps, config.min_snr_gamma)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        target = regression_target(scheduler, latents, noise, timesteps)
        noisy, target, timesteps, ids, weights = (
            t.to(device) for t in (noisy, target, timesteps, ids, weights)
        )
        hidden = text_encoder(ids).last_hidden_state
        pred = unet(noisy, timesteps, hidden).sample
        per_sample = (pred - target).pow(2).mean(dim=(1, 2, 3))
        loss = (per_sample * weights).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        raw = per_sample.mean().item()
        running = raw if running is None else 0.98 * running + 0.02 * raw
        if step % config.probe_every == 0:
            log.add(stage="probe", step=step, caption_gap=probe.gap(unet=unet, text_encoder=text_encoder))
            bar.write(f"step {step}: caption gap {log.rows[-1]['caption_gap']:.5f}")
        if step % 25 == 0:
            log.add(
                stage="unet",
                step=step,
                seconds=round(budget.elapsed, 1),
                loss=loss.item(),
                mse=raw,
                mse_smooth=running,
                lr=lr,
            )
            bar.set_postfix(mse=f"{running:.4f}", lr=f"{lr:.1e}")
        if budget.elapsed > next_save:
            next_save += config.save_every_minutes * 60
            log.meta["unet_steps_done"] = step
            save(unet=ema_unet, text_encoder=ema_text)
            log.write()
        if step + 1 in config.snapshot_steps:
            save(unet=ema_unet, text_encoder=ema_text, folder=out / f"step_{step + 1}")
        bar.update(1)
        step += 1
    bar.close()
    log.meta["unet_steps_done"] = step
    log.meta["unet_seconds"] = round(budget.elapsed, 1)
    log.meta["unet_budget_hit"] = step < config.unet_steps
    return ema_unet, ema_text, scheduler


def save_pipeline_folder(
    out: Path, *, unet, vae, text_encoder, tokenizer, scheduler, text_fp16: bool
) -> None:
    """Write a StableDiffusionPipeline-style diffusers folder (``model_index.json`` + parts)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    import copy

    copy.deepcopy(unet).cpu().save_pretrained(out / "unet", safe_serialization=True)
    vae.save_pretrained(out / "vae", safe_serialization=True)
    text = copy.deepcopy(text_encoder).cpu()
    if text_fp16:
        text = text.to(torch.float16)
    text.save_pretrained(out / "text_encoder", safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out / "tokenizer")
    scheduler.save_pretrained(out / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": _diffusers_version(),
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", type(scheduler).__name__],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


def train(
    *,
    config: TrainConfig,
    out: Path,
    save_tokenizer: bool = True,
    text_fp16: bool = True,
    resume: Path | None = None,
    reinit_text: bool = False,
    vae_from: Path | None = None,
) -> dict[str, Any]:
    """Run both stages and write the diffusers folder + ``training_log.{json,csv}`` into ``out``.

    With ``resume`` (a folder this function wrote), stage 1 is skipped: its VAE is kept and
    the UNet and text encoder continue from its weights for ``minutes`` (stage 2 only, with a
    fresh schedule; use another ``seed`` for new data). Earlier logs are kept in the new log.
    ``reinit_text`` starts a fresh text encoder instead of the resumed one. ``vae_from`` (a
    folder this function wrote) skips stage 1 only: its VAE is kept, stage 2 starts from scratch.
    """
    import torch

    from core.engine.tokenizer import build_clip_tokenizer

    # One thread by default: on a shared 2-core machine, 2 OpenMP threads competing with other
    # processes made a step 5-15x slower (measured), one thread is steady.
    torch.set_num_threads(config.threads)
    t0 = time.monotonic()
    log = _Log(out)
    log.meta.update(
        {
            "config": {**asdict(config), "architecture": config.architecture.to_dict()},
            "_t0": t0,
            "torch": torch.__version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    total = config.minutes * 60
    init = None
    if resume is not None:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel

        previous = json.loads((resume / "training_log.json").read_text())
        log.meta["previous_runs"] = [*previous.pop("previous_runs", []), previous]
        vae = AutoencoderKL.from_pretrained(resume, subfolder="vae", local_files_only=True).eval()
        init = (
            UNet2DConditionModel.from_pretrained(resume, subfolder="unet", local_files_only=True),
            None
            if reinit_text
            else CLIPTextModel.from_pretrained(resume, subfolder="text_encoder", local_files_only=True),
        )
        log.meta["resumed_from"] = str(resume)
        log.meta["reinit_text"] = reinit_text
        scale = float(vae.config.scaling_factor)
    elif vae_from is not None:
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(vae_from, subfolder="vae", local_files_only=True).eval()
        log.meta["vae_from"] = str(vae_from)
        scale = float(vae.config.scaling_factor)
    else:
        vae = train_vae(config=config, log=log, seconds=total * config.vae_fraction)
        scale = latent_scaling_factor(vae, seed=config.seed, n=config.scale_images)
        vae.register_to_config(scaling_factor=scale)
    log.meta["scaling_factor"] = scale
    tokenizer = build_clip_tokenizer()
    log.meta["_t_stage2"] = time.monotonic() - 0.0
    remaining = total - (time.monotonic() - t0)

    def save(*, unet, text_encoder, folder: Path = out) -> None:
        save_pipeline_folder(
            folder,
            unet=unet,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer if save_tokenizer else None,
            scheduler=config.architecture.build_scheduler(),
            text_fp16=text_fp16,
        )

    unet, text_encoder, _ = train_denoiser(
        vae=vae, tokenizer=tokenizer, config=config, log=log, seconds=remaining, out=out, save=save, init=init
    )
    save(unet=unet, text_encoder=text_encoder)
    log.meta["total_seconds"] = round(time.monotonic() - t0, 1)
    log.meta["parameters"] = {
        "unet": sum(p.numel() for p in unet.parameters()),
        "text_encoder": sum(p.numel() for p in text_encoder.parameters()),
        "vae": sum(p.numel() for p in vae.parameters()),
    }
    for key in ("_t0", "_t_stage2"):
        log.meta.pop(key, None)
    log.write()
    return {k: v for k, v in log.meta.items() if k not in ("config", "previous_runs")}
