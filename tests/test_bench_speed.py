"""`mnemo bench speed` runs end to end on the tiny backbone and reports consistent ratios."""

from __future__ import annotations

import json
import math

from core.cli.main import build_parser


def test_bench_speed_reports_ratios_side_by_side(capsys):
    args = build_parser().parse_args(
        ["bench", "speed", "--backbone", "tiny", "--preset", "tiny", "--steps", "1", "--ks", "2", "3",
         "--tasks", "2", "3", "--rounds", "1", "--json"]
    )  # fmt: skip
    assert args.handler(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["by_k"]) == {"2", "3"}
    for row in summary["by_k"].values():
        assert math.isclose(row["ewc_dc_over_train"], row["fisher"] / row["train"])
        assert math.isclose(row["dsc_over_train"], row["dsc"] / row["train"])
        assert all(row[key] > 0 for key in ("train", "fisher", "dsc"))
    assert set(summary["by_task"]) == {"ewc_dc", "dsc_ewc_dc", "c_lora"}
    growth = summary["by_task"]["c_lora"]
    per_it = growth["seconds_per_iteration"]
    assert math.isclose(growth["last_over_first"], per_it["3"] / per_it["2"])
