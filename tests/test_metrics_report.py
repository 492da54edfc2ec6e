"""Table 1 / Fig. 12 aggregation from raw per-run matrices, and the plot writers."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from core.engine.metrics import report


def _record(seed: int, offset: float) -> dict:
    return {
        "seed": seed,
        "to_real": [[1.0 + offset, None], [3.0 + offset, 2.0 + offset]],
        "drift": [[0.0, None], [0.5 + offset, 0.0]],
        "kid": [[1e-5, None], [3e-5, 5e-5]],
        "i2i": [[80.0, None], [60.0, 70.0]],
        "n_param_train_pct": 0.09,
        "n_param_store_pct": 100.54,
        "dc_accuracy": {"overall": 0.5 + offset},
    }


def test_run_curves_follow_eqs_7_to_9():
    curves = report.run_curves(_record(0, 0.0))
    assert curves["a_mmd"] == pytest.approx([1.0, 2.5])
    assert math.isnan(curves["bwt_mmd"][0]) and curves["bwt_mmd"][1] == pytest.approx(1.0 - 3.0)
    assert curves["f_mmd"][1] == pytest.approx(0.5)
    assert curves["kid"] == pytest.approx([1e-5, 4e-5])
    assert curves["i2i"] == pytest.approx([80.0, 65.0])


def test_aggregate_mean_and_sample_std_over_seeds():
    agg = report.aggregate([_record(0, 0.0), _record(1, 0.2)])
    assert agg["seeds"] == [0, 1]
    assert agg["final"]["a_mmd"]["mean"] == pytest.approx(2.6)
    # sample std of {2.5, 2.7}
    assert agg["final"]["a_mmd"]["std"] == pytest.approx(0.2 / math.sqrt(2))
    assert agg["final"]["dc_accuracy"]["mean"] == pytest.approx(0.6)
    assert agg["per_task"]["bwt_mmd"][0]["mean"] is None


def test_markdown_table_scales_and_names_the_extractor():
    summary = {"lora_sequential": report.aggregate([_record(0, 0.0)])}
    table = report.markdown_table(summary, extractor="random-proxy", caption="Caption.")
    assert "random-proxy" in table and table.startswith("Caption.")
    row = next(line for line in table.splitlines() if line.startswith("| lora_sequential"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # seeds, N train, N store, KID x1e5, A_MMD x1e3, BwT x1e3, I2I, F x1e3, DC acc %
    assert cells[1:] == ["1", "0.090", "100.54", "4.00", "2500.00", "-2000.00", "65.00", "500.000", "50.0"]


def test_plots_and_grid_are_written(tmp_path):
    summary = {m: report.aggregate([_record(0, 0.0), _record(1, 0.1)]) for m in ("a", "b")}
    report.plot_evolution(summary, tmp_path / "evolution.png", extractor="random-proxy")
    report.plot_forgetting(
        {m: report.to_matrix(_record(0, 0.0)["to_real"]) for m in ("a", "b")},
        tmp_path / "forgetting.png",
        concepts=["x", "y"],
        extractor="random-proxy",
    )
    red, blue = Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")
    report.sample_grid({"real": [red, blue], "a": [blue, red]}, tmp_path / "grid.png", concepts=["x", "y"])
    for name in ("evolution.png", "forgetting.png", "grid.png"):
        with Image.open(tmp_path / name) as image:
            assert image.size[0] > 100 and image.size[1] > 50
