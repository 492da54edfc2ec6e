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
