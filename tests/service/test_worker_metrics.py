"""The worker's Prometheus metrics, scraped from a real ``mnemo worker`` (docs/api.md, "Worker
metrics"): seconds per job phase of a training and a generation, deliveries by outcome, the
queue's depth read from SQL, and no GPU series on a CPU worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from core.cli import processes
from tests.service.conftest import _new_service

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> tuple[str, Samples]:
    text = httpx.get(url, timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_a_worker_serves_phase_seconds_queue_depth_and_no_gpu_on_cpu(
    tmp_path: Path, noise_images: Callable[[int, int], list[bytes]]
) -> None:
    port = processes.free_port()
    service = _new_service(tmp_path, MNEMO_WORKER_METRICS_PORT=str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        service.run_cli("db", "upgrade")
        service.start_api()
        headers = service.create_user("alice")
        service.start_worker(concurrency=1)
        _, idle = scrape(url)
        assert value(idle, "mnemo_worker_queue_jobs", state="queued") == 0
        with service.client() as http:
            files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(noise_images(7, 2))]
            train = http.post("/v1/concepts", headers=headers, data={"name": "dot", "steps": 4}, files=files)
            assert train.status_code == 202, train.text
            _, busy = scrape(url)  # the worker's first task waits for its import warm-up
            queued = value(busy, "mnemo_worker_queue_jobs", state="queued") or 0
            assert queued + (value(busy, "mnemo_worker_queue_jobs", state="running") or 0) == 1
            generate = http.post("/v1/generate", headers=headers, json={"prompt": "a red circle", "n": 1})
            job_ids = [train.json()["job"]["id"], generate.json()["job"]["id"]]
            deadline = time.monotonic() + 180
            while True:
                text, samples = scrape(url)
                count = value(samples, "mnemo_worker_deliveries_total", kind="generate", outcome="succeeded")
                if count and value(
                    samples, "mnemo_worker_deliveries_total", kind="train", outcome="succeeded"
                ):
                    break
                assert time.monotonic() < deadline, service.logs()
                time.sleep(0.5)
    finally:
        service.stop_all()

    def phase_count(kind: str, phase: str) -> float | None:
        return value(samples, "mnemo_worker_job_phase_seconds_count", kind=kind, phase=phase)

    for phase in ("starting", "prepare", "train", "fisher"):  # DSC runs from the second task on
        assert phase_count("train", phase) == 1, (phase, text)
    for phase in ("starting", "generate"):
        assert phase_count("generate", phase) == 1, (phase, text)
    train_seconds = value(samples, "mnemo_worker_job_seconds_sum", kind="train") or 0
    phases_seconds = sum(
        v
        for (name, labels), v in samples.items()
        if name == "mnemo_worker_job_phase_seconds_sum" and ("kind", "train") in labels
    )
    assert 0 < phases_seconds <= train_seconds + 1e-6  # the phases tile the job
    assert value(samples, "mnemo_worker_queue_jobs", state="queued") == 0
    assert value(samples, "mnemo_worker_queue_unsent_messages") == 0
    assert "mnemo_worker_gpu_memory_bytes{" not in text  # a CPU worker has no GPU series
    assert not any(job_id in text for job_id in job_ids)  # labels carry no ids
