"""Polynomial kernels and the unbiased MMD² estimator (Gretton et al., 2012).

Conventions (stated once, used by every metric here):

* ``polynomial_kernel(x, y, degree)`` is ``k(x, y) = (x·y / d + 1)^degree`` with ``d`` the
  feature dimension — the kernel of Binkowski et al. (2018) for KID (``degree=3``). The paper
  (App. E) computes MMD "using a quadratic kernel function (Gretton et al., 2012)" without
  spelling it out; we take the same family at ``degree=2`` (``QUADRATIC_DEGREE``), so MMD and
  KID differ only in the degree. Features are used as the extractor returns them (no
  normalisation), exactly as KID does.
* ``mmd`` (the MMD of Eqs. 7–9) is the *unbiased* estimator MMD²_u of Gretton et al. (2012,
  Lemma 6 / Eq. 3, the U-statistic): the within-set sums drop the diagonal terms k(x_a, x_a),
  so its expectation is the population MMD² — 0 for two samples of one distribution, and a
  finite-sample value may be negative. The biased MMD²_b (Eq. 5, plain means of the Gram
  matrices) is ≥ 0 but inflated by (mean k(x,x) − mean k(x,x'))/N per set: with 8 images,
  two batches from the same model and prompt differed by more than the method gaps (issue 18),
  so it is kept only as ``mmd2_biased`` for comparison.
* ``mmd2_unbiased`` compares two *independent* samples; the same set against itself is not
  such a pair (its value is negative). The benchmark sets F_MMD's terms for sample sets that
  are identical (e.g. textual inversion, whose U-Net never changes) to 0 without an estimate.
"""

from __future__ import annotations

import torch

QUADRATIC_DEGREE = 2
"""Degree of the paper's "quadratic kernel" for MMD (App. E)."""
KID_DEGREE = 3
"""Degree of the KID kernel (Binkowski et al., 2018, §3)."""


def _as_features(name: str, x: torch.Tensor) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"{name} must be a [N, D] feature matrix, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples for an unbiased estimate, got {x.shape[0]}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return x.detach().to(torch.float64)


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, *, degree: int) -> torch.Tensor:
    """Gram matrix ``K[a, b] = (x_a · y_b / d + 1)^degree`` for x [N, D], y [M, D]."""
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"feature dimensions differ: {x.shape[-1]} vs {y.shape[-1]}")
    d = x.shape[-1]
    return (x @ y.T / d + 1.0) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, *, degree: int = QUADRATIC_DEGREE) -> float:
    """Unbiased MMD² between samples x [N, D] and y [M, D] (Gretton et al. 2012, Eq. 3).

    MMD²_u = 1/(N(N-1)) Σ_{a≠b} k(x_a, x_b) + 1/(M(M-1)) Σ_{a≠b} k(y_a, y_b)
             − 2/(NM) Σ_{a,b} k(x_a, y_b)
    """
    x = _as_features("x", x)
    y = _as_features("y", y)
    n, m = x.shape[0], y.shape[0]
    kxx = polynomial_kernel(x, x, degree=degree)
    kyy = polynomial_kernel(y, y, degree=degree)
    kxy = polynomial_kernel(x, y, degree=degree)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def mmd2_biased(x: torch.Tensor, y: torch.Tensor, *, degree: int = QUADRATIC_DEGREE) -> float:
    """Biased MMD² (Gretton et al. 2012, Eq. 5): mean K_xx + mean K_yy − 2 mean K_xy (≥ 0)."""
    x = _as_features("x", x)
    y = _as_features("y", y)
    kxx = polynomial_kernel(x, x, degree=degree)
    kyy = polynomial_kernel(y, y, degree=degree)
    kxy = polynomial_kernel(x, y, degree=degree)
    return float(kxx.mean() + kyy.mean() - 2.0 * kxy.mean())


def mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """The MMD of App. E, Eqs. 7–9: the unbiased MMD²_u (Gretton et al. 2012, Eq. 3), quadratic kernel."""
    return mmd2_unbiased(x, y, degree=QUADRATIC_DEGREE)
