"""Continual-learning summaries of MMD matrices (paper App. E, Eqs. 7–9).

Tasks are 0-based here (task ``i`` of the paper is row ``i - 1``). Two lower-triangular
matrices describe a task sequence of N concepts, with NaN above the diagonal:

* ``to_real[i, j]  = MMD(F(X_{D,j}), F(X_{i,j}))``: generated images of concept j after task i
  against the real images of concept j;
* ``drift[i, j]    = MMD(F(X_{j,j}), F(X_{i,j}))``: generated images of concept j after task i
  against those generated right after concept j was learned (``drift[j, j] = 0``).

All three metrics below are evaluated "after task n" (default: the last row), which gives the
paper's Table 1 numbers at n = N and the per-task evolution of Fig. 12 for n < N.
"""

from __future__ import annotations

import math

import torch


def _square(name: str, matrix: torch.Tensor | list[list[float]]) -> torch.Tensor:
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square [N, N] matrix, got shape {tuple(m.shape)}")
    return m


def _row(m: torch.Tensor, after_task: int | None) -> int:
    n = m.shape[0] - 1 if after_task is None else after_task
    if not 0 <= n < m.shape[0]:
        raise ValueError(f"after_task {after_task} is outside 0..{m.shape[0] - 1}")
    return n


def a_mmd(to_real: torch.Tensor | list[list[float]], *, after_task: int | None = None) -> float:
    """Eq. 7: A_MMD = 1/N Σ_{j=1..N} MMD(F(X_{D,j}), F(X_{N,j})) — lower is better."""
    m = _square("to_real", to_real)
    n = _row(m, after_task)
    return float(m[n, : n + 1].mean())


def f_mmd(drift: torch.Tensor | list[list[float]], *, after_task: int | None = None) -> float:
    """Eq. 8: F_MMD = 1/(N−1) Σ_{j=1..N−1} MMD(F(X_{j,j}), F(X_{N,j})) — lower is better.

    Undefined after the first task (no earlier concept): returns NaN there.
    """
    m = _square("drift", drift)
    n = _row(m, after_task)
    if n == 0:
        return math.nan
    return float(m[n, :n].mean())


def bwt_mmd(to_real: torch.Tensor | list[list[float]], *, after_task: int | None = None) -> float:
    """Eq. 9: BwT_MMD = 1/(N−1) Σ_{j=1..N−1} [MMD(X_{D,j}, X_{j,j}) − MMD(X_{D,j}, X_{N,j})].

    Higher is better (positive = later tasks improved earlier concepts). NaN after task 1.
    """
    m = _square("to_real", to_real)
    n = _row(m, after_task)
    if n == 0:
        return math.nan
    diagonal = m.diagonal()[:n]
    return float((diagonal - m[n, :n]).mean())


def mean_over_seen(per_concept: torch.Tensor | list[list[float]], *, after_task: int | None = None) -> float:
    """The mean over the concepts seen after task n of a per-(task, concept) matrix.

    The paper reports KID and CLIP I2I "as the average over all seen concepts" (§4).
    """
    m = _square("per_concept", per_concept)
    n = _row(m, after_task)
    return float(m[n, : n + 1].mean())
