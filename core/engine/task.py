"""One task of a user's history (Algorithm 4): train, DSC, Fisher; returns the new state.

    θ_n ← θ_{n−1}                                   (sequential initialisation)
    θ_n ← train on D_n: Eq. 1 + prior on c0 (+ EWC penalty with F_{n−1}, θ*)
    θ_s ← DSC(θ_n, {θ_j}) (Eq. 6);  θ_n ← θ_s       (methods with DSC, n ≥ 2)
    F  ← online merge of F_{n−1} and F_n (Eq. 4–5) (methods with EWC)

The EWC penalty uses the normalised Fisher F̃ = F / F̄ and C-LoRA's Eq. 2 the normalised
occupancy |Σ A B| / R, so their λ are scale-free (docs/method.md); F is stored and merged
un-normalised, and F̄ (``fisher_mean``) is recorded with the state.

Every random draw comes from one ``torch.Generator`` seeded by (config.seed, n), so a
run resumed from a checkpoint gives the same result as an uninterrupted one on CPU.

Forward passes run under the backbone's precision (``core.engine.precision``, docs/gpu.md):
autocast in the base's dtype, fp32 trainable tensors and optimiser state, a loss scaler for fp16;
with an fp32 base (the default on CPU) these are pass-throughs.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from core.engine import custom_diffusion as CD
from core.engine import losses as L
from core.engine.adapters import (
    AdapterState,
    activate,
    ensure_slot,
    fresh_state,
    kv_delta_applied,
    slot_parameters,
    write_slot,
    zero_kv_delta,
)
from core.engine.backbone import Backbone
from core.engine.checkpoint import Checkpointer
from core.engine.config import EngineConfig
from core.engine.data import encode_latents, to_pixels
from core.engine.errors import InvalidConceptError, NonFiniteError, TaskCancelled
from core.engine.memory import ConditionBatcher
from core.engine.methods import DEFAULT_METHOD, Method, get_method
from core.engine.precision import autocast, grad_scaler, scaled_grads
from core.engine.prior import prior_latents
from core.engine.state import ConceptRecord, UserState
from core.engine.tokens import encode_prompts, initial_embedding, token_for, tokenize
from core.faults import crash_point

Progress = Callable[[str, int, int, float | None], None]
INSTANCE_TEMPLATE = "a photo of {}"
MAX_GRAD_NORM = 1.0


@dataclass
class TaskResult:
    state: UserState
    losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_task(
    *,
    backbone: Backbone,
    state: UserState,
    concept: str,
    class_word: str | None,
    images: Sequence[Image.Image],
    method: str = DEFAULT_METHOD,
    config: EngineConfig,
    prior_cache_dir: Path | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: Path | None = None,
) -> TaskResult:
    """Learn ``concept`` from ``images`` on top of ``state``; the input state is not modified."""
    spec = get_method(method)
    _check_continues(state, spec, config)
    token = token_for(concept)
    if token in state.tokens:
        raise InvalidConceptError(f"this user already has the token {token}")
    run = _TaskRun(
        backbone=backbone,
        state=state,
        spec=spec,
        config=config,
        token=token,
        class_word=class_word,
        images=images,
        prior_cache_dir=prior_cache_dir,
        progress=progress or (lambda *_: None),
        should_stop=should_stop or (lambda: False),
        checkpoint_dir=checkpoint_dir,
    )
    try:
        return run.execute()
    finally:
        activate(backbone.unet, [])


def _check_continues(state: UserState, spec: Method, config: EngineConfig) -> None:
    """A user's adapters can only be continued by a method of the same structure."""
    if state.method is None:
        return
    previous = get_method(state.method)
    same = (previous.adapter, previous.per_task_adapters, previous.combine) == (
        spec.adapter,
        spec.per_task_adapters,
        spec.combine,
    )
    if not same or (spec.uses_lora and state.adapter_type != config.adapter_type):
        raise InvalidConceptError(
            f"this user's adapters were trained with {state.method!r} ({state.adapter_type}); "
            f"{spec.name!r} with {config.adapter_type} cannot continue them"
        )


class _TaskRun:
    """The mutable working set of one task; ``execute`` runs the phases in order."""

    def __init__(self, *, backbone: Backbone, state: UserState, spec: Method, config: EngineConfig,
                 token: str, class_word: str | None, images: Sequence[Image.Image],
                 prior_cache_dir: Path | None, progress: Progress, should_stop: Callable[[], bool],
                 checkpoint_dir: Path | None):  # fmt: skip
        self.backbone, self.state, self.spec, self.config = backbone, state, spec, config
        self.token, self.class_word, self.images = token, class_word, images
        self.prior_cache_dir, self.progress, self.should_stop = prior_cache_dir, progress, should_stop
        self.n = state.n_tasks + 1
        self.unet = backbone.unet
        self.batcher = ConditionBatcher(chunk=backbone.runtime.dc_chunk)
        self.rng = torch.Generator().manual_seed(config.seed * 100_003 + self.n)
        self.ckpt = Checkpointer(checkpoint_dir, fingerprint=self._fingerprint())
        self.done: dict[str, dict[str, torch.Tensor]] = {}
        self.losses: dict[str, list[float]] = {}
        self.seconds: dict[str, float] = {}
        self.normalisers: dict[str, float] = {}

    # ---------------------------------------------------------------- orchestration
    def execute(self) -> TaskResult:
        self._timed("prepare", self._prepare)
        self._timed("train", self._train)
        if self.spec.dsc and self.n >= 2:
            self._timed("dsc", self._dsc)
        fisher = self._timed("fisher", self._fisher) if self.spec.ewc != "none" else None

        adapter = self.done.get("dsc", self.done["train"])
        token_row = self.done["train"]["__token__"]
        adapter = {k: v for k, v in adapter.items() if k != "__token__"}
        if self.spec.combine == "merge":
            adapter = self._merged_kv(adapter, token_row)
        _require_finite({"token": token_row, **adapter, **(fisher or {})})
        record = ConceptRecord(
            name=self.token[1:-1],
            token=self.token,
            class_word=self.class_word,
            task_index=self.n,
            method=self.spec.name,
        )
        new_state = self.state.with_task(
            concept=record,
            token_embedding=token_row,
            adapter=adapter,
            fisher=fisher,
            adapter_type=self.config.adapter_type,
            normalisers=self.normalisers,
        )
        self.ckpt.clear()
        return TaskResult(state=new_state, losses=self.losses, seconds=self.seconds)

    def _timed(self, phase: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = fn()
        self.seconds[phase] = time.perf_counter() - started
        crash_point(f"train.after_{phase}")
        return result

    # ---------------------------------------------------------------- phases
    def _prepare(self) -> None:
        """Latents of D_n, the prior set c0 (drawn once per backbone), a checkpoint to resume.

        Progress counts one step for the encode, one per prior image and one for the rest, so
        the phase moves while the prior is drawn and ends at its total.
        """
        total = self.config.prior_images + 2
        self.progress("prepare", 0, total, None)
        pixels = to_pixels(self.images, resolution=self.backbone.resolution, hflip=self.config.hflip)
        self.latents = encode_latents(self.backbone, pixels)
        self.progress("prepare", 1, total, None)
        self.prior = prior_latents(
            self.backbone,
            config=self.config,
            cache_dir=self.prior_cache_dir,
            on_progress=lambda done, _: self.progress("prepare", 1 + done, total, None),
        )
        self.resume = self.ckpt.load()
        if self.resume is not None:
            self.done = self.resume["done"]
            self.losses = self.resume["losses"]
        self.occupied = self._normalised_occupancy()  # recorded even when training is resumed past
        self.progress("prepare", total, total, None)

    def _train(self) -> None:
        """Eq. 1 on D_n + prior loss on c0 (+ EWC penalty, + C-LoRA Eq. 2)."""
        if "train" in self.done:
            return
        token_row = nn.Parameter(initial_embedding(self.backbone, self.class_word))
        adapter = self._trainable_adapter()
        groups = [{"params": [token_row], "lr": self.config.token_lr}]
        if adapter:
            lr = self.config.full_lr if self.spec.adapter == "kv" else self.config.lora_lr
            groups.append({"params": list(adapter.values()), "lr": lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=1e-2)
        params = {"__token__": token_row, **adapter}
        prior_cond = self._encode([self.backbone.prior_prompt], {})
        occupied = self.occupied
        fisher = self._normalised_fisher()
        scaler = grad_scaler(self.unet)

        def step(_: int) -> float:
            total = 0.0
            for _ in range(self.config.grad_accum):
                with autocast(self.unet):
                    loss = self._train_loss(token_row, adapter, prior_cond, occupied, fisher)
                loss = loss / self.config.grad_accum
                scaler.scale(loss).backward()
                total += loss.item()
            _clipped_step(optimizer, list(params.values()), scaler=scaler)
            return total

        self._loop("train", self.config.train_steps, step, params=params, optimizer=optimizer)
        self.done["train"] = {k: v.detach().clone() for k, v in params.items()}

    def _train_loss(
        self,
        token_row: torch.Tensor,
        adapter: dict[str, nn.Parameter],
        prior_cond: torch.Tensor,
        occupied: dict[str, torch.Tensor],
        fisher: dict[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        b = self.config.batch_size
        x0 = torch.cat([self._pick(self.latents, b), self._pick(self.prior, b)])
        x_t, target, t = self._diffuse(x0)
        table = {**self.state.token_embeddings, self.token: token_row}
        cond = self._encode([INSTANCE_TEMPLATE.format(self.token)], table)
        hidden = torch.cat([cond.expand(b, -1, -1), prior_cond.expand(b, -1, -1)])
        with self._kv(adapter):
            eps_pred = self.unet(x_t, t, hidden).sample
        loss = L.denoise_loss(eps_pred[:b], target[:b])
        loss = loss + self.config.prior_weight * L.denoise_loss(eps_pred[b:], target[b:])
        if fisher is not None and self.state.anchor is not None:
            loss = loss + L.ewc_penalty(
                adapter, anchor=self.state.anchor, fisher=fisher, weight=self.config.ewc_lambda
            )
        if occupied:
            loss = loss + self.config.c_lora_lambda * L.c_lora_forget_loss(occupied, adapter)
        return loss

    def _dsc(self) -> None:
        """Eq. 6: student ← θ_n; teachers θ_n on c_n and θ_j (j ~ U[1, n−1] each step) on c_j."""
        if "dsc" in self.done:
            return
        trained = {k: v for k, v in self.done["train"].items() if k != "__token__"}
        for slot in ("teacher", "old"):
            ensure_slot(self.unet, slot, config=self.config)
        write_slot(self.unet, "teacher", trained)
        student = self._lora_slot("student", trained)
        optimizer = torch.optim.AdamW(list(student.values()), lr=self.config.lora_lr, weight_decay=1e-2)
        embeds = self._concept_embeddings()
        b = self.config.batch_size
        scaler = grad_scaler(self.unet)

        def step(_: int) -> float:
            x0 = self._pick(self.latents, b)
            x_t, target, t = self._diffuse(x0)
            j = int(torch.randint(self.n - 1, (1,), generator=self.rng))
            old_token = self.state.concepts[j].token
            cond = torch.cat([embeds["c0"], embeds[self.token], embeds[old_token]])
            write_slot(self.unet, "old", self.state.task_adapters[j])
            new_lp, new_eps = self._teacher("teacher", x_t, t, cond, target)
            old_lp, old_eps = self._teacher("old", x_t, t, cond, target)
            self._activate_trainable("student", student)
            with autocast(self.unet):
                eps_s = L.batched_eps(self.unet, x_t, t, cond, batcher=self.batcher)
            student_lp = L.dc_log_probs(
                L.dc_errors(eps_s, target, reduction=self.config.dc_reduction), tau=self.config.dc_tau
            )
            loss = L.dsc_loss(
                student_log_probs=student_lp,
                new_teacher_log_probs=new_lp,
                old_teacher_log_probs=old_lp,
                student_eps_new=eps_s[:, 1],
                new_teacher_eps=new_eps[:, 1],
                student_eps_old=eps_s[:, 2],
                old_teacher_eps=old_eps[:, 2],
                gamma=self.config.dsc_gamma,
                lam=self.config.dsc_lambda,
            )
            scaler.scale(loss).backward()
            _clipped_step(optimizer, list(student.values()), scaler=scaler)
            return loss.item()

        self._loop("dsc", self.config.consolidation_steps, step, params=student, optimizer=optimizer)
        self.done["dsc"] = {k: v.detach().clone() for k, v in student.items()}

    def _fisher(self) -> dict[str, torch.Tensor]:
        """Diagonal Fisher of θ_n from per-sample gradients of L_ewc (Eq. 4; Eq. 5 for EWC-DC)."""
        final = {k: v for k, v in self.done.get("dsc", self.done["train"]).items() if k != "__token__"}
        params = self._kv_params(final) if self.spec.adapter == "kv" else self._lora_slot("student", final)
        embeds = self._concept_embeddings()
        previous = [c.token for c in self.state.concepts]
        accum = {k: torch.zeros_like(p) for k, p in params.items()}
        if self.resume is not None and self.resume.get("phase") == "fisher":
            accum = self.resume["accum"]
        scaler = grad_scaler(self.unet)

        def step(_: int) -> float:
            x0 = self._pick(self.latents, 1)
            x_t, target, t = self._diffuse(x0)
            if self.spec.ewc == "dc":
                k_old = min(self.config.dc_k - 2, len(previous))
                chosen = torch.randperm(len(previous), generator=self.rng)[:k_old].tolist()
                tokens = ["c0", self.token, *(previous[i] for i in chosen)]
            else:
                tokens = [self.token]
            cond = torch.cat([embeds[tok] for tok in tokens])
            with self._kv(params), autocast(self.unet):
                eps = L.batched_eps(self.unet, x_t, t, cond, batcher=self.batcher)
            index = tokens.index(self.token)
            objective = L.denoise_loss(eps[:, index], target)
            if self.spec.ewc == "dc":
                log_probs = L.dc_log_probs(
                    L.dc_errors(eps, target, reduction=self.config.dc_reduction), tau=self.config.dc_tau
                )
                objective = L.ewc_dc_objective(
                    objective, log_probs, target=index, delta=self.config.ewc_delta
                )
            grads = scaled_grads(objective, list(params.values()), scaler=scaler)
            for key, grad in zip(params, grads, strict=True):
                if grad is not None:
                    accum[key] += grad.detach() ** 2
            return objective.item()

        total = self.config.consolidation_steps
        self._loop("fisher", total, step, params=params, optimizer=None, accum=accum)
        task_fisher = {k: v / total for k, v in accum.items()}
        merged = L.merge_fisher(self.state.fisher, task_fisher, task_index=self.n)
        self.normalisers["fisher_mean"] = L.fisher_mean(merged)
        return merged

    def _normalised_fisher(self) -> dict[str, torch.Tensor] | None:
        """F̃ = F_{n−1} / F̄_{n−1} of the STORED Fisher (None without EWC or before task 2)."""
        if self.spec.ewc == "none" or self.state.fisher is None:
            return None
        return L.normalise_fisher(self.state.fisher, mean=self.state.fisher_scale)

    def _normalised_occupancy(self) -> dict[str, torch.Tensor]:
        """Eq. 2's |Σ_{n'<n} A_{n'}B_{n'}| divided by its RMS R (recorded); empty without C-LoRA."""
        if not self.spec.c_lora_reg or not self.state.task_adapters:
            return {}
        occupied = L.c_lora_occupancy(self.state.task_adapters)
        rms = L.occupancy_rms(occupied)
        self.normalisers["c_lora_occupancy_rms"] = rms
        return L.normalise_occupancy(occupied, rms=rms)

    # ---------------------------------------------------------------- the generic loop
    def _loop(
        self,
        phase: str,
        total: int,
        step: Callable[[int], float],
        *,
        params: dict[str, nn.Parameter],
        optimizer: torch.optim.Optimizer | None,
        accum: dict[str, torch.Tensor] | None = None,
    ) -> None:
        start = 0
        if self.resume is not None and self.resume.get("phase") == phase:
            start = self._restore(params, optimizer)
        history = self.losses.setdefault(phase, [])
        del history[start:]
        for i in range(start, total):
            if self.should_stop():
                raise TaskCancelled("the task was cancelled")
            loss = step(i)
            if not math.isfinite(loss):
                raise NonFiniteError(f"the {phase} loss became {loss} at step {i + 1}")
            history.append(loss)
            self.progress(phase, i + 1, total, loss)
            if (i + 1) % self.config.checkpoint_every == 0 and i + 1 < total:
                self._checkpoint(phase, i + 1, params, optimizer, accum)

    def _checkpoint(self, phase, step, params, optimizer, accum) -> None:
        self.ckpt.save(
            {
                "phase": phase,
                "step": step,
                "params": {k: v.detach().clone() for k, v in params.items()},
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "accum": {k: v.clone() for k, v in accum.items()} if accum is not None else None,
                "rng": self.rng.get_state(),
                "done": self.done,
                "losses": self.losses,
            }
        )

    def _restore(self, params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer | None) -> int:
        snap = self.resume
        with torch.no_grad():
            for key, param in params.items():
                param.copy_(snap["params"][key])
        if optimizer is not None:
            optimizer.load_state_dict(snap["optimizer"])
        self.rng.set_state(snap["rng"])
        return int(snap["step"])

    # ---------------------------------------------------------------- helpers
    def _trainable_adapter(self) -> dict[str, nn.Parameter]:
        """The adapter that training updates, initialised as Algorithm 4 line 1 says."""
        if self.spec.adapter == "none":
            activate(self.unet, [])
            return {}
        if self.spec.adapter == "kv":
            fresh = self.spec.per_task_adapters or not self.state.anchor
            return self._kv_params(zero_kv_delta(self.unet) if fresh else self.state.anchor)
        if self.spec.per_task_adapters or self.state.anchor is None:
            start = fresh_state(self.unet, config=self.config, seed=self.config.seed * 7919 + self.n)
        else:
            start = self.state.anchor
        student = self._lora_slot("student", start)
        if self.spec.c_lora_reg:  # earlier task LoRAs stay in the weights, frozen (C-LoRA)
            past = [f"past{i}" for i in range(self.n - 1)]
            for slot, state in zip(past, self.state.task_adapters, strict=True):
                ensure_slot(self.unet, slot, config=self.config)
                write_slot(self.unet, slot, state)
            self._activate_trainable("student", student, extra=past)
        return student

    @torch.no_grad()
    def _merged_kv(self, raw: AdapterState, token_row: torch.Tensor) -> AdapterState:
        """Custom Diffusion: ``<layer>.delta`` = the constrained merge of every task's raw K/V delta
        (kept as ``<layer>.task_delta``) on its prompt's text features (core.engine.custom_diffusion)."""
        table = {**self.state.token_embeddings, self.token: token_row}
        prompts = [INSTANCE_TEMPLATE.format(tok) for tok in [*self.state.tokens, self.token]]
        words = sorted(
            {c.class_word for c in self.state.concepts if c.class_word} | {self.class_word or "thing"}
        )
        generic = [self.backbone.prior_prompt, "a photo", *(f"a photo of a {word}" for word in words)]
        features = self._prompt_features(prompts, table, from_token=True)
        regulariser = torch.cat(self._prompt_features([*generic, *prompts], table))
        earlier = [_raw_kv(adapter) for adapter in self.state.task_adapters]
        merged = CD.merge_kv_deltas(task_deltas=[*earlier, raw], features=features, regulariser=regulariser)
        return {**merged, **{key.removesuffix(".delta") + ".task_delta": value for key, value in raw.items()}}

    def _prompt_features(
        self, prompts: list[str], table: dict[str, torch.Tensor], *, from_token: bool = False
    ) -> list[torch.Tensor]:
        ids, slots = tokenize(self.backbone, prompts, list(table))
        hidden = self._encode(prompts, table).float()
        starts = [s[0][0] if (from_token and s) else 0 for s in slots]
        return CD.prompt_rows(hidden, ids, eos_id=self.backbone.tokenizer.eos_token_id, starts=starts)

    def _lora_slot(self, slot: str, state: AdapterState) -> dict[str, nn.Parameter]:
        ensure_slot(self.unet, slot, config=self.config)
        write_slot(self.unet, slot, state)
        return self._activate_trainable(slot, slot_parameters(self.unet, slot))

    def _activate_trainable(self, slot: str, params: dict[str, nn.Parameter], extra: Sequence[str] = ()):
        activate(self.unet, [*extra, slot])
        for param in params.values():
            param.requires_grad_(True)
        return params

    def _kv_params(self, start: AdapterState) -> dict[str, nn.Parameter]:
        activate(self.unet, [])
        device = self.backbone.device
        return {k: nn.Parameter(v.detach().clone().to(device, torch.float32)) for k, v in start.items()}

    def _kv(self, adapter: dict[str, torch.Tensor]):
        deltas = [adapter] if self.spec.adapter == "kv" else []
        return kv_delta_applied(self.unet, deltas)

    @torch.no_grad()
    def _teacher(self, slot: str, x_t, t, cond, target) -> tuple[torch.Tensor, torch.Tensor]:
        activate(self.unet, [slot])
        with autocast(self.unet):
            eps = L.batched_eps(self.unet, x_t, t, cond, batcher=self.batcher)
        errors = L.dc_errors(eps, target, reduction=self.config.dc_reduction)
        return L.dc_log_probs(errors, tau=self.config.teacher_tau), eps

    @torch.no_grad()
    def _concept_embeddings(self) -> dict[str, torch.Tensor]:
        """Text embeddings of c0 and of every (now frozen) concept, computed once per phase."""
        table = {**self.state.token_embeddings, self.token: self.done["train"]["__token__"]}
        prompts = {"c0": self.backbone.prior_prompt}
        prompts.update({tok: INSTANCE_TEMPLATE.format(tok) for tok in table})
        encoded = self._encode(list(prompts.values()), table)
        return {key: encoded[i : i + 1] for i, key in enumerate(prompts)}

    def _encode(self, prompts: list[str], table: dict[str, torch.Tensor]) -> torch.Tensor:
        with autocast(self.backbone.text_encoder):
            return encode_prompts(self.backbone, prompts, table)

    def _pick(self, pool: torch.Tensor, count: int) -> torch.Tensor:
        return pool[torch.randint(pool.shape[0], (count,), generator=self.rng)]

    def _diffuse(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x_t ~ q(x_t | x0) with t ~ U[0, T), and the model's regression target.

        The target is ε for ε-prediction models (SD 1.x, SD 2.x-base) and the velocity v for
        v-prediction ones (SD 2.x 768, the shipped toy); (ε, t) are shared by all conditions.
        """
        scheduler = self.backbone.scheduler
        noise = torch.randn(x0.shape, generator=self.rng).to(x0.device)
        t = torch.randint(scheduler.config.num_train_timesteps, (x0.shape[0],), generator=self.rng).to(
            x0.device
        )
        return scheduler.add_noise(x0, noise, t), L.regression_target(scheduler, x0, noise, t), t

    def _fingerprint(self) -> str:
        key = {
            "method": self.spec.name,
            "token": self.token,
            "n": self.n,
            "config": self.config.to_dict(),
            "backbone": self.backbone.name,
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _clipped_step(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], *, scaler: torch.amp.GradScaler
) -> None:
    """Clip the gradient norm to ``MAX_GRAD_NORM`` and step (docs/gpu.md: with fp16 the scaler
    unscales first and skips a step whose gradients overflowed; disabled, it is a plain step)."""
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def _raw_kv(adapter: AdapterState) -> AdapterState:
    """A Custom Diffusion task's own K/V delta (``.task_delta``; states without it: ``.delta``)."""
    raw = {
        k.removesuffix(".task_delta") + ".delta": v for k, v in adapter.items() if k.endswith(".task_delta")
    }
    return raw or {k: v for k, v in adapter.items() if k.endswith(".delta")}


def _require_finite(tensors: dict[str, torch.Tensor]) -> None:
    bad = [key for key, value in tensors.items() if not torch.isfinite(value).all()]
    if bad:
        raise NonFiniteError(f"non-finite values in {len(bad)} trained tensor(s), e.g. {bad[0]}")
