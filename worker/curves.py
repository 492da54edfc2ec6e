"""Downsampled loss curves per phase, fed by the engine's progress callback (docs/dashboard.md).

Each phase keeps at most ``MAX_POINTS`` points ``[step, mean loss]``: a point is the mean of
the losses of ``stride`` consecutive steps (its step is the last one). The stride starts at
``ceil(total / MAX_POINTS)``; should a phase run longer than announced, neighbouring points are
merged pairwise and the stride doubles, so the bound always holds. Memory only; the heartbeat
writes ``snapshot()`` to ``jobs.loss_curves``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MAX_POINTS = 200


@dataclass
class _Phase:
    stride: int
    points: list[list[float]] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)
    bucket_sum: float = 0.0
    bucket_count: int = 0
    last_step: int = 0

    def add(self, step: int, loss: float) -> None:
        if step <= self.last_step:  # a resumed attempt repeats steps: start the phase again from there
            self._truncate(step)
        self.last_step = step
        self.bucket_sum += loss
        self.bucket_count += 1
        if self.bucket_count >= self.stride:
            self._close_bucket()

    def _truncate(self, step: int) -> None:
        keep = [i for i, point in enumerate(self.points) if point[0] < step]
        self.points = [self.points[i] for i in keep]
        self.weights = [self.weights[i] for i in keep]
        self.bucket_sum, self.bucket_count = 0.0, 0

    def _close_bucket(self) -> None:
        self.points.append([self.last_step, self.bucket_sum / self.bucket_count])
        self.weights.append(self.bucket_count)
        self.bucket_sum, self.bucket_count = 0.0, 0
        while len(self.points) > MAX_POINTS:
            self._halve()

    def _halve(self) -> None:
        points, weights = [], []
        for i in range(0, len(self.points) - 1, 2):
            (_, a), (step_b, b) = self.points[i], self.points[i + 1]
            wa, wb = self.weights[i], self.weights[i + 1]
            points.append([step_b, (a * wa + b * wb) / (wa + wb)])
            weights.append(wa + wb)
        if len(self.points) % 2:
            points.append(self.points[-1])
            weights.append(self.weights[-1])
        self.points, self.weights = points, weights
        self.stride *= 2

    def snapshot(self) -> list[list[float]]:
        points = [[int(step), round(loss, 6)] for step, loss in self.points]
        if not self.bucket_count:
            return points
        mean = self.bucket_sum / self.bucket_count
        if len(points) < MAX_POINTS:
            points.append([int(self.last_step), round(mean, 6)])
        else:  # no room: the open bucket joins the last point
            weight = self.weights[-1]
            merged = (self.points[-1][1] * weight + self.bucket_sum) / (weight + self.bucket_count)
            points[-1] = [int(self.last_step), round(merged, 6)]
        return points


class LossCurves:
    """The curves of one attempt: ``add(phase, step, total, loss)``, ``snapshot() -> dict``."""

    def __init__(self) -> None:
        self._phases: dict[str, _Phase] = {}

    def add(self, phase: str, step: int, total: int, loss: float | None) -> None:
        """Record one step; steps without a loss (``prepare``) and non-finite losses are skipped."""
        if loss is None or not math.isfinite(loss) or step < 1:
            return
        current = self._phases.get(phase)
        if current is None:
            current = self._phases[phase] = _Phase(stride=max(1, math.ceil(max(total, 1) / MAX_POINTS)))
        current.add(int(step), float(loss))

    def snapshot(self) -> dict[str, list[list[float]]]:
        """``{phase: [[step, mean loss], ...]}`` with at most ``MAX_POINTS`` points per phase."""
        return {phase: data.snapshot() for phase, data in self._phases.items()}
