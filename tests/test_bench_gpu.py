"""`mnemo bench gpu` cannot rot: its CPU path (the tiny config) runs in CI and writes the JSON a GPU
run writes; the real-size run is a ``gpu`` test, skipped without a CUDA device. The committed
SD v1.4 configs give the published parameter counts (built on the meta device: no memory, no
download)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench.gpu import CONFIGS, METHODS, PAPER_SCHEDULE
from core.cli.main import build_parser


def run_bench(tmp_path, *extra: str) -> dict:
    out = tmp_path / "gpu.json"
    args = build_parser().parse_args(["bench", "gpu", *extra, "--out", str(out)])
    assert args.handler(args) == 0
    return json.loads(out.read_text())


def check_report(report: dict, *, methods: tuple[str, ...] = METHODS) -> None:
    assert report["complete"] and "stopped" not in report
    assert set(report["methods"]) == set(methods)
    for method, row in report["methods"].items():
        per_it = row["seconds_per_iteration"]
        assert set(per_it) == {"train"} | ({"dsc"} if "dsc" in method else set()) | (
            {"fisher"} if "ewc" in method else set()
        )
        assert all(math.isfinite(s) and s > 0 for s in per_it.values())
        for ratio, phase in (("ewc_dc_over_train", "fisher"), ("dsc_over_train", "dsc")):
            if phase in per_it:
                assert math.isfinite(row[ratio]) and math.isclose(row[ratio], per_it[phase] / per_it["train"])
        projected = sum(PAPER_SCHEDULE[p] * s for p, s in per_it.items())
        assert math.isclose(row["whole_task_seconds_paper_schedule"], projected)


def test_cpu_smoke_writes_every_field(tmp_path):
    report = run_bench(tmp_path, "--cpu-smoke")
    assert report["arch"] == "tiny" and report["precision"] == "fp32" and report["batch"] == 1
    assert report["fraction_of_paper_schedule"] == {"train": 2 / 1000, "dsc": 2 / 200, "fisher": 2 / 200}
    assert report["targets"]["ewc_dc_over_train"] == 2.5 and report["wall_seconds"] > 0
    check_report(report)


def test_time_budget_stops_the_run_and_keeps_what_it_measured(tmp_path):
    report = run_bench(tmp_path, "--cpu-smoke", "--time-budget", "0")
    assert not report["complete"] and report["stopped"].startswith("time budget reached")
    assert report["methods"] == {} and report["arch"] == "tiny"


def test_sd14_configs_are_the_published_architecture():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = {
        p: json.loads((CONFIGS / "sd14" / f"{p}.json").read_text()) for p in ("unet", "vae", "text_encoder")
    }
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        text = configs["text_encoder"]
        encoder = CLIPTextModel(
            CLIPTextConfig.from_dict({k: v for k, v in text.items() if not k.startswith("_")})
        )
    counts = [sum(p.numel() for p in m.parameters()) for m in (unet, vae, encoder)]
    assert counts == [859_520_964, 83_653_863, 123_060_480]  # SD v1.4's UNet, VAE, CLIP ViT-L/14 text


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device; test_cpu_smoke runs everywhere"
)
def test_sd14_on_the_gpu_within_the_budget(tmp_path):
    report = run_bench(tmp_path, "--device", "cuda", "--iterations", "5", "--methods", "dsc_ewc_dc")
    check_report(report, methods=("dsc_ewc_dc",))
    assert report["methods"]["dsc_ewc_dc"]["peak_gpu_memory_gb"] > 0 and report["wall_seconds"] < 480
