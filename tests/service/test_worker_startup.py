"""A fresh worker's first tasks do not race its import warm-up (issue 20, item 5).

Each pool process imports torch, diffusers and the engine in a background thread as soon as it
starts; a task delivered at that moment imported the same modules from its own thread and met
half-initialised ones (``ImportError: cannot import name 'DDIMScheduler'`` / ``'AutoModel'``),
losing an attempt. A train job and two generate jobs are queued while no worker runs, then a
worker with two pool processes starts and each process receives a job at once: every job must
succeed on its first attempt (the old code lost the first attempt of both processes; with
``MNEMO_JOB_MAX_ATTEMPTS=1`` that is a job failed for good).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.service.conftest import Service
from tests.service.test_end_to_end import _upload, _wait_final

pytestmark = pytest.mark.slow

IMPORT_ERRORS = ("ImportError", "cannot import name", "partially initialized")


def test_jobs_queued_before_the_worker_starts_each_succeed_on_their_first_attempt(
    embedded_split: Service, noise_images: Callable[[int, int], list[bytes]]
) -> None:
    service = embedded_split
    headers = service.create_user("dana")
    with service.client() as http:
        train = _upload(http, headers, name="first", images=noise_images(3, 2), steps="2")
        job_ids = [train["job"]["id"]]
        for seed in range(2):
            response = http.post(
                "/v1/generate", headers=headers, json={"prompt": "a photo", "n": 1, "steps": 2, "seed": seed}
            )
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["job"]["id"])

        service.start_worker(concurrency=2)
        jobs = _wait_final(service, http, headers, job_ids, timeout=480)

    failed = {job_id: job for job_id, job in jobs.items() if job["state"] != "succeeded"}
    assert failed == {}, f"{failed}\n{service.logs()}"
    assert [jobs[job_id]["attempts"] for job_id in job_ids] == [1, 1, 1]
    worker_log = (service.log_dir / "worker0.log").read_text(errors="replace")
    assert not any(text in worker_log for text in IMPORT_ERRORS), worker_log[-4000:]
