"""Every list is cursor-paginated, and users list only their own jobs and generations
(docs/api.md, "Lists and cursors"). SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest


def walk(
    api: Any, path: str, field: str, headers: dict[str, str], limit: int, **params: str
) -> list[list[Any]]:
    """Every page of a list, following next_cursor until it is null."""
    pages, cursor = [], None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        answer = api.client.get(path, params=query, headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append(body[field])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "the cursor does not advance"


@pytest.fixture
def two_users(api: Any) -> dict[str, Any]:
    """alice: 5 trained concepts and 3 generations; bob: 1 of each."""
    alice, alice_headers = api.user("alice")
    bob, bob_headers = api.user("bob")
    made: dict[str, Any] = {"alice": alice_headers, "bob": bob_headers, "concepts": [], "generations": []}
    for index in range(5):
        made["concepts"].append(api.trained_concept(user_id=alice, name=f"thing{index}"))
    for _ in range(3):
        made["generations"].append(api.generated_image(user_id=alice))
    made["bob_concept"] = api.trained_concept(user_id=bob, name="mine")
    made["bob_generation"] = api.generated_image(user_id=bob)
    return made


def test_concepts_are_paginated_oldest_first(api: Any, two_users: dict[str, Any]) -> None:
    pages = walk(api, "/v1/concepts", "concepts", two_users["alice"], limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    ids = [c["id"] for page in pages for c in page]
    assert ids == [c["concept"] for c in two_users["concepts"]]
    assert [c["name"] for page in pages for c in page] == [f"thing{i}" for i in range(5)]


def test_jobs_list_is_newest_first_own_only_and_filters(api: Any, two_users: dict[str, Any]) -> None:
    pages = walk(api, "/v1/jobs", "jobs", two_users["alice"], limit=3)
    jobs = [job for page in pages for job in page]
    assert [len(p) for p in pages] == [3, 3, 2]
    seqs = [job["seq"] for job in jobs]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 8
    mine = {c["job"] for c in two_users["concepts"]} | {g["job"] for g in two_users["generations"]}
    assert {job["id"] for job in jobs} == mine  # bob's two jobs are not listed

    trains = walk(api, "/v1/jobs", "jobs", two_users["alice"], limit=10, kind="train")
    assert {job["id"] for job in trains[0]} == {c["job"] for c in two_users["concepts"]}
    assert walk(api, "/v1/jobs", "jobs", two_users["alice"], limit=10, state="queued") == [[]]
    assert api.client.get("/v1/jobs", params={"state": "lost"}, headers=two_users["alice"]).status_code == 422


def test_generations_list_has_jobs_and_images(api: Any, two_users: dict[str, Any]) -> None:
    pages = walk(api, "/v1/generations", "generations", two_users["alice"], limit=2)
    assert [len(p) for p in pages] == [2, 1]
    listed = [g for page in pages for g in page]
    assert [g["id"] for g in listed] == [g["generation"] for g in reversed(two_users["generations"])]
    first = listed[0]
    assert first["job"]["state"] == "succeeded" and first["job"]["kind"] == "generate"
    assert first["prompt"] == "a photo" and first["params"]["n"] == 1
    image = first["images"][0]
    assert image["id"] == two_users["generations"][-1]["image"]
    assert api.client.get(image["url"], headers=two_users["alice"]).status_code == 200
    bobs = walk(api, "/v1/generations", "generations", two_users["bob"], limit=5)
    assert [g["id"] for g in bobs[0]] == [two_users["bob_generation"]["generation"]]


def test_adapter_lineage_is_paginated(api: Any, two_users: dict[str, Any]) -> None:
    pages = walk(api, "/v1/adapters", "versions", two_users["alice"], limit=2)
    assert [[v["version"] for v in page] for page in pages] == [[1, 2], [3, 4], [5]]
    assert [v["id"] for page in pages for v in page] == [c["version"] for c in two_users["concepts"]]
    whole = api.client.get("/v1/adapters", headers=two_users["alice"]).json()
    assert len(whole["versions"]) == 5 and whole["next_cursor"] is None
    assert whole["head"] == two_users["concepts"][-1]["version"]


@pytest.mark.parametrize("path", ["/v1/concepts", "/v1/jobs", "/v1/generations", "/v1/adapters"])
@pytest.mark.parametrize("cursor", ["not base64!", "e30", "WyJ4Il0", "WzEsMl0"])
def test_a_forged_cursor_is_400(api: Any, path: str, cursor: str) -> None:
    _, headers = api.user("carol")
    answer = api.client.get(path, params={"cursor": cursor}, headers=headers)
    assert answer.status_code == 400
    assert "next_cursor" in answer.json()["detail"]


def test_limit_is_bounded(api: Any) -> None:
    _, headers = api.user("dave")
    for limit in (0, 501):
        assert api.client.get("/v1/jobs", params={"limit": limit}, headers=headers).status_code == 422


# ---- every list route, and the admin lists -------------------------------------------------------

ADMIN_LISTS = [
    "/v1/admin/users",
    "/v1/admin/users/{user_id}/tasks",
    "/v1/admin/users/{user_id}/lineage",
    "/v1/admin/users/{user_id}/previews",
    "/v1/admin/jobs",
    "/v1/admin/workers",
]


def _list_fields(schema: dict[str, Any]) -> list[str]:
    """The properties of a response schema that hold lists of objects (the rows of a page)."""
    return [
        name
        for name, field in schema.get("properties", {}).items()
        if field.get("type") == "array" and "$ref" in field.get("items", {})
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_list_route_answers_the_one_page_envelope(api: Any) -> None:
    """A GET whose answer holds rows takes ?limit= and ?cursor=, documents the 400 of a bad cursor
    and answers ``{<rows>: [...], next_cursor}`` with the one description of the cursor."""
    from api.schemas import CURSOR_DOC

    spec = api.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    lists = {}
    for path, operations in spec["paths"].items():
        answer = operations.get("get", {}).get("responses", {}).get("200", {})
        ref = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
        schema = schemas[ref.split("/")[-1]] if ref else {}
        if _list_fields(schema):
            lists[path] = (operations["get"], schema)
    assert set(ADMIN_LISTS) <= set(lists) and "/v1/me/webhook/deliveries" in lists
    for path, (operation, schema) in lists.items():
        assert len(_list_fields(schema)) == 1, path
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert {"limit", "cursor"} <= query, path
        assert "400" in operation["responses"], path
        cursor = schema["properties"].get("next_cursor", {})
        assert cursor.get("description") == CURSOR_DOC and "next_cursor" not in schema.get("required", []), (
            path
        )


@pytest.mark.parametrize("path", ADMIN_LISTS)
def test_a_forged_cursor_on_an_admin_list_is_400(api: Any, path: str) -> None:
    alice_id, _ = api.user("alice")
    _, admin = api.user("root", role="admin")
    answer = api.client.get(path.format(user_id=alice_id), params={"cursor": "WyJ4Il0"}, headers=admin)
    assert answer.status_code == 400 and "next_cursor" in answer.json()["detail"]


def test_workers_are_paginated_newest_started_first_and_a_heartbeat_moves_none(api: Any) -> None:
    from datetime import timedelta

    from core.db.models import utcnow
    from core.db.workers import WorkerInfo, touch_worker

    _, admin = api.user("root", role="admin")
    start = utcnow() - timedelta(minutes=10)
    infos = [WorkerInfo(f"host-{n}:1", "pool", f"cuda:{n}", "sd", "paper") for n in range(3)]
    for minutes, info in enumerate(infos):
        touch_worker(
            api.session_factory, info=info, current_job_id=None, now=start + timedelta(minutes=minutes)
        )

    first = api.client.get("/v1/admin/workers", params={"limit": 2}, headers=admin).json()
    assert [w["id"] for w in first["workers"]] == ["host-2:1", "host-1:1"] and first["next_cursor"]
    # host-0 is seen now, after the first page: it is still on the next one, not skipped
    touch_worker(api.session_factory, info=infos[0], current_job_id=None)
    rest = api.client.get(
        "/v1/admin/workers", params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin
    ).json()
    assert [w["id"] for w in rest["workers"]] == ["host-0:1"] and rest["next_cursor"] is None
    assert rest["workers"][0]["seconds_since_seen"] < 60
    walked = walk(api, "/v1/admin/workers", "workers", admin, limit=1)
    assert [[w["id"] for w in page] for page in walked] == [["host-2:1"], ["host-1:1"], ["host-0:1"]]


def test_admin_lineage_and_previews_are_paginated(api: Any) -> None:
    from core.db.previews import PreviewImage, PreviewItem, store_previews

    alice_id, _ = api.user("alice")
    _, admin = api.user("root", role="admin")
    made = [api.trained_concept(user_id=alice_id, name=f"thing{n}") for n in range(3)]
    image = PreviewImage(path="images/preview.png", sha256="0" * 64, width=8, height=8)
    item = PreviewItem(
        concept_id=made[2]["concept"], token="<thing2>", after_task_index=3, seed=0, images=[image]
    )
    assert store_previews(api.session_factory, job_id=made[2]["job"], user_id=alice_id, items=[item])

    lineage = walk(api, f"/v1/admin/users/{alice_id}/lineage", "versions", admin, limit=2)
    assert [[v["version"] for v in page] for page in lineage] == [[1, 2], [3]]
    assert [v["id"] for page in lineage for v in page] == [m["version"] for m in made]
    whole = api.client.get(f"/v1/admin/users/{alice_id}/lineage", headers=admin).json()
    assert len(whole["versions"]) == 3 and whole["next_cursor"] is None and whole["user_id"] == alice_id

    strips = walk(api, f"/v1/admin/users/{alice_id}/previews", "strips", admin, limit=2)
    assert [[s["concept_name"] for s in page] for page in strips] == [["thing0", "thing1"], ["thing2"]]
    assert [len(s["previews"]) for page in strips for s in page] == [0, 0, 1]
    assert strips[1][0]["previews"][0]["after_task_index"] == 3
