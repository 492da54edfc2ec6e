"""τ calibration of the DC scores (Eq. 3): bisection on log τ to a teacher top-1 probability."""

from __future__ import annotations

import json

import pytest
import torch

from bench.calibrate import calibration_record, teacher_errors
from core.engine.dc_calibration import calibrate_tau, load_calibration, mean_top1, write_calibration
from core.engine.state import UserState
from core.engine.task import run_task
from tests.engine.conftest import COLOURS, concept_images


def _errors(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(64, 3, generator=g, dtype=torch.float64) * 1e-3  # mean-reduced errors are small


def test_mean_top1_by_hand_and_monotone_in_tau():
    errors = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    # τ = 1: top-1 of softmax(0, −1) is σ(1), of softmax(−2, 0) is σ(2)
    expected = (torch.sigmoid(torch.tensor(1.0)) + torch.sigmoid(torch.tensor(2.0))).item() / 2
    assert mean_top1(errors, tau=1.0) == pytest.approx(expected)
    values = [mean_top1(_errors(), tau=t) for t in (1e-6, 1e-5, 1e-4, 1e-3, 1.0)]
    assert values == sorted(values, reverse=True)
    assert values[-1] == pytest.approx(1 / 3, abs=1e-3)  # τ = 1 on mean-reduced errors: uniform


@pytest.mark.parametrize("target", [0.5, 0.8, 0.95])
def test_calibrated_tau_hits_the_target(target):
    errors = _errors()
    tau = calibrate_tau(errors, target=target)
    assert mean_top1(errors, tau=tau) == pytest.approx(target, abs=1e-6)
    assert tau < 1.0  # far below the paper's τ = 1 for per-element errors of ~1e-3


def test_calibration_scales_with_the_errors():
    errors = _errors()
    assert calibrate_tau(errors * 1000) == pytest.approx(1000 * calibrate_tau(errors), rel=1e-6)


def test_unreachable_target_is_a_clear_error():
    with pytest.raises(ValueError, match="outside"):
        calibrate_tau(_errors(), target=0.2)  # below 1/k = 1/3
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        calibrate_tau(_errors(), target=1.0)


def test_recorded_calibration_round_trip(tmp_path):
    with pytest.raises(ValueError, match="command"):
        write_calibration(
            {"dc_tau": 1.0, "teacher_tau": 1.0, "dc_reduction": "mean"}, path=tmp_path / "x.json"
        )
    record = {"dc_tau": 2e-3, "teacher_tau": 1e-3, "dc_reduction": "mean", "command": "c", "weights": "w"}
    write_calibration(record, path=tmp_path / "dc_calibration_demo.json")
    assert load_calibration("demo", directory=tmp_path) == {
        "dc_tau": 2e-3,
        "teacher_tau": 1e-3,
        "dc_reduction": "mean",
    }
    assert load_calibration("missing", directory=tmp_path) == {}


def test_teacher_errors_on_the_tiny_backbone_calibrate(backbone, config, prior_cache):
    state = UserState.empty()
    for i in range(2):
        state = run_task(
            backbone=backbone,
            state=state,
            concept=f"cal{i}",
            class_word="dog",
            images=concept_images(COLOURS[i], seed=i),
            method="lora_sequential",
            config=config,
            prior_cache_dir=prior_cache,
        ).state
    images = concept_images(COLOURS[1], seed=1)
    errors = teacher_errors(backbone=backbone, state=state, images=images, trials=4, reduction="mean", seed=0)
    assert errors.shape == (4 * len(images), 3)  # {c0, c_n, c_{n-1}} per (trial, image)
    record = calibration_record(errors, target=0.8, student_target=0.6)
    assert record["teacher_top1"] == pytest.approx(0.8, abs=1e-6)
    assert record["student_top1"] == pytest.approx(0.6, abs=1e-6)
    assert record["dc_tau"] > record["teacher_tau"]
    json.dumps(record)  # serialisable as written by `mnemo bench calibrate`


def test_dc_accuracy_errors_depend_on_the_methods_adapter(backbone, config, prior_cache):
    """Fig. 7's probe reads the state's adapters: same tokens, adapter zeroed -> other errors."""
    from dataclasses import replace

    from core.engine.data import encode_latents, to_pixels
    from core.engine.metrics.dc_accuracy import dc_error_samples

    state = run_task(
        backbone=backbone,
        state=UserState.empty(),
        concept="probe",
        class_word="dog",
        images=concept_images(COLOURS[0], seed=0),
        method="lora_sequential",
        config=config.with_(lora_lr=5e-2),
        prior_cache_dir=prior_cache,
    ).state
    zeroed = replace(
        state,
        task_adapters=tuple({k: torch.zeros_like(v) for k, v in a.items()} for a in state.task_adapters),
    )
    latents = encode_latents(backbone, to_pixels(concept_images(COLOURS[0]), resolution=16, hflip=False))
    kwargs = {"latents": latents, "prompts": ["a photo of a dog", "a photo of <probe>"], "trials": 2}
    with_adapter = dc_error_samples(backbone=backbone, state=state, reduction="mean", seed=0, **kwargs)
    without = dc_error_samples(backbone=backbone, state=zeroed, reduction="mean", seed=0, **kwargs)
    assert not torch.allclose(with_adapter, without)
