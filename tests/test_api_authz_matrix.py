"""Authorization matrix: every OpenAPI operation is classified; anon/user/admin get what it says.

A new route fails this test until it is added to MATRIX (docs/architecture.md, "Keys and sessions").
"""

from __future__ import annotations

import re

import pytest

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PUBLIC, USER, ADMIN = "public", "user", "admin"
MATRIX = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("POST", "/v1/concepts"): USER,
    ("GET", "/v1/concepts"): USER,
    ("GET", "/v1/concepts/{concept_id}"): USER,
    ("GET", "/v1/jobs"): USER,
    ("GET", "/v1/jobs/{job_id}"): USER,
    ("GET", "/v1/jobs/{job_id}/events"): USER,
    ("POST", "/v1/jobs/{job_id}/cancel"): USER,
    ("POST", "/v1/generate"): USER,
    ("POST", "/generate"): USER,
    ("GET", "/v1/generations"): USER,
    ("GET", "/v1/images/{image_id}"): USER,
    ("GET", "/v1/adapters"): USER,
    ("GET", "/v1/adapters/{version}/export"): USER,
    ("GET", "/v1/me"): USER,
    ("DELETE", "/v1/me"): USER,
    ("POST", "/v1/me/key"): USER,
    ("PUT", "/v1/me/webhook"): USER,
    ("GET", "/v1/me/webhook"): USER,
    ("DELETE", "/v1/me/webhook"): USER,
    ("POST", "/v1/me/webhook/secret"): USER,
    ("GET", "/v1/me/webhook/deliveries"): USER,
    ("POST", "/v1/admin/users"): ADMIN,
    ("GET", "/v1/admin/users"): ADMIN,
    ("PATCH", "/v1/admin/users/{user_id}"): ADMIN,
    ("POST", "/v1/admin/users/{user_id}/disable"): ADMIN,
    ("POST", "/v1/admin/users/{user_id}/enable"): ADMIN,
    ("POST", "/v1/admin/users/{user_id}/rotate"): ADMIN,
    ("GET", "/v1/admin/users/{user_id}"): ADMIN,
    ("GET", "/v1/admin/users/{user_id}/tasks"): ADMIN,
    ("GET", "/v1/admin/users/{user_id}/lineage"): ADMIN,
    ("GET", "/v1/admin/users/{user_id}/previews"): ADMIN,
    ("GET", "/v1/admin/tasks/{job_id}"): ADMIN,
    ("GET", "/v1/admin/images/{image_id}"): ADMIN,
    ("GET", "/v1/admin/jobs"): ADMIN,
    ("GET", "/v1/admin/workers"): ADMIN,
    ("GET", "/v1/admin/system"): ADMIN,
}

# Called with a key, these erase the caller or rotate its key: test_api_erasure, test_api_key_rotation.
SELF_CHANGING = {("DELETE", "/v1/me"), ("POST", "/v1/me/key")}


@SQLITE_ONLY
def test_every_operation_is_classified_and_enforced(api) -> None:  # type: ignore[no-untyped-def]
    operations = {
        (method.upper(), path)
        for path, item in api.client.get("/openapi.json").json()["paths"].items()
        for method in item
    }
    assert operations == set(MATRIX), "classify new routes in MATRIX"
    _, user = api.user("alice")
    _, admin = api.user("root", role="admin")
    for (method, template), need in sorted(MATRIX.items()):
        path = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", template)
        anon = api.client.request(method, path)
        if (method, template) in SELF_CHANGING:
            assert anon.status_code == 401
            continue
        as_user = api.client.request(method, path, headers=user)
        as_admin = api.client.request(method, path, headers=admin)
        if need == PUBLIC:
            assert anon.status_code not in (401, 403), (method, template)
        else:
            assert anon.status_code == 401, (method, template)
        if need == ADMIN:
            assert as_user.status_code == 403, (method, template)
            assert as_admin.status_code not in (401, 403), (method, template)
        if need == USER:
            assert as_user.status_code not in (401, 403), (method, template)
