"""An export loaded into a plain diffusers ``StableDiffusionPipeline`` paints Mnemo's pixels.

The backbone is a tiny SD folder written here; each user state is published as the worker
publishes it, exported through ``GET /v1/adapters/{version}/export``, and the zip's LoRA
(diffusers or kohya format) and textual-inversion files are loaded with ``load_lora_weights``
and ``load_textual_inversion``. With the same seed, DDIM scheduler, steps and guidance, the
pipeline's image must equal the one of Mnemo's generation path (``load_state`` of the version
directories, then ``core.engine.generate``, as ``worker.generation`` does) within one level of
8-bit rounding, for one trained LoRA, C-LoRA's sum, LoRA merge's mean, Custom Diffusion's K/V
delta and plain textual inversion. Every LoRA key of the file must load (no "No LoRA keys" warning
for the UNet); the adapters must matter (the image without them is far off).
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from core.db.jobs.lineage import lineage
from core.engine.backbone import Backbone, build_tiny_backbone, load_backbone
from core.engine.generate import generate
from core.engine.state import UserState, load_state
from core.storage import LocalStore
from tests.export_support import publish_all, states_after_each_task

torch.set_num_threads(2)
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
STEPS, SEED, GUIDANCE = 3, 11, 7.5
CASES = {  # method -> (adapter kind, concepts)
    "dsc_ewc_dc": ("lora", ["dog"]),
    "c_lora": ("lora", ["dog", "cat"]),
    "lora_merge": ("lora", ["dog", "cat"]),
    "custom_diffusion": ("kv", ["dog", "cat"]),
    "textual_inversion": ("none", ["dog", "cat"]),
}


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.x-architecture diffusers folder (model_index.json and the five components)."""
    tiny = build_tiny_backbone(seed=0)
    folder = tmp_path_factory.mktemp("backbone") / "tiny-sd"
    StableDiffusionPipeline(
        vae=tiny.vae,
        text_encoder=tiny.text_encoder,
        tokenizer=tiny.tokenizer,
        unet=tiny.unet,
        scheduler=tiny.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def backbone(sd_folder: Path) -> Backbone:
    """Mnemo's backbone loaded from that folder (``MNEMO_BACKBONE=<folder>``)."""
    return load_backbone(str(sd_folder))


def prompt_for(concepts: list[str]) -> str:
    return "a photo of " + " and ".join(f"<{name}>" for name in concepts) + " on a table"


def mnemo_image(backbone: Backbone, state: UserState, prompt: str) -> np.ndarray:
    image = generate(
        backbone=backbone, state=state, prompt=prompt, steps=STEPS, guidance_scale=GUIDANCE, seed=SEED
    )
    return np.asarray(image[0]).astype(int)


@contextmanager
def diffusers_log() -> io.StringIO:
    """What diffusers logs (its loggers do not propagate to the root logger)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def plain_pipeline(sd_folder: Path) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(
        sd_folder, safety_checker=None, requires_safety_checker=False
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_image(pipe: StableDiffusionPipeline, prompt: str) -> np.ndarray:
    generator = torch.Generator().manual_seed(SEED)
    image = pipe(prompt, num_inference_steps=STEPS, guidance_scale=GUIDANCE, generator=generator).images[0]
    return np.asarray(image).astype(int)


def export_zip(api, version_id: str, folder: Path, *, headers: dict[str, str]) -> dict:  # type: ignore[no-untyped-def]
    """GET the export, unpack it into ``folder``; its card."""
    answer = api.client.get(f"/v1/adapters/{version_id}/export", headers=headers)
    assert answer.status_code == 200, answer.text
    zipfile.ZipFile(io.BytesIO(answer.content)).extractall(folder)
    return json.loads((folder / "card.json").read_text())


def assert_every_unet_key_loaded(pipe: StableDiffusionPipeline, lora_file: Path) -> None:
    """Each ``unet.<module>.lora_A/B.weight`` of the file is the pipeline UNet's tensor, and the
    UNet has no other LoRA tensors."""
    (adapter,) = pipe.get_list_adapters()["unet"]
    loaded = {
        name.replace(f".{adapter}.", "."): param
        for name, param in pipe.unet.named_parameters()
        if ".lora_" in name
    }
    stored = {key.removeprefix("unet."): tensor for key, tensor in load_file(str(lora_file)).items()}
    assert set(loaded) == set(stored)
    for key, tensor in stored.items():
        assert torch.equal(loaded[key].detach(), tensor), key


def assert_every_module_loaded(pipe: StableDiffusionPipeline, card: dict) -> None:
    """The pipeline's UNet has a LoRA on exactly the card's modules (either file format)."""
    wrapped = {name for name, module in pipe.unet.named_modules() if isinstance(module, LoraLayer)}
    assert wrapped == set(card["lora"]["modules"])


def load_export(pipe: StableDiffusionPipeline, folder: Path, card: dict, *, lora_format: str) -> str:
    """Load the zip's LoRA (if any) and every token's embedding; returns diffusers' log."""
    with diffusers_log() as log:
        if card["lora"] is not None:
            if lora_format == "diffusers":
                pipe.load_lora_weights(folder / "diffusers")
            else:
                kohya = Path(card["lora"]["kohya"])
                pipe.load_lora_weights(folder / kohya.parent, weight_name=kohya.name)
        for entry in card["tokens"]:
            pipe.load_textual_inversion(folder / entry["file"], token=entry["token"])
    return log.getvalue()


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("method", "lora_format"),
    [(m, f) for m in CASES for f in ("diffusers", "kohya") if CASES[m][0] != "none" or f == "diffusers"],
)
def test_an_exported_adapter_gives_mnemos_pixels_in_plain_diffusers(
    api, backbone: Backbone, sd_folder: Path, tmp_path: Path, method: str, lora_format: str
) -> None:  # type: ignore[no-untyped-def]
    kind, concepts = CASES[method]
    user_id, headers = api.user("alice")
    states = states_after_each_task(backbone, method=method, concepts=concepts, kind=kind)
    store = LocalStore(api.settings.data_dir)
    versions = publish_all(api.session_factory, store, user_id=user_id, states=states)
    card = export_zip(api, versions[-1], tmp_path / "export", headers=headers)

    with api.session_factory() as session:
        paths = [store.resolve(v.path) for v in lineage(session, head_id=versions[-1])]
    state = load_state(paths)  # as the worker rebuilds it for /v1/generate
    prompt = prompt_for(concepts)
    ours = mnemo_image(backbone, state, prompt)

    pipe = plain_pipeline(sd_folder)
    log = load_export(pipe, tmp_path / "export", card, lora_format=lora_format)
    theirs = diffusers_image(pipe, prompt)

    # "No LoRA keys" may be said of the text encoder (Mnemo never adapts it), never of the UNet
    warned = [line for line in log.splitlines() if "No LoRA keys" in line]
    assert all("CLIPTextModel" in line for line in warned), log
    if card["lora"] is not None:
        assert_every_module_loaded(pipe, card)
    if card["lora"] is not None and lora_format == "diffusers":
        assert_every_unet_key_loaded(pipe, tmp_path / "export" / card["lora"]["diffusers"])
    for entry in card["tokens"]:
        row = pipe.text_encoder.get_input_embeddings().weight[
            pipe.tokenizer.convert_tokens_to_ids(entry["token"])
        ]
        assert torch.equal(row, state.token_embeddings[entry["token"]])
    difference = np.abs(theirs - ours)
    print(f"{method} {lora_format}: max |Δ pixel| = {difference.max()}, mean {difference.mean():.4f}")
    assert difference.max() <= 1, difference.max()
    if kind != "none":
        without = mnemo_image(backbone, replace(state, task_adapters=()), prompt)
        assert np.abs(without - ours).max() > 20  # the adapter matters: the equality above has power
