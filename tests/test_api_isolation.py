"""Per-user isolation: another user's ids answer exactly like ids that do not exist (IDOR sweep)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from core.db.models import Job


def _strip(response) -> tuple[int, bytes, dict[str, str]]:  # type: ignore[no-untyped-def]
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("date", "x-request-id")}
    return response.status_code, response.content, headers


def test_foreign_ids_are_404_byte_identical_to_missing_ids(api) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = api.user("alice")
    _, bob = api.user("bob")
    trained = api.trained_concept(user_id=alice_id, name="rex")
    generated = api.generated_image(user_id=alice_id, prompt="a photo of <rex>")
    missing = str(uuid.uuid4())
    routes = [
        ("GET", "/v1/concepts/{}", trained["concept"]),
        ("GET", "/v1/jobs/{}", trained["job"]),
        ("GET", "/v1/jobs/{}", generated["job"]),
        ("GET", "/v1/jobs/{}/events", trained["job"]),
        ("POST", "/v1/jobs/{}/cancel", trained["job"]),
        ("GET", "/v1/images/{}", generated["image"]),
    ]
    for method, template, foreign_id in routes:
        # The owner sees it ...
        assert api.client.request(method, template.format(foreign_id), headers=alice).status_code == 200
        # ... the other user gets exactly the answer for an id that does not exist.
        foreign = api.client.request(method, template.format(foreign_id), headers=bob)
        absent = api.client.request(method, template.format(missing), headers=bob)
        assert foreign.status_code == 404, (method, template)
        assert _strip(foreign) == _strip(absent), (method, template)
        assert foreign.json() == {"detail": "not found"}


def test_lists_never_include_other_users_rows(api) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = api.user("alice")
    _, bob = api.user("bob")
    api.trained_concept(user_id=alice_id, name="rex")
    api.trained_concept(user_id=alice_id, name="tom")
    assert [c["name"] for c in api.client.get("/v1/concepts", headers=alice).json()["concepts"]] == [
        "rex",
        "tom",
    ]
    assert api.client.get("/v1/concepts", headers=bob).json() == {"concepts": [], "next_cursor": None}
    lineage = api.client.get("/v1/adapters", headers=alice).json()
    assert [v["token"] for v in lineage["versions"]] == ["<rex>", "<tom>"]
    empty_lineage = {"head": None, "versions": [], "next_cursor": None}
    assert api.client.get("/v1/adapters", headers=bob).json() == empty_lineage
    api.generated_image(user_id=alice_id)
    assert len(api.client.get("/v1/jobs", headers=alice).json()["jobs"]) == 3
    assert len(api.client.get("/v1/generations", headers=alice).json()["generations"]) == 1
    assert api.client.get("/v1/jobs", headers=bob).json() == {"jobs": [], "next_cursor": None}
    assert api.client.get("/v1/generations", headers=bob).json() == {"generations": [], "next_cursor": None}


def test_another_users_tokens_are_unknown_and_cancel_has_no_side_effect(api) -> None:  # type: ignore[no-untyped-def]
    alice_id, _ = api.user("alice")
    _, bob = api.user("bob")
    trained = api.trained_concept(user_id=alice_id, name="rex")
    response = api.client.post("/v1/generate", headers=bob, json={"prompt": "a photo of <rex>"})
    assert response.status_code == 422
    assert response.json()["your_tokens"] == []
    api.client.post(f"/v1/jobs/{trained['job']}/cancel", headers=bob)
    with api.session_factory() as session:
        job = session.get(Job, trained["job"])
        assert job.state == "succeeded" and not job.cancel_requested
        assert session.scalar(select(func.count()).select_from(Job)) == 1  # nothing was enqueued for bob
