"""Paired bootstrap intervals for a method's metric difference against a reference method.

A metric of Table 1 is a mean over units u = (seed, concept j) of a per-unit value v_m(u)
(App. E, Eqs. 7–9, "after the last task N"):

* A_MMD  : v(u) = MMD(F(X_{D,j}), F(X_{N,j}))                        (Eq. 7), j = 1..N
* BwT_MMD: v(u) = MMD(X_{D,j}, X_{j,j}) − MMD(X_{D,j}, X_{N,j})      (Eq. 9), j < N
* F_MMD  : v(u) = MMD(F(X_{j,j}), F(X_{N,j}))                        (Eq. 8), j < N
* KID, I2I: v(u) = the concept's KID / I2I after task N (mean over seen concepts)

The difference Δ = mean_u [v_m(u) − v_ref(u)] is resampled by drawing units with replacement,
the SAME units for both methods (a paired bootstrap: the seed and the concept are shared, so the
concept-to-concept spread cancels); the 95 % interval is the 2.5th–97.5th percentile of the B
resampled Δ (Efron & Tibshirani 1993, §13.3), with a seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from core.engine.metrics.report import to_matrix

PER_UNIT_METRICS = ("a_mmd", "bwt_mmd", "f_mmd", "kid", "i2i")


def per_unit_values(record: Mapping[str, Any]) -> dict[str, dict[tuple[int, int], float]]:
    """{metric: {(seed, concept j): v(u)}} of one run after its last task (see the module docstring)."""
    to_real, drift = to_matrix(record["to_real"]), to_matrix(record["drift"])
    kid, i2i = to_matrix(record["kid"]), to_matrix(record["i2i"])
    last, seed = len(to_real) - 1, int(record["seed"])
    values: dict[str, dict[tuple[int, int], float]] = {name: {} for name in PER_UNIT_METRICS}
    for j in range(last + 1):
        unit = (seed, j)
        values["a_mmd"][unit] = to_real[last][j]
        values["kid"][unit] = kid[last][j]
        values["i2i"][unit] = i2i[last][j]
        if j < last:
            values["bwt_mmd"][unit] = to_real[j][j] - to_real[last][j]
            values["f_mmd"][unit] = drift[last][j]
    return values


def paired_bootstrap(
    values: Sequence[float],
    reference: Sequence[float],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float | int]:
    """Δ = mean(values − reference) and its percentile interval over paired unit resamples."""
    if len(values) != len(reference):
        raise ValueError("paired samples must have the same length")
    diffs = torch.tensor(values, dtype=torch.float64) - torch.tensor(reference, dtype=torch.float64)
    keep = torch.isfinite(diffs)
    diffs = diffs[keep]
    n = int(diffs.numel())
    if n == 0:
        return {"diff": math.nan, "low": math.nan, "high": math.nan, "units": 0}
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(n, (resamples, n), generator=generator)
    means = diffs[index].mean(dim=1)
    alpha = (1.0 - level) / 2
    low, high = torch.quantile(means, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)).tolist()
    return {"diff": float(diffs.mean()), "low": low, "high": high, "units": n}


def differences_vs_reference(
    records: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    reference: str = "lora_sequential",
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float | int]]]:
    """{method: {metric: {diff, low, high, units}}} against ``reference``, paired on (seed, concept)."""
    if reference not in records:
        return {}
    ref_units = _pooled(records[reference])
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for method, runs in records.items():
        if method == reference:
            continue
        units = _pooled(runs)
        out[method] = {}
        for metric in PER_UNIT_METRICS:
            shared = sorted(set(units[metric]) & set(ref_units[metric]))
            out[method][metric] = paired_bootstrap(
                [units[metric][u] for u in shared],
                [ref_units[metric][u] for u in shared],
                resamples=resamples,
                seed=seed,
            )
    return out


def _pooled(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[tuple[int, int], float]]:
    pooled: dict[str, dict[tuple[int, int], float]] = {name: {} for name in PER_UNIT_METRICS}
    for run in runs:
        for metric, by_unit in per_unit_values(run).items():
            pooled[metric].update(by_unit)
    return pooled


DIFF_COLUMNS = (
    ("kid", "Δ KID (×10^5)", 1e5),
    ("a_mmd", "Δ A_MMD (×10^3)", 1e3),
    ("bwt_mmd", "Δ BwT_MMD (×10^3)", 1e3),
    ("i2i", "Δ I2I (×100)", 1.0),
    ("f_mmd", "Δ F_MMD (×10^3)", 1e3),
)


def markdown_differences(diffs: Mapping[str, Mapping[str, Mapping[str, Any]]], *, reference: str) -> str:
    """One row per method: Δ vs ``reference`` [95 % paired bootstrap interval]; * = interval excludes 0."""
    if not diffs:
        return ""
    header = ["Method", "Units", *(title for _, title, _ in DIFF_COLUMNS)]
    lines = [
        f"Differences against `{reference}` (method − {reference}), mean over (seed, concept) units with "
        "a paired bootstrap 95 % interval (2,000 resamples, seeded); * marks an interval that excludes 0.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for method, by_metric in diffs.items():
        cells = [_diff_cell(by_metric[key], scale) for key, _, scale in DIFF_COLUMNS]
        lines.append(f"| {method} | {by_metric['a_mmd']['units']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _diff_cell(stat: Mapping[str, Any], scale: float) -> str:
    if not stat["units"] or math.isnan(stat["diff"]):
        return "–"
    star = "*" if stat["low"] > 0 or stat["high"] < 0 else ""
    return f"{stat['diff'] * scale:+.2f} [{stat['low'] * scale:+.2f}, {stat['high'] * scale:+.2f}]{star}"
