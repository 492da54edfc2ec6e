"""The job event stream has ``id:``s and resumes after ``Last-Event-ID`` (docs/api.md, "Job
events"): a client that reconnects gets only what changed since the event it names."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from core.db.models import Job, JobState, utcnow

Event = tuple[str | None, str, dict[str, Any]]


def running_job(api: Any, user_id: str) -> str:
    """A generation job of ``user_id``, running at step 1 of 3."""
    job_id = api.generated_image(user_id=user_id)["job"]
    move(api, job_id, state=JobState.RUNNING.value, step=1)
    return job_id


def move(api: Any, job_id: str, *, state: str, step: int) -> None:
    with api.session_factory() as session:
        job = session.get(Job, job_id)
        job.state, job.progress = state, {"phase": "generate", "step": step, "total": 3, "loss": None}
        job.finished_at = utcnow() if state == JobState.SUCCEEDED.value else None
        session.commit()


def parse(text: str) -> list[Event]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return events


def connect(
    api: Any, job_id: str, headers: dict[str, str], *, last: str | None, first_only: bool
) -> list[Event]:
    """One connection: its first event (then the client drops it), or every event until the end."""
    extra = {"Last-Event-ID": last} if last else {}
    text = ""
    with api.client.stream("GET", f"/v1/jobs/{job_id}/events", headers={**headers, **extra}) as response:
        assert response.status_code == 200
        for chunk in response.iter_text():
            text += chunk
            if first_only and "\n\n" in text:
                break
    events = parse(text)
    return events[:1] if first_only else events


def test_a_reconnect_with_last_event_id_gets_only_the_later_events(api: Any) -> None:
    api.settings.events_poll_seconds = 0.02
    user_id, headers = api.user("alice")
    job_id = running_job(api, user_id)

    [(id1, kind, step1)] = connect(api, job_id, headers, last=None, first_only=True)
    assert kind == "job" and step1["progress"]["step"] == 1 and id1
    move(api, job_id, state="running", step=2)
    [(id2, _, step2)] = connect(api, job_id, headers, last=id1, first_only=True)
    assert step2["progress"]["step"] == 2 and id2 != id1

    def worker() -> None:  # moves on while the client is reconnected
        for state, step in (("running", 3), ("succeeded", 3)):
            time.sleep(0.2)
            move(api, job_id, state=state, step=step)

    thread = threading.Thread(target=worker)
    thread.start()
    resumed = connect(api, job_id, headers, last=id2, first_only=False)
    thread.join()
    jobs = [(ident, data) for ident, kind, data in resumed if kind == "job"]
    assert jobs[0][1]["progress"]["step"] == 3  # step 2, which it had, is not sent
    assert jobs[-1][1]["state"] == "succeeded" and resumed[-1] == (None, "end", {"state": "succeeded"})
    assert len({ident for ident, _ in jobs}) == len(jobs) and id1 not in {ident for ident, _ in jobs}

    final = jobs[-1][0]
    assert connect(api, job_id, headers, last=final, first_only=False) == [
        (None, "end", {"state": "succeeded"})
    ]
    fresh = connect(api, job_id, headers, last=None, first_only=False)
    assert [(ident, kind) for ident, kind, _ in fresh] == [(final, "job"), (None, "end")]
    stale = connect(api, job_id, headers, last=id1, first_only=False)
    assert [(ident, kind) for ident, kind, _ in stale] == [(final, "job"), (None, "end")]
