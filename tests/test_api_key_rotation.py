"""``POST /v1/me/key``: users rotate their own key (issue 20, item 10), on SQLite and PostgreSQL.

The new key is answered once and works at once; every older key of the account stops working,
the one that asked included; other users' keys are untouched; the rotation is audited.
"""

from __future__ import annotations

from sqlalchemy import select

from core.db.models import ApiKey, AuditLog


def test_a_user_rotates_their_own_key_and_the_old_ones_stop_working(api) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = api.user("alice")
    _, bob = api.user("bob")
    assert api.client.post("/v1/me/key").status_code == 401

    rotated = api.client.post("/v1/me/key", headers=alice)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    new_key = body["api_key"]
    assert new_key.startswith("mnemo_") and new_key.startswith(body["key_prefix"])
    assert f"Bearer {new_key}" != alice["Authorization"]

    assert api.client.get("/v1/me", headers=alice).status_code == 401
    me = api.client.get("/v1/me", headers={"Authorization": f"Bearer {new_key}"})
    assert me.status_code == 200 and me.json()["id"] == alice_id
    assert api.client.get("/v1/me", headers=bob).status_code == 200
    with api.session_factory() as session:
        keys = list(session.scalars(select(ApiKey).where(ApiKey.user_id == alice_id)))
        assert sorted(k.revoked_at is None for k in keys) == [False, True]
        assert all(k.key_hash != new_key and len(k.prefix) < len(new_key) for k in keys)  # digests only
        actions = list(session.scalars(select(AuditLog.action).where(AuditLog.subject == alice_id)))
        assert "user.rotate_key" in actions
