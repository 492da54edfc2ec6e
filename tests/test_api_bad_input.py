"""Bad input answers a clear 422, never a 500, on SQLite and PostgreSQL (issue 20 item 2).

PostgreSQL text cannot hold a NUL character: before the fix a NUL in a prompt or an id reached
the database and answered 500, and one in ``negative_prompt`` was stored. Python's JSON parser
reads ``NaN`` and ``Infinity``, which were accepted in numeric fields (``"wait": Infinity``).
The operations and fields are read from the OpenAPI document, so a new body field or id is
covered without editing this file.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from core.db.models import Generation, Job, User

NUL_TEXT = "a\x00b"
# A valid body per JSON-body operation: each field is then replaced by a bad value in turn.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/generate"): {"prompt": "a photo", "n": 1, "steps": 2, "guidance_scale": 5.0, "seed": 1},
    ("POST", "/generate"): {"prompt": "a photo", "n": 1, "steps": 2, "guidance_scale": 5.0, "seed": 1},
    ("POST", "/v1/admin/users"): {"name": "carol", "role": "user"},
    ("PATCH", "/v1/admin/users/{user_id}"): {"disabled": False},
    ("PUT", "/v1/me/webhook"): {"url": "https://hooks.example.com/mnemo", "events": ["job.succeeded"]},
}
NON_FINITE = ("NaN", "Infinity", "-Infinity")


def _json_body_operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> the resolved JSON schema of its request body."""
    schemas = spec["components"]["schemas"]
    found = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                found[(method.upper(), path)] = schemas[ref]
    return found


def _types(prop: dict[str, Any]) -> set[str]:
    options = prop.get("anyOf", [prop])
    return {option.get("type", "") for option in options}


def _fields_of_type(schema: dict[str, Any], *types: str) -> list[str]:
    return [name for name, prop in schema["properties"].items() if _types(prop) & set(types)]


def _send(api, method: str, path: str, headers: dict[str, str], raw: str):  # type: ignore[no-untyped-def]
    return api.client.request(
        method, path, headers={**headers, "Content-Type": "application/json"}, content=raw.encode()
    )


def _url(template: str, user_id: str) -> str:
    return template.replace("{user_id}", user_id)


def _field_errors(response) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The distinct field errors of a 422 (FastAPI lists an error once per dependency that
    reads the body: /v1/generate's quota check reads it too)."""
    unique = {json.dumps(e, sort_keys=True): e for e in response.json()["detail"]}
    return list(unique.values())


def _count(api, model: type) -> int:  # type: ignore[no-untyped-def]
    with api.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def test_the_valid_bodies_cover_every_json_operation_and_are_accepted(api) -> None:  # type: ignore[no-untyped-def]
    _, admin = api.user("root", role="admin")
    user_id, _ = api.user("target")
    operations = _json_body_operations(api.client.get("/openapi.json").json())
    assert set(operations) == set(VALID_BODIES), "add a valid body for the new JSON operation"
    for (method, path), body in VALID_BODIES.items():
        response = _send(api, method, _url(path, user_id), admin, json.dumps(body))
        assert response.status_code < 300, (method, path, response.text)


def test_a_nul_in_any_text_field_of_a_json_body_is_422(api) -> None:  # type: ignore[no-untyped-def]
    _, admin = api.user("root", role="admin")
    user_id, _ = api.user("target")
    users, jobs = _count(api, User), _count(api, Job)
    for (method, path), schema in _json_body_operations(api.client.get("/openapi.json").json()).items():
        for field in _fields_of_type(schema, "string"):
            if "enum" in schema["properties"][field]:
                continue  # a closed set of words (role): any other value is refused anyway
            body = {**VALID_BODIES[(method, path)], field: NUL_TEXT}
            response = _send(api, method, _url(path, user_id), admin, json.dumps(body))
            assert response.status_code == 422, (method, path, field, response.text)
            [error] = _field_errors(response)
            assert error["loc"] == ["body", field] and "NUL character" in error["msg"], error
    assert (_count(api, User), _count(api, Job)) == (users, jobs)  # nothing was stored


@pytest.mark.parametrize("constant", NON_FINITE)
def test_nan_and_infinity_are_422_in_every_numeric_field(api, constant: str) -> None:  # type: ignore[no-untyped-def]
    _, admin = api.user("root", role="admin")
    user_id, _ = api.user("target")
    jobs = _count(api, Job)
    for (method, path), schema in _json_body_operations(api.client.get("/openapi.json").json()).items():
        for field in _fields_of_type(schema, "number", "integer"):
            raw = json.dumps({**VALID_BODIES[(method, path)], field: 0}).replace(
                f'"{field}": 0', f'"{field}": {constant}'
            )
            response = _send(api, method, _url(path, user_id), admin, raw)
            assert response.status_code == 422, (method, path, field, response.text)
            [error] = _field_errors(response)
            assert error["loc"] == ["body", field], error
    assert _count(api, Job) == jobs


def test_generate_names_the_refused_prompt_and_stores_nothing(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    for body in ({"prompt": NUL_TEXT}, {"prompt": "ok", "negative_prompt": "bad\x00"}):
        response = api.client.post("/v1/generate", headers=headers, json=body)
        assert response.status_code == 422, response.text
        [error] = _field_errors(response)
        assert error["msg"].endswith("must not contain the NUL character (U+0000)")
    response = _send(api, "POST", "/v1/generate", headers, '{"prompt": "ok", "wait": Infinity}')
    assert response.status_code == 422
    assert _field_errors(response) == [
        {"loc": ["body", "wait"], "msg": "Input should be a finite number", "type": "finite_number"}
    ]
    assert _count(api, Generation) == 0


def test_a_nul_in_an_id_of_any_path_is_422(api) -> None:  # type: ignore[no-untyped-def]
    _, admin = api.user("root", role="admin")
    spec = api.client.get("/openapi.json").json()
    templated = [(m.upper(), p) for p, item in spec["paths"].items() for m in item if "{" in p]
    assert len(templated) >= 15
    for method, template in templated:
        path = re.sub(r"\{[^}]+\}", "a%00b", template)
        body = VALID_BODIES.get((method, template))
        response = api.client.request(method, path, headers=admin, json=body)
        assert response.status_code == 422, (method, template, response.text)
        assert response.json()["detail"][0]["type"] == "nul_character"


def test_a_nul_in_the_query_string_or_in_a_cursor_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    _, admin = api.user("root", role="admin")
    response = api.client.get("/v1/admin/users?limit=1%00", headers=admin)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query"]
    # A cursor is base64 of JSON: the NUL arrives only after decoding, in the id of the sort key.
    raw = json.dumps(["2024-01-01T00:00:00+00:00", NUL_TEXT]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    for path in ("/v1/admin/users", "/v1/admin/jobs"):
        response = api.client.get(path, params={"cursor": cursor}, headers=admin)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["detail"].startswith("invalid cursor")


@pytest.mark.parametrize("field", ["name", "class_word", "method"])
def test_a_nul_in_a_concept_form_field_is_422(api, image_bytes, field: str) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    form = {"name": "dog", field: "dog\x00"}
    response = api.client.post(
        "/v1/concepts", headers=headers, data=form, files=[("images", ("a.png", image_bytes(), "image/png"))]
    )
    assert response.status_code == 422, response.text
    assert api.files_under("uploads") == []
