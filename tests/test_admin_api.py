"""The admin read API (/v1/admin/...): typed, paginated, admin-only, audit-logged (docs/dashboard.md).

Runs on SQLite and PostgreSQL (the ``api`` fixture).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.db.jobs import claim_job
from core.db.models import AuditLog, Job
from core.db.workers import WorkerInfo, touch_worker
from tests.admin_support import queue_train_job

MISSING = "00000000-0000-0000-0000-000000000000"


def _queue_concept(api, *, user_id: str, name: str) -> str:  # type: ignore[no-untyped-def]
    return queue_train_job(api.session_factory, user_id=user_id, name=name)


def _audit(api, *, actor: str) -> list[tuple[str, str | None, dict]]:  # type: ignore[no-untyped-def]
    with api.session_factory() as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.actor_user_id == actor, AuditLog.action == "admin.read")
        )
        return [(r.action, r.subject, r.details) for r in rows]


def test_users_are_paginated_with_their_totals(api) -> None:  # type: ignore[no-untyped-def]
    admin_id, admin = api.user("root", role="admin")
    alice_id, _ = api.user("alice")
    api.user("bob")
    api.user("carol")
    api.trained_concept(user_id=alice_id, name="mug")
    api.trained_concept(user_id=alice_id, name="dog")
    _queue_concept(api, user_id=alice_id, name="cat")

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/v1/admin/users", headers=admin, params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        seen += body["users"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 2  # next_cursor is null on the last page: no empty page after it
    assert [u["name"] for u in seen] == ["root", "alice", "bob", "carol"]
    alice = next(u for u in seen if u["id"] == alice_id)
    assert alice["totals"]["concepts"] == 3 and alice["totals"]["tasks"] == 3
    assert alice["totals"]["storage_bytes"] > 0 and alice["totals"]["last_activity_at"] is not None
    bob = next(u for u in seen if u["name"] == "bob")
    assert bob["totals"] == {"concepts": 0, "tasks": 0, "storage_bytes": 0, "last_activity_at": None}
    one = api.client.get(f"/v1/admin/users/{alice_id}", headers=admin).json()
    assert one["totals"] == alice["totals"] and one["active_keys"] == 1
    assert _audit(api, actor=admin_id) == []  # totals are not another user's data


def test_bad_cursor_and_limit_are_4xx(api) -> None:  # type: ignore[no-untyped-def]
    _, admin = api.user("root", role="admin")
    for cursor in ("not base64 !", "W10", "WyJ4IiwgMV0"):  # garbage, [], ["x", 1]
        response = api.client.get("/v1/admin/users", headers=admin, params={"cursor": cursor})
        assert response.status_code == 400, cursor
        assert "invalid cursor" in response.json()["detail"]
    assert api.client.get("/v1/admin/users", headers=admin, params={"limit": 0}).status_code == 422
    assert api.client.get("/v1/admin/users", headers=admin, params={"limit": 501}).status_code == 422
    user_id, _ = api.user("alice")
    tasks = api.client.get(f"/v1/admin/users/{user_id}/tasks", headers=admin, params={"cursor": "WyJ4Il0"})
    assert tasks.status_code == 400


def test_task_history_lineage_and_detail_are_audit_logged(api) -> None:  # type: ignore[no-untyped-def]
    admin_id, admin = api.user("root", role="admin")
    alice_id, _ = api.user("alice")
    first = api.trained_concept(user_id=alice_id, name="mug")
    second = api.trained_concept(user_id=alice_id, name="dog")

    page = api.client.get(f"/v1/admin/users/{alice_id}/tasks", headers=admin, params={"limit": 1})
    assert page.status_code == 200, page.text
    newest = page.json()["tasks"]
    assert [t["concept_name"] for t in newest] == ["dog"]
    rest = api.client.get(
        f"/v1/admin/users/{alice_id}/tasks", headers=admin, params={"cursor": page.json()["next_cursor"]}
    ).json()
    assert [t["concept_name"] for t in rest["tasks"]] == ["mug"] and rest["next_cursor"] is None
    task = newest[0]
    assert task["token"] == "<dog>" and task["state"] == "succeeded" and task["task_index"] == 2
    assert task["adapter_version_id"] == second["version"] and task["images_deleted_at"] is not None
    assert task["method"] == "dsc_ewc_dc" and task["queued_at"] is not None

    lineage = api.client.get(f"/v1/admin/users/{alice_id}/lineage", headers=admin).json()
    assert lineage["head"] == second["version"]
    assert [(v["id"], v["parent_id"]) for v in lineage["versions"]] == [
        (first["version"], None),
        (second["version"], first["version"]),
    ]
    assert all(len(v["sha256"]) == 64 for v in lineage["versions"])

    with api.session_factory() as session:
        job = session.get(Job, second["job"])
        job.loss_curves = {"train": [[1, 0.5], [2, 0.25]], "fisher": [[1, 3.0]]}
        session.commit()
    detail = api.client.get(f"/v1/admin/tasks/{second['job']}", headers=admin).json()
    assert detail["loss_curves"] == {"train": [[1, 0.5], [2, 0.25]], "fisher": [[1, 3.0]]}
    assert detail["user_id"] == alice_id and detail["job_id"] == second["job"]
    previews = api.client.get(f"/v1/admin/users/{alice_id}/previews", headers=admin).json()
    assert [s["concept_name"] for s in previews["strips"]] == ["mug", "dog"]

    audit = _audit(api, actor=admin_id)
    assert [(subject, details["what"]) for _, subject, details in audit] == [
        (alice_id, "tasks"),
        (alice_id, "tasks"),
        (alice_id, "lineage"),
        (alice_id, "task"),
        (alice_id, "previews"),
    ]


def test_active_jobs_workers_and_system(api) -> None:  # type: ignore[no-untyped-def]
    _, admin = api.user("root", role="admin")
    alice_id, _ = api.user("alice")
    bob_id, _ = api.user("bob")
    running = _queue_concept(api, user_id=alice_id, name="mug")
    waiting = _queue_concept(api, user_id=bob_id, name="cat")
    claim = claim_job(api.session_factory, job_id=running, worker_id="host-a:41", lease_seconds=60)
    assert claim.fencing_token == 1
    info = WorkerInfo(worker_id="host-a:41", role="pool", device="cuda:0", backbone="sd", preset="paper")
    touch_worker(api.session_factory, info=info, current_job_id=running)

    jobs = api.client.get("/v1/admin/jobs", headers=admin).json()
    by_id = {j["id"]: j for j in jobs["jobs"]}
    assert set(by_id) == {running, waiting}
    assert by_id[running]["state"] == "running" and by_id[running]["worker_id"] == "host-a:41"
    assert by_id[running]["user_name"] == "alice" and by_id[waiting]["concept_name"] == "cat"
    first = api.client.get("/v1/admin/jobs", headers=admin, params={"limit": 1}).json()
    assert len(first["jobs"]) == 1 and first["next_cursor"]

    workers = api.client.get("/v1/admin/workers", headers=admin).json()["workers"]
    assert [(w["id"], w["device"], w["current_job_id"]) for w in workers] == [
        ("host-a:41", "cuda:0", running)
    ]
    touch_worker(api.session_factory, info=info, current_job_id=None)
    workers = api.client.get("/v1/admin/workers", headers=admin).json()["workers"]
    assert workers[0]["current_job_id"] is None and workers[0]["seconds_since_seen"] < 60

    system = api.client.get("/v1/admin/system", headers=admin).json()
    assert system["database"] == "ok" and system["broker"] == "ok"
    assert system["queue"] == {"queued": 1, "running": 1, "unsent_messages": 2}


def test_non_admins_get_403_and_unknown_ids_404(api) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = api.user("alice")
    _, admin = api.user("root", role="admin")
    job = api.trained_concept(user_id=alice_id, name="mug")["job"]
    image = api.generated_image(user_id=alice_id)["image"]
    paths = [
        f"/v1/admin/users/{alice_id}",
        f"/v1/admin/users/{alice_id}/tasks",
        f"/v1/admin/users/{alice_id}/lineage",
        f"/v1/admin/users/{alice_id}/previews",
        f"/v1/admin/tasks/{job}",
        f"/v1/admin/images/{image}",
        "/v1/admin/jobs",
        "/v1/admin/workers",
        "/v1/admin/system",
    ]
    for path in paths:
        assert api.client.get(path).status_code == 401, path
        assert api.client.get(path, headers=alice).status_code == 403, path
        assert api.client.get(path, headers=admin).status_code == 200, path
    for path in paths[:6]:
        missing = path.replace(alice_id, MISSING).replace(job, MISSING).replace(image, MISSING)
        assert api.client.get(missing, headers=admin).status_code == 404, missing
    png = api.client.get(f"/v1/admin/images/{image}", headers=admin)
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")


def test_admin_routes_are_in_the_openapi_schema(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.client.get("/openapi.json").json()
    for path in (
        "/v1/admin/users/{user_id}/tasks",
        "/v1/admin/users/{user_id}/lineage",
        "/v1/admin/users/{user_id}/previews",
        "/v1/admin/tasks/{job_id}",
        "/v1/admin/jobs",
        "/v1/admin/workers",
        "/v1/admin/system",
    ):
        assert "get" in spec["paths"][path], path
    schemas = spec["components"]["schemas"]
    assert {"TaskPage", "TaskDetail", "UserPage", "ActiveJobPage", "WorkerList", "SystemOut"} <= set(schemas)
    assert "next_cursor" in schemas["TaskPage"]["properties"]


def test_erasing_an_account_removes_its_previews_and_sessions(api) -> None:  # type: ignore[no-untyped-def]
    from core.db.admin_sessions import open_session
    from core.db.models import AdminSession, GeneratedImage, Preview, User
    from core.db.previews import PreviewImage, PreviewItem, store_previews
    from core.storage import LocalStore as ArtifactStore

    alice_id, alice = api.user("alice", role="admin")
    seeded = api.trained_concept(user_id=alice_id, name="mug")
    store = ArtifactStore(api.settings.data_dir)
    written = store.write_bytes(store.new_image_path(), b"\x89PNG preview")
    item = PreviewItem(
        concept_id=seeded["concept"],
        token="<mug>",
        after_task_index=1,
        seed=0,
        images=[PreviewImage(path=written.path, sha256=written.sha256, width=8, height=8)],
        retention=100.0,
    )
    assert len(store_previews(api.session_factory, job_id=seeded["job"], user_id=alice_id, items=[item])) == 1
    with api.session_factory() as session:
        open_session(session, user=session.get(User, alice_id), ttl=timedelta(hours=1))
        session.commit()
    assert api.client.delete("/v1/me", headers=alice).json()["erased"] is True
    with api.session_factory() as session:
        for table in (Preview, GeneratedImage, AdminSession):
            assert session.scalars(select(table)).all() == [], table.__name__
    assert not store.exists(written.path)
