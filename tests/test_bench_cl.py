"""Smoke test of ``mnemo bench cl`` on the tiny backbone: outputs exist, numbers are consistent."""

from __future__ import annotations

import json
import math
import random

import pytest
from PIL import Image, ImageDraw

from core.cli.main import build_parser
from core.engine.metrics import a_mmd, bwt_mmd, f_mmd
from core.engine.metrics.report import to_matrix

METHODS = "lora_sequential,dsc_ewc_dc"


@pytest.fixture(scope="module")
def concepts_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("concepts")
    for index, (name, color) in enumerate((("red-square", (220, 30, 30)), ("blue-disc", (30, 30, 220)))):
        folder = root / f"{index}_{name}"
        folder.mkdir()
        for k in range(3):
            image = Image.new("RGB", (32, 32), (240, 240, 240))
            draw = ImageDraw.Draw(image)
            o = random.Random(k).randint(2, 8)
            (draw.rectangle if index == 0 else draw.ellipse)([o, o, o + 18, o + 18], fill=color)
            image.save(folder / f"{k}.png")
    return root


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(["bench", "cl", *argv])
    return args.handler(args)


@pytest.fixture(scope="module")
def bench_out(concepts_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cl")
    argv = [
        "--backbone", "tiny", "--concepts", str(concepts_dir), "--methods", METHODS, "--seeds", "0",
        "--steps", "1", "--n-eval", "2", "--gen-steps", "1", "--features", "random-proxy",
        "--dc-trials", "1", "--out", str(out), "--ewc-dc-lambda", "0.7",
    ]  # fmt: skip
    assert _run(argv) == 0
    return out, argv


def test_outputs_exist_and_are_consistent(bench_out):
    out, _ = bench_out
    for name in ("table.md", "evolution.png", "forgetting.png", "samples.png", "results.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["features"] == "random-proxy" and results["methods"] == METHODS.split(",")
    table = (out / "table.md").read_text()
    assert "random-proxy" in table and "| lora_sequential |" in table and "| dsc_ewc_dc |" in table
    for method in METHODS.split(","):
        (record,) = results["runs"][method]
        to_real, drift = to_matrix(record["to_real"]), to_matrix(record["drift"])
        assert len(to_real) == 2 and math.isnan(to_real[0][1])
        assert all(math.isfinite(v) for v in (to_real[0][0], to_real[1][0], to_real[1][1], drift[1][0]))
        final = results["summary"][method]["final"]
        # every summary number is recomputable from the raw matrices (Eqs. 7-9)
        assert final["f_mmd"]["mean"] == pytest.approx(f_mmd(drift))
        assert final["a_mmd"]["mean"] == pytest.approx(a_mmd(to_real))
        assert final["bwt_mmd"]["mean"] == pytest.approx(bwt_mmd(to_real))
        assert 0.0 <= record["dc_accuracy"]["overall"] <= 1.0
        assert record["n_param_train_pct"] > 0 and record["n_param_store_pct"] > 100
    # the λ flag of EWC-DC reaches dsc_ewc_dc only, and is part of its cache key
    assert results["method_lambdas"]["dsc_ewc_dc"]["ewc_lambda"] == 0.7
    assert results["runs"]["dsc_ewc_dc"][0]["fingerprint"]["config"]["ewc_lambda"] == 0.7
    assert results["runs"]["lora_sequential"][0]["fingerprint"]["mmd"].startswith("unbiased")
    # every difference against sequential LoRA has a paired bootstrap interval
    diff = results["differences_vs_lora_sequential"]["dsc_ewc_dc"]["a_mmd"]
    assert diff["units"] == 2 and diff["low"] <= diff["diff"] <= diff["high"]
    assert "Differences against `lora_sequential`" in table
    runs = results["runs"]
    # DSC keeps every task's LoRA (its teacher 2) and EWC a Fisher: it stores more than sequential LoRA
    assert runs["dsc_ewc_dc"][0]["params"]["stored"] > runs["lora_sequential"][0]["params"]["stored"]


def test_rerun_resumes_from_cache(bench_out, capsys):
    out, argv = bench_out
    before = json.loads((out / "results.json").read_text())["runs"]
    assert _run([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert "cached" in captured.err
    summary = json.loads(captured.out)
    assert set(summary["summary"]) == set(METHODS.split(","))
    assert json.loads((out / "results.json").read_text())["runs"] == before


def test_bad_input_is_a_clear_error(concepts_dir, tmp_path, capsys):
    assert _run(["--backbone", "tiny", "--concepts", str(concepts_dir), "--methods", "nope"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert _run(["--backbone", "tiny", "--concepts", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cached_only_reports_without_running(bench_out, tmp_path, capsys):
    out, argv = bench_out
    assert _run([*argv, "--cached-only", "--seeds", "0,1"]) == 0
    assert "not run yet" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in results["runs"]["lora_sequential"]] == [0]
    empty = [*argv[: argv.index("--out")], "--out", str(tmp_path / "empty"), "--cached-only"]
    assert _run(empty) == 1
    assert "no finished runs" in capsys.readouterr().err


def test_fisher_top_eigenvalues_from_the_gram_matrix():
    import torch

    from bench.sanity import top_eigenvalues

    # F = 1/S sum g g^T with g1 = (1, 0, 0), g2 = (0, 2, 0): eigenvalues 4/2, 1/2, 0
    grads = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert top_eigenvalues(grads, k=5) == pytest.approx([2.0, 0.5])
    g = torch.randn(4, 30, generator=torch.Generator().manual_seed(0))
    explicit = torch.linalg.eigvalsh(g.double().T @ g.double() / 4).flip(0)[:3]
    assert top_eigenvalues(g, k=3) == pytest.approx(explicit.tolist(), rel=1e-9, abs=1e-12)


def test_sd14_gpu_fails_clearly_without_local_weights(tmp_path, capsys):
    from bench.sd14_gpu import main

    assert main([]) == 2
    assert "no local SD v1.4 weights" in capsys.readouterr().err
    assert main(["--weights", str(tmp_path)]) == 2
    assert "missing: unet" in capsys.readouterr().err


def test_consolidation_flags_reach_the_right_methods():
    from bench.cl import method_config, preset_config

    argv = ["bench", "cl", "--ewc-lambda", "0.5", "--ewc-dc-lambda", "2", "--c-lora-lambda", "3"]
    args = build_parser().parse_args(
        [*argv, "--dc-tau", "1e-3", "--teacher-tau", "5e-4", "--dc-reduction", "sum"]
    )
    assert args.n_eval == 24
    config = preset_config(args, "toy")
    assert (config.dc_tau, config.teacher_tau, config.dc_reduction) == (1e-3, 5e-4, "sum")
    lambdas = {
        m: method_config(config, m, args) for m in ("ewc", "dsc_ewc", "ewc_dc", "dsc_ewc_dc", "c_lora")
    }
    assert [lambdas[m].ewc_lambda for m in ("ewc", "dsc_ewc", "ewc_dc", "dsc_ewc_dc")] == [0.5, 0.5, 2.0, 2.0]
    assert lambdas["c_lora"].c_lora_lambda == 3.0
    untouched = method_config(config, "lora_sequential", args)
    assert untouched == config


def test_drift_of_identical_sample_sets_is_zero_not_a_negative_estimate():
    import torch

    from bench.cl import drift_mmd
    from core.engine.metrics import mmd

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert drift_mmd(x, x.clone(), same_task=False) == 0.0
    assert mmd(x, x) < 0.0  # what the U-statistic would have said
    assert drift_mmd(x, y, same_task=True) == 0.0
    assert drift_mmd(x, y, same_task=False) == pytest.approx(mmd(x, y))


def test_sanity_probe_regresses_the_schedulers_target():
    """Fig. 6 on a v-prediction model must compare with v, as training does (not with ε)."""
    import torch
    from diffusers import DDPMScheduler

    from bench.sanity import noisy_sample

    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    for prediction in ("epsilon", "v_prediction"):
        scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction)
        x_t, target, t = noisy_sample(scheduler, x0, generator=torch.Generator().manual_seed(0), n_steps=1000)
        g = torch.Generator().manual_seed(0)
        t_ref = torch.randint(0, 1000, (1,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        assert torch.equal(t, t_ref) and torch.allclose(x_t, scheduler.add_noise(x0, eps, t))
        expected = scheduler.get_velocity(x0, eps, t) if prediction == "v_prediction" else eps
        assert torch.allclose(target, expected)
    assert not torch.allclose(target, eps)  # v differs from ε


def test_sweep_gives_every_method_the_same_budget():
    from bench.sweep import apply, budgeted, method_grid
    from core.engine.config import TOY

    lambdas, taus = [0.1, 1.0, 10.0], [0.5, 1.0, 2.0]
    grids = {
        m: method_grid(m, lambdas=lambdas, taus=taus)
        for m in ("ewc", "ewc_dc", "dsc_ewc_dc", "c_lora", "dsc")
    }
    assert len(grids["ewc"]) == 3 and len(grids["dsc_ewc_dc"]) == 9 and len(grids["dsc"]) == 3
    assert method_grid("lora_sequential", lambdas=lambdas, taus=taus) == [{}]  # nothing to tune
    sampled = {m: budgeted(g, budget=3, seed=0) for m, g in grids.items()}
    assert {len(v) for v in sampled.values()} == {3}
    assert budgeted(grids["dsc_ewc_dc"], budget=3, seed=0) == sampled["dsc_ewc_dc"]  # seeded
    tuned = apply(TOY, {"ewc_lambda": 10.0, "tau_factor": 2.0})
    assert (
        tuned.ewc_lambda == 10.0
        and tuned.dc_tau == 2 * TOY.dc_tau
        and tuned.teacher_tau == 2 * TOY.teacher_tau
    )


def _bench(name: str, argv: list[str]) -> int:
    args = build_parser().parse_args(["bench", name, *argv])
    return args.handler(args)


def test_sweep_and_calibrate_commands_on_the_tiny_backbone(concepts_dir, tmp_path, capsys):
    common = ["--backbone", "tiny", "--concepts", str(concepts_dir), "--steps", "1"]
    movement_args = [*common, "--methods", "ewc_dc", "--lambdas", "0,1", "--out", str(tmp_path)]
    assert _bench("sweep", ["--mode", "movement", *movement_args]) == 0
    movement = json.loads((tmp_path / "movement.json").read_text())
    entry = movement["result"]["methods"]["ewc_dc"]
    assert entry["fisher_mean_normalised"] == pytest.approx(1.0)
    assert set(entry["by_lambda"]) == {"0.0", "1.0"} and movement["command"].startswith("mnemo bench")
    tuning = [*common, "--mode", "cl", "--methods", "lora_sequential,ewc", "--lambdas", "0.1,1,10"]
    tuning += ["--budget", "2", "--n-eval", "2", "--gen-steps", "1", "--features", "random-proxy"]
    assert _bench("sweep", [*tuning, "--out", str(tmp_path)]) == 0
    swept = json.loads((tmp_path / "cl.json").read_text())["result"]
    partial = json.loads((tmp_path / "cl.partial.json").read_text())  # written after every trial
    assert len(partial["ewc"]["trials"]) == 2 and "best" not in partial["ewc"]
    assert swept["ewc"]["budget"] == 2 and len(swept["ewc"]["trials"]) == 2
    assert swept["lora_sequential"]["budget"] == 1 and swept["ewc"]["best"] in [
        t["point"] for t in swept["ewc"]["trials"]
    ]
    out = tmp_path / "calibration.json"
    assert _bench("calibrate", [*common, "--trials", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["teacher_top1"] == pytest.approx(0.8, abs=1e-6) and record["dc_reduction"] == "mean"
    assert record["weights"] and record["command"].startswith("mnemo bench")  # from sys.argv
    capsys.readouterr()


def test_generate_chunked_passes_the_engines_limit_and_keeps_the_first_chunk():
    """24 evaluation images (issue 18: >= 24 per concept) are more than one ``generate`` call
    allows (16): the benches draw them in chunks, the first chunk a plain ``generate``."""
    import numpy as np

    from bench.cl import GENERATE_CHUNK, generate_chunked
    from core.engine.backbone import build_tiny_backbone
    from core.engine.generate import generate
    from core.engine.state import UserState

    backbone = build_tiny_backbone(seed=0)
    common = {"backbone": backbone, "state": UserState.empty(), "prompt": "a photo of a dog", "steps": 1}
    many = generate_chunked(n=GENERATE_CHUNK + 2, seed=3, guidance_scale=1.0, **common)
    first = generate(n=GENERATE_CHUNK, seed=3, guidance_scale=1.0, **common)
    assert len(many) == GENERATE_CHUNK + 2
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(many, first, strict=False))
