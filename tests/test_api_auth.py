"""Authentication and admin user management over HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from core.db.models import ApiKey, AuditLog

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PROTECTED = [
    ("GET", "/v1/concepts"),
    ("GET", "/v1/jobs/00000000-0000-0000-0000-000000000000"),
    ("POST", "/v1/generate"),
    ("POST", "/generate"),
    ("GET", "/v1/adapters"),
    ("GET", "/v1/images/00000000-0000-0000-0000-000000000000"),
    ("DELETE", "/v1/me"),
    ("GET", "/v1/admin/users"),
]


@SQLITE_ONLY
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer mnemo_short",
        "Bearer mnemo_" + "A" * 43,
        "Token mnemo_" + "A" * 43,
    ],
)
def test_missing_or_bad_keys_are_401_with_one_body(api, authorization: str | None) -> None:  # type: ignore[no-untyped-def]
    api.user("alice")
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in PROTECTED:
        response = api.client.request(method, path, headers=headers, json={"prompt": "x"})
        assert response.status_code == 401, (method, path)
        assert response.json() == {"detail": "missing or invalid API key"}
        assert response.headers["www-authenticate"] == "Bearer"


def test_key_in_the_query_string_is_not_accepted(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    key = headers["Authorization"].split()[1]
    assert api.client.get(f"/v1/concepts?api_key={key}").status_code == 401


def test_valid_key_authenticates_and_is_stored_only_as_a_digest(api) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    key = headers["Authorization"].split()[1]
    me = api.client.get("/v1/me", headers=headers)
    assert me.status_code == 200 and me.json() == {"id": user_id, "name": "alice", "role": "user"}
    with api.session_factory() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.user_id == user_id)).one()
        assert row.key_hash != key and len(row.key_hash) == 64
        assert key.startswith(row.prefix) and len(row.prefix) < len(key) // 2
        assert row.last_used_at is not None
        dump = " ".join(str(v) for r in session.execute(text("SELECT * FROM api_keys")) for v in r)
        dump += " ".join(str(v) for r in session.execute(text("SELECT * FROM audit_log")) for v in r)
        assert key not in dump and key[len(row.prefix) :] not in dump


def test_disabled_user_is_403_and_admin_routes_need_admin(api) -> None:  # type: ignore[no-untyped-def]
    admin_id, admin = api.user("root", role="admin")
    user_id, user = api.user("alice")
    assert api.client.get("/v1/admin/users", headers=user).status_code == 403
    assert api.client.get("/v1/admin/users", headers=user).json() == {"detail": "admin role required"}
    disabled = api.client.post(f"/v1/admin/users/{user_id}/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    response = api.client.get("/v1/concepts", headers=user)
    assert response.status_code == 403 and response.json() == {"detail": "this account is disabled"}
    assert api.client.post(f"/v1/admin/users/{user_id}/enable", headers=admin).status_code == 200
    assert api.client.get("/v1/concepts", headers=user).status_code == 200
    assert api.client.post(f"/v1/admin/users/{admin_id}/disable", headers=admin).status_code == 409


def test_admin_creates_lists_and_rotates_keys(api) -> None:  # type: ignore[no-untyped-def]
    _, admin = api.user("root", role="admin")
    created = api.client.post("/v1/admin/users", headers=admin, json={"name": "carol"})
    assert created.status_code == 201
    body = created.json()
    carol_id, carol_key = body["user"]["id"], body["api_key"]
    assert body["user"]["role"] == "user" and carol_key.startswith(body["key_prefix"])
    carol = {"Authorization": f"Bearer {carol_key}"}
    assert api.client.get("/v1/me", headers=carol).json()["name"] == "carol"

    listing = api.client.get("/v1/admin/users", headers=admin)
    assert listing.status_code == 200
    users = {u["name"]: u for u in listing.json()["users"]}
    assert set(users) == {"root", "carol"} and users["carol"]["active_keys"] == 1
    assert carol_key not in listing.text  # shown once, at creation only

    assert api.client.post("/v1/admin/users", headers=admin, json={"name": "carol"}).status_code == 409
    assert api.client.post("/v1/admin/users", headers=admin, json={"name": "x y"}).status_code == 422
    assert (
        api.client.post("/v1/admin/users", headers=admin, json={"name": "z", "role": "god"}).status_code
        == 422
    )

    rotated = api.client.post(f"/v1/admin/users/{carol_id}/rotate", headers=admin)
    assert rotated.status_code == 200
    new_key = rotated.json()["api_key"]
    assert new_key != carol_key and rotated.json()["user"]["active_keys"] == 1
    assert api.client.get("/v1/me", headers=carol).status_code == 401
    assert api.client.get("/v1/me", headers={"Authorization": f"Bearer {new_key}"}).status_code == 200
    assert api.client.post("/v1/admin/users/not-a-user/rotate", headers=admin).status_code == 404

    with api.session_factory() as session:
        actions = [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.at))]
    assert "user.create" in actions and "user.rotate_key" in actions


@SQLITE_ONLY
def test_user_routes_cannot_create_admins(api) -> None:  # type: ignore[no-untyped-def]
    _, user = api.user("alice")
    response = api.client.post("/v1/admin/users", headers=user, json={"name": "mallory", "role": "admin"})
    assert response.status_code == 403


@SQLITE_ONLY
def test_keys_and_filenames_never_reach_the_logs(api, caplog) -> None:  # type: ignore[no-untyped-def]
    import io
    import logging

    from PIL import Image

    caplog.set_level(logging.DEBUG)
    _, headers = api.user("alice")
    key = headers["Authorization"].split()[1]
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="PNG")
    name = "SENTINEL-FILENAME-holiday.png"
    api.client.post(
        "/v1/concepts",
        headers=headers,
        data={"name": "dog"},
        files=[("images", (name, buffer.getvalue(), "image/png"))],
    )
    api.client.post(
        "/v1/concepts",
        headers=headers,
        data={"name": "cat"},
        files=[("images", (name, b"not an image", "image/png"))],
    )
    api.client.get("/v1/concepts", headers={"Authorization": f"Bearer {key}x"})
    assert caplog.records  # something was logged at DEBUG ...
    assert key not in caplog.text and key[14:] not in caplog.text  # ... but no key
    assert "SENTINEL-FILENAME" not in caplog.text  # ... and no filename
