"""Precision and memory options (docs/gpu.md): the default CPU path is unchanged bit for bit; a
bf16/fp16 base trains fp32 adapters, tokens and optimiser state; chunked DC forwards and gradient
checkpointing give the numbers of the plain path; the VAE and the frozen prompts run once.

Each mixed-precision test runs on CPU everywhere and again on CUDA where a device exists (the
``gpu``-marked variants are skipped with a reason otherwise).
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from core.engine import losses as L
from core.engine.adapters import activate, ensure_slot, fresh_state, slot_parameters, write_slot
from core.engine.backbone import build_tiny_backbone, configure_runtime
from core.engine.config import TINY
from core.engine.generate import generate
from core.engine.memory import ConditionBatcher, chunked_eps, set_gradient_checkpointing
from core.engine.precision import (
    RuntimeOptions,
    resolve_precision,
    runtime_from_env,
    scaled_grads,
)
from tests.engine.test_engine_task import learn

NO_CUDA = "needs a CUDA device; the cpu variant of this test runs everywhere"
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]
    ),
]
PIN_CONFIG = TINY.with_(train_steps=4, consolidation_fraction=0.5, checkpoint_every=2)
# sha256 of default_path_digest's tensors and images with the engine as it was before the precision
# options (`git archive 5be492b core tests`, run on CPU with 2 threads): a bench run cached with
# that engine must stay valid. Another CPU (other BLAS kernels) may round differently; then
# re-record with that archive and add its digest here, naming the CPU.
PIN_DIGESTS = {
    "13a53c0cd6548169c4501868668e604060ee4d321a9bf42205e4de734dd30d3b": "the machine of 13dceca",
    "3fc68d9c14ee885843cb1251e146c7eff31535c1bba8fdfaea42054fe00d7afd": "AMD EPYC, 2 cores, torch 2.13.0",
}


def default_path_digest(cache) -> str:
    """Two DSC+EWC-DC tasks, one Custom Diffusion task, and an image of each, hashed."""
    backbone = build_tiny_backbone(seed=0)
    digest = hashlib.sha256()
    for method, count in (("dsc_ewc_dc", 2), ("custom_diffusion_ewc", 1)):
        state, _ = learn(backbone, PIN_CONFIG, cache, method=method, count=count)
        tensors = {
            **state.token_embeddings,
            **{f"a{j}.{k}": v for j, a in enumerate(state.task_adapters) for k, v in a.items()},
            **{f"f.{k}": v for k, v in (state.fisher or {}).items()},
        }
        for key in sorted(tensors):
            digest.update(key.encode())
            digest.update(tensors[key].contiguous().numpy().tobytes())
        image = generate(backbone=backbone, state=state, prompt="a photo of <thing0>", n=1, steps=3, seed=1)
        digest.update(image[0].tobytes())
    return digest.hexdigest()


def test_default_cpu_path_is_bit_for_bit_the_old_one(tmp_path):
    assert runtime_from_env(device="cpu", environ={}) == RuntimeOptions()
    assert default_path_digest(tmp_path) in PIN_DIGESTS


def test_precision_resolution_and_environment():
    assert resolve_precision("auto", device="cpu") == "fp32"
    assert resolve_precision("fp16", device="cpu") == "fp16"
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        assert resolve_precision("auto", device="cuda") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", device="cpu")
    env = {"MNEMO_PRECISION": "bf16", "MNEMO_GRADIENT_CHECKPOINTING": "1", "MNEMO_DC_CHUNK": "4"}
    assert runtime_from_env(device="cpu", environ=env) == RuntimeOptions("bf16", True, 4)


class RecordingAdamW(torch.optim.AdamW):
    """AdamW that remembers its instances, so a test can read the optimiser state of a task."""

    made: ClassVar[list[torch.optim.AdamW]] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        RecordingAdamW.made.append(self)


def mixed_backbone(precision: str, device: str):
    backbone = build_tiny_backbone(seed=0)
    for module in (backbone.unet, backbone.vae, backbone.text_encoder):
        module.to(device)
    return configure_runtime(backbone, RuntimeOptions(precision=precision))  # type: ignore[arg-type]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_task_keeps_trainables_in_fp32(precision, device, tmp_path, monkeypatch):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    backbone = mixed_backbone(precision, device)
    RecordingAdamW.made.clear()
    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    state, results = learn(backbone, PIN_CONFIG, tmp_path, method="dsc_ewc_dc", count=2)

    for module in (backbone.unet, backbone.vae, backbone.text_encoder):
        base = [p for name, p in module.named_parameters() if ".lora_" not in name]
        assert {p.dtype for p in base} == {dtype}
    assert {p.dtype for name, p in backbone.unet.named_parameters() if ".lora_" in name} == {torch.float32}
    assert set(results[-1].losses) == {"train", "dsc", "fisher"}
    assert all(torch.isfinite(torch.tensor(v)).all() for r in results for v in r.losses.values())
    trained = [*state.token_embeddings.values(), *state.task_adapters[-1].values(), *state.fisher.values()]
    assert {t.dtype for t in trained} == {torch.float32}
    assert all(torch.isfinite(t).all() for t in trained)
    assert len(RecordingAdamW.made) == 3  # train (task 1), train and DSC (task 2)
    for optimizer in RecordingAdamW.made:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        moments = [s[key] for s in optimizer.state.values() for key in ("exp_avg", "exp_avg_sq")]
        assert moments and {t.dtype for t in [*params, *moments]} == {torch.float32}
    image = generate(backbone=backbone, state=state, prompt="a photo of <thing1>", n=1, steps=2, seed=0)[0]
    assert image.size == (16, 16)


def test_scaled_grads_back_off_until_fp16_gradients_are_finite():
    weight = torch.nn.Parameter(torch.ones(3))
    objective = (weight.half() * 1000).float().sum()  # d/dw = 1000, carried in fp16 (max 65504)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    (grad,) = scaled_grads(objective, [weight], scaler=scaler)
    assert torch.equal(grad, torch.full((3,), 1000.0))
    assert scaler.get_scale() <= 64  # 1000 · S fits in fp16 only from S = 64 down
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    (plain,) = scaled_grads((weight * 3).sum(), [weight], scaler=disabled)
    assert torch.equal(plain, torch.full((3,), 3.0))


def test_fp16_loss_scaler_skips_an_overflowing_step_and_keeps_fp32_weights():
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaler.scale((weight.half() * 1000).float().sum()).backward()  # overflows in fp16 at this scale
    scaler.step(optimizer)
    scaler.update()
    assert torch.equal(weight, torch.ones(2)) and scaler.get_scale() < 2.0**16  # step skipped, backed off
    optimizer.zero_grad()
    scaler.scale(weight.sum()).backward()
    scaler.step(optimizer)
    assert weight.dtype == torch.float32 and not torch.equal(weight, torch.ones(2))


@pytest.mark.parametrize("device", DEVICES)
def test_chunked_dc_conditions_give_the_batched_fisher_and_dsc_loss(device, tmp_path):
    config = TINY.with_(train_steps=2, consolidation_fraction=1.0, checkpoint_every=100)
    runs = {}
    for chunk in (0, 1):
        backbone = build_tiny_backbone(seed=0)
        for module in (backbone.unet, backbone.vae, backbone.text_encoder):
            module.to(device)
        configure_runtime(backbone, RuntimeOptions(dc_chunk=chunk))
        runs[chunk] = learn(backbone, config, tmp_path, method="dsc_ewc_dc", count=2)
    (batched, batched_results), (chunked, chunked_results) = runs[0], runs[1]
    scale = max(value.abs().max() for value in batched.fisher.values())
    for key, value in batched.fisher.items():  # float rounding of other batch shapes, carried on
        torch.testing.assert_close(chunked.fisher[key], value, rtol=1e-3, atol=1e-3 * scale)
    for phase in ("dsc", "fisher"):
        torch.testing.assert_close(
            torch.tensor(chunked_results[-1].losses[phase]),
            torch.tensor(batched_results[-1].losses[phase]),
            rtol=1e-4,
            atol=1e-6,
        )


def test_condition_batcher_halves_its_chunk_after_an_out_of_memory():
    calls = []

    def unet(sample, timesteps, hidden):
        calls.append(sample.shape[0])
        if sample.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return type("Out", (), {"sample": sample * 2})()

    batcher = ConditionBatcher()
    rows = torch.arange(5.0).view(5, 1)
    out = batcher.eps(unet, rows, torch.zeros(5), torch.zeros(5, 1))
    assert torch.equal(out, rows * 2) and batcher.chunk == 2
    assert calls == [5, 2, 2, 1]  # 5 rows at once fail; 5 // 2 = 2 rows fit: 2 + 2 + 1
    torch.testing.assert_close(chunked_eps(unet, rows, torch.zeros(5), torch.zeros(5, 1), chunk=1), rows * 2)


def lora_gradients(backbone, *, checkpointing: bool) -> list[torch.Tensor]:
    """Gradients of Eq. 1 w.r.t. a LoRA slot and a conditioning that requires grad."""
    set_gradient_checkpointing(backbone.unet, enabled=checkpointing)
    ensure_slot(backbone.unet, "grad", config=TINY)
    write_slot(backbone.unet, "grad", fresh_state(backbone.unet, config=TINY, seed=3))
    params = slot_parameters(backbone.unet, "grad")
    activate(backbone.unet, ["grad"])
    for param in params.values():
        param.requires_grad_(True)
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn((2, 4, 8, 8), generator=generator)
    cond = torch.randn((1, 77, 32), generator=generator).requires_grad_(True)
    eps = L.batched_eps(backbone.unet, x_t, torch.tensor([10, 500]), cond)
    loss = L.denoise_loss(eps[:, 0], torch.randn(x_t.shape, generator=generator))
    grads = torch.autograd.grad(loss, [*params.values(), cond])
    activate(backbone.unet, [])
    return list(grads)


def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients():
    backbone = build_tiny_backbone(seed=0)
    calls = []
    resnet = backbone.unet.up_blocks[0].resnets[0]  # downstream of an attn2: the backward reaches it
    handle = resnet.register_forward_pre_hook(lambda *_: calls.append(1))  # recompute stops early
    plain = lora_gradients(backbone, checkpointing=False)
    plain_calls = len(calls)
    checkpointed = lora_gradients(backbone, checkpointing=True)
    handle.remove()
    assert plain_calls == 1 and len(calls) - plain_calls == 2  # forward again in the backward pass
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-8)


def test_attention_runs_on_pytorch_sdpa(backbone):
    ensure_slot(backbone.unet, "student", config=TINY)
    processors = backbone.unet.attn_processors
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values())


def test_vae_encodes_once_per_task_and_frozen_prompts_once_per_phase(tmp_path):
    backbone = build_tiny_backbone(seed=0)
    learn(backbone, PIN_CONFIG, tmp_path, method="dsc_ewc_dc", count=1)  # draws and caches the prior
    calls = {"vae": 0, "text": 0}
    encode = backbone.vae.encode

    def counted_encode(*args, **kwargs):
        calls["vae"] += 1
        return encode(*args, **kwargs)

    backbone.vae.encode = counted_encode
    backbone.text_encoder.register_forward_hook(lambda *_: calls.__setitem__("text", calls["text"] + 1))
    config = PIN_CONFIG
    state, _ = learn(backbone, config, tmp_path, method="dsc_ewc_dc", count=2)
    steps = config.train_steps * config.grad_accum
    # task 1: prior prompt, one per step (the token trains), Fisher's concept table;
    # task 2: the same and DSC's table.
    assert calls == {"vae": 2, "text": (1 + steps + 1) + (1 + steps + 1 + 1)}
    assert state.tokens == ["<thing0>", "<thing1>"]
