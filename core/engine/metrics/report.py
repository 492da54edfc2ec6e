"""From raw per-run matrices to the paper's Table 1, Fig. 12 curves and forgetting heatmaps.

A *run* is one (method, seed) task sequence; its record holds lower-triangular [N, N]
matrices indexed [after task i, concept j] (None above the diagonal):
``to_real`` (MMD to the real images), ``drift`` (MMD to the images generated right after
concept j was learned), ``kid`` and ``i2i``. Everything printed is derived from those
matrices here, so a reader can recompute every number from the JSON.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.engine.metrics.continual import a_mmd, bwt_mmd, f_mmd, mean_over_seen

MMD_SCALE = 1e3
"""A_MMD, BwT_MMD and F_MMD are reported ×10^3 (Table 1 scales A_MMD by 10^3)."""
KID_SCALE = 1e5
"""KID is reported ×10^5 (Table 1)."""

CURVES = ("a_mmd", "bwt_mmd", "f_mmd", "kid", "i2i")
TABLE_COLUMNS = (
    ("n_param_train_pct", "N_param Train (%) ↓", 1.0, 3),
    ("n_param_store_pct", "N_param Store (%) ↓", 1.0, 2),
    ("kid", "KID ↓ (×10^5)", KID_SCALE, 2),
    ("a_mmd", "A_MMD ↓ (×10^3)", MMD_SCALE, 2),
    ("bwt_mmd", "BwT_MMD ↑ (×10^3)", MMD_SCALE, 2),
    ("i2i", "I2I ↑ (×100)", 1.0, 2),
    ("f_mmd", "F_MMD ↓ (×10^3)", MMD_SCALE, 3),
)


def to_matrix(rows: Sequence[Sequence[float | None]]) -> list[list[float]]:
    """JSON rows (None above the diagonal) -> float rows (NaN above the diagonal)."""
    return [[math.nan if v is None else float(v) for v in row] for row in rows]


def to_json_matrix(rows: Sequence[Sequence[float]]) -> list[list[float | None]]:
    return [[None if (v is None or math.isnan(v)) else float(v) for v in row] for row in rows]


def run_curves(record: Mapping[str, Any]) -> dict[str, list[float]]:
    """Per-task evolution of every metric of one run (Fig. 12): value after task 1..N."""
    to_real = to_matrix(record["to_real"])
    drift = to_matrix(record["drift"])
    kid = to_matrix(record["kid"])
    i2i = to_matrix(record["i2i"])
    n = len(to_real)
    return {
        "a_mmd": [a_mmd(to_real, after_task=i) for i in range(n)],
        "bwt_mmd": [bwt_mmd(to_real, after_task=i) for i in range(n)],
        "f_mmd": [f_mmd(drift, after_task=i) for i in range(n)],
        "kid": [mean_over_seen(kid, after_task=i) for i in range(n)],
        "i2i": [mean_over_seen(i2i, after_task=i) for i in range(n)],
    }


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return {"mean": statistics.fmean(finite), "std": std, "n": len(finite)}


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± sample std over seeds of the final metrics and of every per-task curve."""
    curves = [run_curves(r) for r in records]
    final = {name: _mean_std([c[name][-1] for c in curves]) for name in CURVES}
    final["n_param_train_pct"] = _mean_std([r["n_param_train_pct"] for r in records])
    final["n_param_store_pct"] = _mean_std([r["n_param_store_pct"] for r in records])
    accuracy = [r["dc_accuracy"]["overall"] for r in records if r.get("dc_accuracy")]
    final["dc_accuracy"] = _mean_std(accuracy)
    n = len(curves[0]["a_mmd"])
    per_task = {name: [_mean_std([c[name][i] for c in curves]) for i in range(n)] for name in CURVES}
    return {"seeds": [r["seed"] for r in records], "final": final, "per_task": per_task}


def _cell(stat: Mapping[str, Any], scale: float, digits: int) -> str:
    if stat["mean"] is None:
        return "–"
    if stat["n"] > 1:
        return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"
    return f"{stat['mean'] * scale:.{digits}f}"


def markdown_table(summary: Mapping[str, Mapping[str, Any]], *, extractor: str, caption: str) -> str:
    """The paper's Table 1 layout: one row per method, mean ± std over seeds."""
    header = ["Method", "Seeds", *(title for _, title, _, _ in TABLE_COLUMNS), "DC acc. (train) ↑ (%)"]
    lines = [
        caption,
        "",
        f"Features: `{extractor}`, L2-normalised ×√d (so x·y/d = cos). MMD: unbiased MMD² (U-statistic) "
        "with the quadratic kernel (x·y/d + 1)²; KID: unbiased, cubic kernel. Mean ± sample std over seeds.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for method, agg in summary.items():
        final = agg["final"]
        cells = [_cell(final[key], scale, digits) for key, _, scale, digits in TABLE_COLUMNS]
        cells.append(
            _cell(final["dc_accuracy"], 100.0, 1) if final["dc_accuracy"]["mean"] is not None else "–"
        )
        lines.append(f"| {method} | {len(agg['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_evolution(summary: Mapping[str, Mapping[str, Any]], path: Path, *, extractor: str) -> None:
    """Fig. 12: A_MMD, KID, BwT_MMD and I2I after every task, mean ± std over seeds."""
    plt = _pyplot()
    panels = (
        ("a_mmd", "A_MMD (×10^3) ↓", MMD_SCALE),
        ("kid", "KID (×10^5) ↓", KID_SCALE),
        ("bwt_mmd", "BwT_MMD (×10^3) ↑", MMD_SCALE),
        ("i2i", "I2I (×100) ↑", 1.0),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (key, title, scale) in zip(axes, panels, strict=True):
        for method, agg in summary.items():
            stats = agg["per_task"][key]
            xs = [i + 1 for i, s in enumerate(stats) if s["mean"] is not None]
            mean = [s["mean"] * scale for s in stats if s["mean"] is not None]
            std = [s["std"] * scale for s in stats if s["mean"] is not None]
            if not xs:
                continue
            (line,) = ax.plot(xs, mean, marker="o", ms=3, label=method)
            ax.fill_between(
                xs,
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                color=line.get_color(),
                alpha=0.12,
            )
        ax.set_title(title)
        ax.set_xlabel("task")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Per-task evolution (features: {extractor})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_forgetting(
    matrices: Mapping[str, Sequence[Sequence[float]]], path: Path, *, concepts: Sequence[str], extractor: str
) -> None:
    """Heatmaps of MMD(real_j, generated_j after task i) ×10^3, one panel per method."""
    plt = _pyplot()
    import numpy as np

    methods = list(matrices)
    cols = min(4, len(methods))
    rows = math.ceil(len(methods) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.1 * rows), squeeze=False)
    values = [np.array(m, dtype=float) * MMD_SCALE for m in matrices.values()]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([0.0])
    vmin, vmax = float(finite.min()), float(finite.max())
    for ax, method, value in zip(axes.flat, methods, values, strict=False):
        image = ax.imshow(np.ma.masked_invalid(value), vmin=vmin, vmax=vmax, cmap="magma_r")
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("concept j")
        ax.set_ylabel("after task i")
        ticks = range(len(concepts))
        ax.set_xticks(list(ticks), [str(t + 1) for t in ticks])
        ax.set_yticks(list(ticks), [str(t + 1) for t in ticks])
    for ax in list(axes.flat)[len(methods) :]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.8, label="MMD ×10^3 (lower = closer to real)")
    fig.suptitle(f"Forgetting matrix (features: {extractor})", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_grid(
    rows: Mapping[str, Sequence[Any]], path: Path, *, concepts: Sequence[str], cell: int = 64
) -> None:
    """One PNG: a row per method (plus "real"), a column per concept (PIL images)."""
    plt = _pyplot()
    names = list(rows)
    fig, axes = plt.subplots(
        len(names), len(concepts), figsize=(1.2 * len(concepts) + 1.6, 1.2 * len(names) + 0.4), squeeze=False
    )
    for r, name in enumerate(names):
        for c in range(len(concepts)):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            images = rows[name]
            if c < len(images) and images[c] is not None:
                ax.imshow(images[c].convert("RGB").resize((cell, cell)))
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0:
                ax.set_title(concepts[c], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
