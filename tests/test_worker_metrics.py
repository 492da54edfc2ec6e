"""``worker.metrics`` in-process: phases tile a task, GPU memory exists only on CUDA
(docs/api.md, "Worker metrics"); the real-process scrape is tests/service/test_worker_metrics.py."""

from __future__ import annotations

import pytest
import torch

from worker.metrics import GPU_MEMORY, PhaseClock, record_gpu_memory


def gpu_samples() -> dict[tuple[str, str], float]:
    return {
        (s.labels["device"], s.labels["kind"]): s.value
        for family in GPU_MEMORY.collect()
        for s in family.samples
    }


def test_phases_tile_the_task() -> None:
    clock = PhaseClock(
        kind="train", started=100.0, phases=[("prepare", 101.0), ("train", 103.0), ("fisher", 110.0)]
    )
    durations = list(clock.durations(end=112.0))
    assert durations == [("starting", 1.0), ("prepare", 2.0), ("train", 7.0), ("fisher", 2.0)]


def test_every_step_of_a_phase_is_one_mark() -> None:
    clock = PhaseClock(kind="generate")
    for phase in ("generate", "generate", "generate", "done"):
        clock.mark(phase)
    assert [phase for phase, _ in clock.phases] == ["generate", "done"]


def test_a_cpu_worker_has_no_gpu_series() -> None:
    record_gpu_memory(device="cpu")
    assert gpu_samples() == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with the device tool)")
def test_a_cuda_worker_reports_its_peak_and_reserved_memory() -> None:
    block = torch.empty(64 * 1024 * 1024, dtype=torch.uint8, device="cuda")
    record_gpu_memory(device="cuda")
    samples = gpu_samples()
    assert samples[("cuda", "peak_allocated")] >= block.numel()
    assert samples[("cuda", "reserved")] >= block.numel()
    del block
