"""The /admin pages over HTTP: login, cookie attributes, CSRF, 403s, user actions, audit (docs/dashboard.md).

The real-browser checks are in tests/service/test_admin_browser.py.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from core.db.models import AdminSession, AuditLog, Job, User

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
MISSING = "00000000-0000-0000-0000-000000000000"


def login(api, key: str, *, follow: bool = False):  # type: ignore[no-untyped-def]
    form = api.client.get("/admin/login")
    token = CSRF.search(form.text).group(1)
    return api.client.post(
        "/admin/login", data={"api_key": key, "csrf_token": token}, follow_redirects=follow
    )


def csrf_of(api) -> str:  # type: ignore[no-untyped-def]
    return CSRF.search(api.client.get("/admin").text).group(1)


def _key(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def test_logged_out_browsers_go_to_the_login_page(api) -> None:  # type: ignore[no-untyped-def]
    for path in (
        "/admin",
        "/admin/live",
        f"/admin/users/{MISSING}",
        f"/admin/tasks/{MISSING}",
        "/admin/live/events",
    ):
        response = api.client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/admin/login", path
    forged = api.client.post("/admin/users", data={"name": "mallory"}, follow_redirects=False)
    assert forged.status_code == 303 and forged.headers["location"] == "/admin/login"


def test_login_sets_a_strict_http_only_expiring_cookie(api) -> None:  # type: ignore[no-untyped-def]
    admin_id, admin = api.user("root", role="admin")
    response = login(api, _key(admin))
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("mnemo_admin="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    assert "Max-Age=28800" in cookie and "Secure" not in cookie  # plain HTTP here: Secure comes with TLS
    assert _key(admin) not in cookie
    page = api.client.get("/admin")
    assert page.status_code == 200 and "root" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    with api.session_factory() as session:
        stored = session.scalars(select(AdminSession)).all()
        assert len(stored) == 1 and stored[0].user_id == admin_id
        assert stored[0].token_hash not in cookie  # only the token's sha256 is stored


def test_bad_keys_non_admins_and_forged_login_forms_are_refused(api) -> None:  # type: ignore[no-untyped-def]
    _, alice = api.user("alice")
    assert login(api, "mnemo_" + "x" * 43).status_code == 401
    refused = login(api, _key(alice))
    assert refused.status_code == 403 and "mnemo_admin=" not in refused.headers.get("set-cookie", "")
    assert "needs an admin account" in refused.text
    _, admin = api.user("root", role="admin")
    api.client.get("/admin/login")
    forged = api.client.post(
        "/admin/login", data={"api_key": _key(admin), "csrf_token": "guessed"}, follow_redirects=False
    )
    assert forged.status_code == 403 and "mnemo_admin=" not in forged.headers.get("set-cookie", "")


def test_forms_need_the_session_csrf_token(api) -> None:  # type: ignore[no-untyped-def]
    _, admin = api.user("root", role="admin")
    bob_id, _ = api.user("bob")
    login(api, _key(admin))
    for path, data in (
        ("/admin/users", {"name": "mallory"}),
        (f"/admin/users/{bob_id}/disable", {}),
        (f"/admin/users/{bob_id}/rotate", {"csrf_token": "wrong"}),
        ("/admin/logout", {}),
    ):
        response = api.client.post(path, data=data, follow_redirects=False)
        assert response.status_code == 403, path
    with api.session_factory() as session:
        assert session.scalar(select(User).where(User.name == "mallory")) is None
        assert session.get(User, bob_id).disabled is False


def test_admins_create_disable_enable_and_rotate_users(api) -> None:  # type: ignore[no-untyped-def]
    admin_id, admin = api.user("root", role="admin")
    login(api, _key(admin))
    created = api.client.post("/admin/users", data={"name": "carol", "csrf_token": csrf_of(api)})
    assert created.status_code == 200
    key = re.search(r'id="issued-key">(mnemo_[A-Za-z0-9_-]{43})<', created.text).group(1)
    assert api.client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).json()["name"] == "carol"
    carol_id = re.search(r'href="/admin/users/([0-9a-f-]{36})">carol<', created.text).group(1)
    duplicate = api.client.post("/admin/users", data={"name": "carol", "csrf_token": csrf_of(api)})
    assert duplicate.status_code == 422 and "already exists" in duplicate.text

    disabled = api.client.post(f"/admin/users/{carol_id}/disable", data={"csrf_token": csrf_of(api)})
    assert disabled.status_code == 200 and disabled.url.path == "/admin"
    assert api.client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 403
    api.client.post(f"/admin/users/{carol_id}/enable", data={"csrf_token": csrf_of(api)})
    assert api.client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    rotated = api.client.post(f"/admin/users/{carol_id}/rotate", data={"csrf_token": csrf_of(api)})
    new_key = re.search(r'id="issued-key">(mnemo_[A-Za-z0-9_-]{43})<', rotated.text).group(1)
    assert api.client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert api.client.get("/v1/me", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
    own = api.client.post(f"/admin/users/{admin_id}/disable", data={"csrf_token": csrf_of(api)})
    assert own.status_code == 422 and "cannot disable your own account" in own.text
    with api.session_factory() as session:
        actions = [
            a.action for a in session.scalars(select(AuditLog).where(AuditLog.actor_user_id == admin_id))
        ]
    assert actions.count("user.create") == 1 and "user.disable" in actions and "user.rotate_key" in actions


def test_user_and_task_pages_show_history_lineage_and_curves(api) -> None:  # type: ignore[no-untyped-def]
    admin_id, admin = api.user("root", role="admin")
    alice_id, _ = api.user("alice")
    first = api.trained_concept(user_id=alice_id, name="mug")
    second = api.trained_concept(user_id=alice_id, name="dog")
    with api.session_factory() as session:
        session.get(Job, second["job"]).loss_curves = {"train": [[1, 0.9], [2, 0.4]]}
        session.commit()
    login(api, _key(admin))
    page = api.client.get(f"/admin/users/{alice_id}")
    assert page.status_code == 200
    assert page.text.count('class="task"') == 2 and "&lt;dog&gt;" in page.text
    assert f'data-version="{first["version"]}"' in page.text and 'class="node head"' in page.text
    assert page.text.count('class="edge"') == 1  # v2 -> v1
    assert "raw images deleted" in page.text and "UTC" in page.text
    task = api.client.get(f"/admin/tasks/{second['job']}")
    assert task.status_code == 200 and 'data-phase="train"' in task.text
    assert '{"train": [[1, 0.9], [2, 0.4]]}' in task.text
    with api.session_factory() as session:
        reads = session.scalars(
            select(AuditLog.details).where(
                AuditLog.actor_user_id == admin_id, AuditLog.action == "admin.read"
            )
        ).all()
    assert [r["what"] for r in reads] == ["tasks", "lineage", "previews", "task"]


def test_a_demoted_admin_gets_the_same_403_for_any_id_and_logout_ends_the_session(api) -> None:  # type: ignore[no-untyped-def]
    admin_id, admin = api.user("root", role="admin")
    alice_id, _ = api.user("alice")
    login(api, _key(admin))
    csrf = csrf_of(api)
    with api.session_factory() as session:
        session.get(User, admin_id).role = "user"
        session.commit()
    existing = api.client.get(f"/admin/users/{alice_id}")
    missing = api.client.get(f"/admin/users/{MISSING}")
    assert existing.status_code == missing.status_code == 403
    assert existing.text == missing.text
    with api.session_factory() as session:
        session.get(User, admin_id).role = "admin"
        session.commit()
    assert (
        api.client.post("/admin/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    )
    assert api.client.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"
    with api.session_factory() as session:
        assert session.scalars(select(AdminSession)).all() == []


def test_the_users_page_counts_recent_workers_and_the_live_page_lists_them(api) -> None:  # type: ignore[no-untyped-def]
    """The pages read the paginated workers query: newest started first, not most recently seen."""
    from datetime import timedelta

    from core.db.models import utcnow
    from core.db.workers import WorkerInfo, touch_worker

    _, admin = api.user("root", role="admin")
    now = utcnow()
    # host-a started 20 minutes ago and was seen a minute ago; host-b started and was seen 10 minutes ago
    for name, minutes in (("host-a:1", 20), ("host-b:2", 10), ("host-a:1", 1)):
        info = WorkerInfo(worker_id=name, role="pool", device="cuda:0", backbone="sd", preset="paper")
        touch_worker(
            api.session_factory, info=info, current_job_id=None, now=now - timedelta(minutes=minutes)
        )
    login(api, _key(admin))
    users = api.client.get("/admin").text
    assert re.search(r'Workers seen \(5 min\)</span><span class="value">1<', users), users
    live = api.client.get("/admin/live")
    assert live.status_code == 200 and "host-a:1" in live.text and "host-b:2" in live.text
    assert live.text.index("host-b:2") < live.text.index("host-a:1")
