"""Sequential tasks, frozen tokens, trainable-parameter accounting, save/load, resume, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.engine.adapters import kv_modules
from core.engine.backbone import build_tiny_backbone
from core.engine.errors import (
    InvalidConceptError,
    InvalidImagesError,
    NonFiniteError,
    TaskCancelled,
    UnknownMethodError,
    UnknownTokenError,
)
from core.engine.generate import generate
from core.engine.methods import METHODS
from core.engine.state import UserState, load_state, save_version
from core.engine.task import run_task
from tests.engine.conftest import COLOURS, concept_images


def learn(backbone, config, prior_cache, *, method, count, state=None, start=0, **kwargs):
    state = state or UserState.empty()
    results = []
    for i in range(start, start + count):
        result = run_task(
            backbone=backbone,
            state=state,
            concept=f"thing{i}",
            class_word="dog",
            images=concept_images(COLOURS[i % 3], seed=i),
            method=method,
            config=config,
            prior_cache_dir=prior_cache,
            **kwargs,
        )
        state = result.state
        results.append(result)
    return state, results


@pytest.mark.parametrize("method", sorted(METHODS))
def test_sequential_tasks_for_every_method(backbone, config, prior_cache, method):
    count = 3 if method == "dsc_ewc_dc" else 2
    state, results = learn(backbone, config, prior_cache, method=method, count=count)
    spec = METHODS[method]
    assert state.tokens == [f"<thing{i}>" for i in range(count)]
    assert [c.task_index for c in state.concepts] == list(range(1, count + 1))
    assert len(state.task_adapters) == count
    expected_phases = (
        {"train"} | ({"dsc"} if spec.dsc else set()) | ({"fisher"} if spec.ewc != "none" else set())
    )
    assert set(results[-1].losses) == expected_phases
    assert all(np.isfinite(v) for losses in results[-1].losses.values() for v in losses)
    assert (state.fisher is not None) == (spec.ewc != "none")
    if spec.ewc != "none":
        assert all((f >= 0).all() and torch.isfinite(f).all() for f in state.fisher.values())
        assert any(f.sum() > 0 for f in state.fisher.values())
    images = generate(
        backbone=backbone, state=state, prompt="a photo of <thing0> with <thing1>", steps=2, n=2
    )
    assert len(images) == 2 and images[0].size == (16, 16)


def test_earlier_tokens_are_bit_for_bit_frozen(backbone, config, prior_cache):
    state, _ = learn(backbone, config, prior_cache, method="dsc_ewc_dc", count=1)
    before = state.token_embeddings["<thing0>"].clone()
    table_before = backbone.text_encoder.get_input_embeddings().weight.clone()
    after, _ = learn(backbone, config, prior_cache, method="dsc_ewc_dc", count=2, state=state, start=1)
    assert torch.equal(after.token_embeddings["<thing0>"], before)
    assert torch.equal(state.token_embeddings["<thing0>"], before)  # the input state is not mutated
    assert torch.equal(backbone.text_encoder.get_input_embeddings().weight, table_before)
    assert not torch.equal(after.token_embeddings["<thing1>"], after.token_embeddings["<thing2>"])


def test_tokens_are_per_user(backbone, config, prior_cache):
    alice, _ = learn(backbone, config, prior_cache, method="lora_sequential", count=1)
    bob = UserState.empty()
    with pytest.raises(UnknownTokenError) as error:
        generate(backbone=backbone, state=bob, prompt="a photo of <thing0>", steps=1)
    assert error.value.unknown == ["<thing0>"] and error.value.known == []
    assert generate(backbone=backbone, state=alice, prompt="a photo of <thing0>", steps=1)


def test_trainable_parameters_are_exactly_the_attn2_kv_lora(backbone, config, prior_cache):
    seen: dict[str, set[str]] = {}

    def progress(phase, step, total, loss):
        if step:
            names = {n for n, p in backbone.unet.named_parameters() if p.requires_grad}
            names |= {f"text:{n}" for n, p in backbone.text_encoder.named_parameters() if p.requires_grad}
            names |= {f"vae:{n}" for n, p in backbone.vae.named_parameters() if p.requires_grad}
            seen.setdefault(phase, set()).update(names)

    learn(backbone, config, prior_cache, method="dsc_ewc_dc", count=2, progress=progress)
    kv = kv_modules(backbone.unet)
    expected_count = sum(16 * (layer.in_features + layer.out_features) for layer in kv.values())
    for phase in ("train", "dsc"):
        names = seen[phase]
        assert names, phase
        assert all(".attn2.to_k.lora_" in n or ".attn2.to_v.lora_" in n for n in names), phase
        assert all(".student." in n for n in names)
        assert len(names) == 2 * len(kv)  # lora_A and lora_B of every attn2 K and V
        params = dict(backbone.unet.named_parameters())
        assert sum(params[n].numel() for n in names) == expected_count


def test_save_load_generate_gives_identical_pixels(backbone, config, prior_cache, tmp_path):
    state, _ = learn(backbone, config, prior_cache, method="dsc_ewc_dc", count=2)
    dirs = []
    for n in (1, 2):
        partial = UserState(
            concepts=state.concepts[:n],
            token_embeddings={c.token: state.token_embeddings[c.token] for c in state.concepts[:n]},
            task_adapters=state.task_adapters[:n],
            fisher=state.fisher,
            method=state.method,
            adapter_type=state.adapter_type,
        )
        files = save_version(partial, tmp_path / f"v{n}")
        assert set(files) >= {"adapter.safetensors", "tokens.safetensors", "fisher.safetensors", "state.json"}
        dirs.append(tmp_path / f"v{n}")
    loaded = load_state(dirs)
    assert loaded.tokens == state.tokens
    for a, b in zip(loaded.task_adapters, state.task_adapters, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    kwargs = dict(prompt="a photo of <thing1>", n=2, steps=3, seed=7)
    original = generate(backbone=backbone, state=state, **kwargs)
    reloaded = generate(backbone=backbone, state=loaded, **kwargs)
    assert [np.asarray(i).tobytes() for i in original] == [np.asarray(i).tobytes() for i in reloaded]
    other_seed = generate(backbone=backbone, state=loaded, **{**kwargs, "seed": 8})
    assert np.asarray(other_seed[0]).tobytes() != np.asarray(original[0]).tobytes()


@pytest.mark.parametrize("stop_phase", ["train", "dsc", "fisher"])
def test_resume_from_checkpoint_equals_uninterrupted_run(backbone, config, prior_cache, tmp_path, stop_phase):
    config = config.with_(train_steps=6, consolidation_fraction=0.5)  # 6 train, 3 DSC, 3 Fisher steps
    first, _ = learn(backbone, config, prior_cache, method="dsc_ewc_dc", count=1)
    kwargs = dict(
        backbone=backbone,
        state=first,
        concept="second",
        class_word="cat",
        images=concept_images(COLOURS[1]),
        method="dsc_ewc_dc",
        config=config,
        prior_cache_dir=prior_cache,
    )
    uninterrupted = run_task(**kwargs).state
    calls = {"phase": None}

    def progress(phase, step, total, loss):
        calls["phase"] = phase
        calls["step"] = step

    def should_stop():
        return calls["phase"] == stop_phase and calls.get("step") == 2  # just after the step-2 checkpoint

    ckpt = tmp_path / "ckpt"
    with pytest.raises(TaskCancelled):
        run_task(**kwargs, progress=progress, should_stop=should_stop, checkpoint_dir=ckpt)
    assert (ckpt / "task.ckpt").exists()
    resumed_steps = []
    resumed = run_task(
        **kwargs,
        checkpoint_dir=ckpt,
        progress=lambda phase, step, total, loss: resumed_steps.append((phase, step)),
    ).state
    assert (stop_phase, 1) not in resumed_steps  # it really resumed mid-phase
    assert not (ckpt / "task.ckpt").exists()
    for key in uninterrupted.task_adapters[-1]:
        assert torch.equal(uninterrupted.task_adapters[-1][key], resumed.task_adapters[-1][key]), key
    assert torch.equal(uninterrupted.token_embeddings["<second>"], resumed.token_embeddings["<second>"])
    for key in uninterrupted.fisher:
        assert torch.equal(uninterrupted.fisher[key], resumed.fisher[key]), key


def test_vera_adapter_option(config, prior_cache):
    """VeRA is a per-deployment choice: its backbone never holds LoRA slots."""
    backbone = build_tiny_backbone(seed=0)
    vera = config.with_(adapter_type="vera", vera_rank=8)
    state, _ = learn(backbone, vera, prior_cache, method="ewc_dc", count=2)
    assert state.adapter_type == "vera"
    assert all("vera_lambda" in key for key in state.task_adapters[-1])
    assert generate(backbone=backbone, state=state, prompt="<thing0> and <thing1>", steps=2)


def test_bad_input_raises_typed_errors(backbone, config, prior_cache):
    base = dict(backbone=backbone, state=UserState.empty(), concept="ok", class_word=None, config=config)
    with pytest.raises(InvalidImagesError, match="at least one image"):
        run_task(**base, images=[])
    with pytest.raises(InvalidImagesError, match="not a decoded image"):
        run_task(**base, images=[b"\x89PNG garbage"])
    with pytest.raises(InvalidImagesError, match="at least"):
        run_task(**base, images=[Image.new("RGB", (2, 2))])
    with pytest.raises(UnknownMethodError, match="dsc_ewc_dc"):
        run_task(**base, images=concept_images(COLOURS[0]), method="nope")
    with pytest.raises(InvalidConceptError, match="slug"):
        run_task(**{**base, "concept": "../etc"}, images=concept_images(COLOURS[0]))
    state, _ = learn(backbone, config, prior_cache, method="lora_sequential", count=1)
    with pytest.raises(InvalidConceptError, match="already has"):
        run_task(**{**base, "state": state, "concept": "thing0"}, images=concept_images(COLOURS[0]))
    with pytest.raises(InvalidConceptError, match="cannot continue"):
        run_task(**{**base, "state": state}, images=concept_images(COLOURS[0]), method="c_lora")
    with pytest.raises(UnknownTokenError, match="<thing0>"):
        generate(backbone=backbone, state=state, prompt="<thing0> next to <nobody>", steps=1)


def test_nan_never_returns_a_state(backbone, config, prior_cache):
    broken = config.with_(lora_lr=float("nan"))
    with pytest.raises(NonFiniteError):
        learn(backbone, broken, prior_cache, method="lora_sequential", count=1)


def test_prepare_progress_moves_while_the_prior_is_drawn_and_ends_at_its_total(backbone, config, tmp_path):
    """A fresh prior cache: "prepare" counts the encode, each prior batch, and ends at total."""
    config = config.with_(prior_images=12)  # two prior batches of at most 8
    calls: list[tuple[str, int, int]] = []
    learn(
        backbone,
        config,
        tmp_path / "fresh-prior",
        method="lora_sequential",
        count=1,
        progress=lambda phase, step, total, loss: calls.append((phase, step, total)),
    )
    prepare = [(step, total) for phase, step, total in calls if phase == "prepare"]
    assert prepare == [(0, 14), (1, 14), (9, 14), (13, 14), (14, 14)]
    last = {phase: (step, total) for phase, step, total in calls}
    assert all(step == total for step, total in last.values())  # every phase ends at its total
