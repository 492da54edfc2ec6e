"""``/readyz`` reports workers from their heartbeats (issue 20, item 6), on SQLite and PostgreSQL.

A worker is live when its main process touched its ``workers`` row within three heartbeats
(``core.db.workers.live_workers``); a pool row alone or a stale main row is not a live worker.
None live is a 503 only where a worker is required (``MNEMO_READY_REQUIRES_WORKER``; on under
``mnemo serve``). The same with real processes: ``tests/service/test_serve_supervision.py``.
"""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from api.app import create_app
from core.db.models import utcnow
from core.db.workers import WorkerInfo, live_window, touch_worker


def _info(worker_id: str, role: str) -> WorkerInfo:
    return WorkerInfo(worker_id=worker_id, role=role, device="cpu", backbone="tiny", preset="tiny")


def test_readyz_requires_a_recent_main_heartbeat_where_a_worker_is_required(api) -> None:  # type: ignore[no-untyped-def]
    settings = api.settings.model_copy(update={"ready_requires_worker": True, "worker_heartbeat_seconds": 2})
    stale = utcnow() - live_window(2) - timedelta(seconds=1)
    with TestClient(create_app(settings, dispatcher=lambda: None)) as client:
        none = client.get("/readyz")
        assert none.status_code == 503 and none.json()["checks"]["workers"] == "error: no live worker"
        assert none.json()["checks"]["database"] == "ok" and none.json()["checks"]["broker"] == "ok"

        touch_worker(api.session_factory, info=_info("host:1", "main"), current_job_id=None, now=stale)
        touch_worker(api.session_factory, info=_info("host:2", "pool"), current_job_id=None)
        assert client.get("/readyz").status_code == 503  # a stale main row and a pool row

        touch_worker(api.session_factory, info=_info("host:1", "main"), current_job_id=None)
        live = client.get("/readyz")
        assert live.status_code == 200 and live.json()["checks"]["workers"] == "ok"


def test_readyz_reports_no_worker_without_failing_where_none_is_required(api) -> None:  # type: ignore[no-untyped-def]
    answer = api.client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"]["workers"] == "none live (not required)"
