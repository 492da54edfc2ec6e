"""The toy preset carries what its committed measurements chose (core/engine/config.py)."""

from __future__ import annotations

import json
from pathlib import Path

from core.engine.config import TOY
from core.engine.dc_calibration import load_calibration

SWEEP = Path(__file__).resolve().parents[2] / "bench/results/sweep_toy/cl.json"


def test_the_toy_preset_takes_the_committed_sweeps_best_lambda_and_tau():
    sweep = json.loads(SWEEP.read_text())
    best = {method: result["best"] for method, result in sweep["result"].items()}
    assert sweep["preset"] == "toy" and sweep["config"]["train_steps"] == TOY.train_steps
    assert TOY.ewc_lambda == best["ewc"]["ewc_lambda"] == best["ewc_dc"]["ewc_lambda"]
    assert TOY.c_lora_lambda == best["c_lora"]["c_lora_lambda"]
    calibrated = load_calibration("toy")
    assert calibrated["dc_tau"] == sweep["config"]["dc_tau"]  # the sweep's τ factors were on this τ
    assert TOY.dc_tau == calibrated["dc_tau"] * best["ewc_dc"]["tau_factor"]
    assert TOY.teacher_tau == calibrated["teacher_tau"] * best["ewc_dc"]["tau_factor"]
