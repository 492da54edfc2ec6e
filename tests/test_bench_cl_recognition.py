"""The CL bench's recognition columns: kept = recognition after the last task / just after its own."""

from __future__ import annotations

import math

import pytest

from bench.cl import markdown_retention, retention_summary


def test_retention_averages_seeds_and_reports_the_worst_kept_earlier_concept():
    seed0 = [[1.0, None, None], [0.5, 0.75, None], [0.5, 0.5, 1.0]]
    seed1 = [[0.5, None, None], [0.5, 0.75, None], [0.25, 0.75, 0.5]]
    kept = retention_summary([seed0, seed1])
    assert kept["just_learned"] == [0.75, 0.75, 0.75]
    assert kept["at_the_end"] == [0.375, 0.625, 0.75]
    assert kept["min_kept_earlier"] == pytest.approx(0.5)  # concept 0: 0.375 / 0.75
    table = markdown_retention({"lora_sequential": kept, "textual_inversion": None}, concepts=["a", "b", "c"])
    assert "| lora_sequential | 75% → 38% | 75% → 62% | 75% → 75% | 50% |" in table
    assert "textual_inversion" not in table


def test_retention_is_absent_when_nothing_was_judged():
    nan = math.nan
    assert retention_summary([None]) is None
    assert retention_summary([[[nan, None], [nan, nan]]]) is None
    assert markdown_retention({"ewc": None}, concepts=["a", "b"]) == ""
