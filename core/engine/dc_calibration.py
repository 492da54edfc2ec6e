"""Per-backbone temperature of the DC scores (Eq. 3), calibrated once and recorded.

With ``dc_reduction="mean"`` the error err_i of Eq. 3 is a per-element mean, whose gaps between
conditions depend on the backbone (latent size, how well it denoises); the paper's τ (1 for
students, 0.05 for the DSC teacher, on SD v1.4 with ``sum``) says nothing about another
backbone. τ is therefore chosen so that the trained teacher's DC scores on its own training
images have a mean top-1 probability of ``TOP1_TARGET`` (docs/method.md, "Temperature"):

    τ* solves  E_{x, t, ε} max_i softmax_i(−err_i(x, t, ε) / τ) = 0.8,

found by bisection on log τ (the left side decreases monotonically in τ). The result lives in
``core/engine/assets/dc_calibration_<preset>.json`` with the command that wrote it
(``mnemo bench calibrate``) and the weights digest it was measured on; ``config.py`` reads it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # config.py reads the recorded values without importing torch
    import torch

TOP1_TARGET = 0.8
CALIBRATION_DIR = Path(__file__).parent / "assets"
CALIBRATED_KEYS = ("dc_reduction", "dc_tau", "teacher_tau")


def mean_top1(errors: torch.Tensor, *, tau: float) -> float:
    """E_s max_i p(c_i | x_s) with p = softmax(−err / τ) (Eq. 3), for errors [S, k]."""
    import torch

    if errors.ndim != 2 or errors.shape[1] < 2:
        raise ValueError(f"errors must be [samples, k >= 2], got shape {tuple(errors.shape)}")
    return float(torch.softmax(-errors.double() / tau, dim=-1).max(dim=-1).values.mean())


def calibrate_tau(
    errors: torch.Tensor,
    *,
    target: float = TOP1_TARGET,
    low: float = 1e-10,
    high: float = 1e10,
    iterations: int = 100,
) -> float:
    """τ with ``mean_top1(errors, τ) ≈ target``: bisection on log τ over [low, high].

    Raises ``ValueError`` when the target is not between the values at ``high`` (→ 1/k, uniform)
    and at ``low`` (→ the fraction of samples with a unique smallest error, about 1).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target}")
    at_low, at_high = mean_top1(errors, tau=low), mean_top1(errors, tau=high)
    if not at_high < target < at_low:
        raise ValueError(
            f"top-1 target {target} is outside [{at_high:.4f}, {at_low:.4f}] reachable for τ in "
            f"[{low:g}, {high:g}]"
        )
    log_low, log_high = math.log(low), math.log(high)
    for _ in range(iterations):
        middle = 0.5 * (log_low + log_high)
        if mean_top1(errors, tau=math.exp(middle)) > target:
            log_low = middle  # still too sharp: τ must grow
        else:
            log_high = middle
    return math.exp(0.5 * (log_low + log_high))


def calibration_path(preset: str, *, directory: Path = CALIBRATION_DIR) -> Path:
    return Path(directory) / f"dc_calibration_{preset}.json"


def load_calibration(preset: str, *, directory: Path = CALIBRATION_DIR) -> dict[str, Any]:
    """The recorded {dc_reduction, dc_tau, teacher_tau} of ``preset`` ({} when none is recorded)."""
    path = calibration_path(preset, directory=directory)
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    return {key: record[key] for key in CALIBRATED_KEYS if key in record}


def write_calibration(record: dict[str, Any], *, path: Path) -> Path:
    """Write a calibration record (it must say which command and weights made it)."""
    missing = [key for key in (*CALIBRATED_KEYS, "command", "weights") if key not in record]
    if missing:
        raise ValueError(f"a calibration record needs {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path
