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
        "--dc-trials", "1", "--out", str(out),
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
