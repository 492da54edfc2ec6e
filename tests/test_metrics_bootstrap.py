"""Paired bootstrap intervals of metric differences against sequential LoRA."""

from __future__ import annotations

import math
import random

import pytest

from core.engine.metrics.bootstrap import (
    differences_vs_reference,
    markdown_differences,
    paired_bootstrap,
    per_unit_values,
)


def _record(seed: int, to_real, drift=None) -> dict:
    n = len(to_real)
    drift = drift or [[0.0 if j == i else (0.1 if j < i else None) for j in range(n)] for i in range(n)]
    flat = [[v if v is None else 1.0 for v in row] for row in to_real]
    return {"seed": seed, "to_real": to_real, "drift": drift, "kid": flat, "i2i": flat}


def test_per_unit_values_follow_eqs_7_to_9():
    record = _record(3, [[1.0, None, None], [2.0, 4.0, None], [3.0, 5.0, 6.0]])
    values = per_unit_values(record)
    assert values["a_mmd"] == {(3, 0): 3.0, (3, 1): 5.0, (3, 2): 6.0}
    assert values["bwt_mmd"] == {(3, 0): 1.0 - 3.0, (3, 1): 4.0 - 5.0}
    assert values["f_mmd"] == {(3, 0): 0.1, (3, 1): 0.1}


def test_a_constant_shift_gives_a_tight_interval_around_it():
    rng = random.Random(0)
    reference = [rng.gauss(0, 5) for _ in range(30)]  # large spread between units
    shifted = [v + 0.5 + rng.gauss(0, 0.01) for v in reference]
    result = paired_bootstrap(shifted, reference, seed=1)
    assert result["diff"] == pytest.approx(0.5, abs=0.01)
    assert 0.0 < result["low"] < 0.5 < result["high"] and result["high"] - result["low"] < 0.05
    assert paired_bootstrap(shifted, reference, seed=1) == result  # seeded


def test_pure_noise_gives_an_interval_that_contains_zero():
    rng = random.Random(2)
    a = [rng.gauss(0, 1) for _ in range(40)]
    b = [rng.gauss(0, 1) for _ in range(40)]
    result = paired_bootstrap(a, b, seed=0)
    assert result["low"] < 0.0 < result["high"]


def test_differences_pair_units_across_methods_and_render():
    ref = [_record(s, [[1.0, None], [2.0, 2.0 + s]]) for s in (0, 1)]
    better = [_record(s, [[0.5, None], [1.0, 1.5 + s]]) for s in (0, 1)]
    diffs = differences_vs_reference({"lora_sequential": ref, "ewc_dc": better}, resamples=200)
    a = diffs["ewc_dc"]["a_mmd"]
    assert a["units"] == 4 and a["diff"] == pytest.approx(((1.0 - 2.0) * 2 + (1.5 - 2.0) * 2) / 4)
    assert a["high"] < 0.0  # every unit improves
    assert diffs["ewc_dc"]["bwt_mmd"]["diff"] == pytest.approx((0.5 - 1.0) - (1.0 - 2.0))
    table = markdown_differences(diffs, reference="lora_sequential")
    assert "| ewc_dc | 4 |" in table and "*" in table
    assert differences_vs_reference({"ewc_dc": better}) == {}


def test_no_shared_units_is_nan_not_an_error():
    result = paired_bootstrap([], [])
    assert result["units"] == 0 and math.isnan(result["diff"])
