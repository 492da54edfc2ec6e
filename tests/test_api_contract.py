"""The OpenAPI document matches the answers (issue 20 item 11; ``api.contract``).

Before the fix schemathesis found 401 undocumented on the authenticated operations, the 422 of
``POST /v1/generate`` declared as the unknown-token shape while validation answers a list of
field errors, and ``Allow`` headers naming one route's methods where several routes share the
path. The first tests check each of those directly; the last runs schemathesis's conformance
checks against the app served on loopback (SQLite), a bounded number of examples, and fails on
any contract violation or 5xx. The contract is the same on every database: SQLite only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from api.app import create_app
from core.db.session import make_session_factory
from core.db.users import create_user
from tests.conftest import make_settings
from tests.served_api import serve

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# Conformance checks: every status, content type, header and body as documented; no 5xx;
# undocumented methods answer 405 with a correct Allow; invalid input is refused; auth enforced.
# Not run: positive_data_acceptance (a schema cannot say which bytes are an image, which cursor
# was issued or which <tokens> a user owns) and the stateful checks (they need links).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
)
# Operations that end the caller's own access (schemathesis reuses ids it saw in answers, its
# own user's among them): erasure and key rotation, tested on their own elsewhere. A new one
# fails the "Authentication failed" assertion below: add it here. And the event stream: with no
# worker a job never ends, so its stream stays open until the client's timeout (tests/test_api_jobs.py).
EXCLUDED = (
    ("DELETE", "/v1/me"),
    ("POST", "/v1/me/key"),
    ("POST", "/v1/admin/users/{user_id}/rotate"),
    ("GET", "/v1/jobs/{job_id}/events"),
)
# Limits out of the way: a lockout or a quota answers a documented 429, but then the rest of the
# run tests nothing else (settings the app does not have are ignored). No worker runs, so a
# generate request's `wait` would hold it for up to two minutes: a fraction of a second here.
NO_LIMITS = {
    "generate_max_wait_seconds": 0.2,
    "auth_failures_per_address": 10**6,
    "quota_concepts_per_user": 10**6,
    "quota_unfinished_jobs_per_user": 10**6,
    "quota_images_per_window": 10**6,
}
EXAMPLES_PER_OPERATION = 5
SCHEMATHESIS_TIMEOUT_SECONDS = 300


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def _documented(spec: dict[str, Any], method: str, path: str, status: int) -> jsonschema_rs.Validator:
    """A validator for the documented JSON body of ``status`` (its refs resolve in the document)."""
    response = spec["paths"][path][method.lower()]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return jsonschema_rs.Draft202012Validator({**schema, "components": spec["components"]})


@SQLITE_ONLY
def test_every_operation_documents_the_statuses_it_can_answer(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.client.get("/openapi.json").json()
    for method, path, operation in _operations(spec):
        statuses = set(operation["responses"])
        where = (method, path)
        assert {"422", "500"} <= statuses, where
        if operation.get("security"):
            assert {"401", "403", "429"} <= statuses, where
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], where
        if "{" in path:
            assert "404" in statuses, where
        if "requestBody" in operation:
            assert {"400", "413"} <= statuses, where
        if any(p["name"] == "cursor" for p in operation.get("parameters", [])):
            assert "400" in statuses, where


@SQLITE_ONLY
def test_the_422_of_generate_declares_every_shape_it_answers(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.client.get("/openapi.json").json()
    _, headers = api.user("alice")
    bodies = {
        "field errors": {"n": 2},  # no prompt: FastAPI's validation list
        "unknown token": {"prompt": "a photo of <nobody>"},
        "over a limit": {"prompt": "x" * (api.settings.generate_max_prompt_chars + 1)},
    }
    for path in ("/v1/generate", "/generate"):
        validator = _documented(spec, "POST", path, 422)
        for what, body in bodies.items():
            response = api.client.post(path, headers=headers, json=body)
            assert response.status_code == 422, (path, what)
            assert validator.is_valid(response.json()), (path, what, response.json())
    validation = _documented(spec, "POST", "/v1/concepts", 422)
    response = api.client.post("/v1/concepts", headers=headers, data={"name": "dog"})  # no images
    assert response.status_code == 422 and validation.is_valid(response.json())


@SQLITE_ONLY
def test_errors_of_every_kind_match_their_documented_body(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.client.get("/openapi.json").json()
    _, user = api.user("alice")
    answers = [
        ("GET", "/v1/me", None, 401),
        ("GET", "/v1/admin/users", user, 403),
        ("GET", "/v1/jobs/{job_id}", user, 404),
        ("GET", "/v1/adapters", {"Authorization": "Bearer mnemo_not-a-key"}, 401),
    ]
    for method, template, headers, status in answers:
        path = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", template)
        response = api.client.request(method, path, headers=headers)
        assert response.status_code == status, (method, template)
        assert _documented(spec, method, template, status).is_valid(response.json()), (method, template)


@SQLITE_ONLY
def test_405_and_options_allow_exactly_the_documented_methods_of_the_path(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.client.get("/openapi.json").json()
    for template, item in spec["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x", template)
        documented = {method.upper() for method in item}
        for method in sorted({"OPTIONS", "PUT"} - documented):  # PUT /v1/me/webhook exists
            response = api.client.request(method, path)
            assert response.status_code == 405, (method, template)
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert allowed == documented, (method, template, allowed)
    # The dashboard's HTML 405 page says it too.
    page = api.client.request("PUT", "/admin/users/x")
    assert page.status_code == 405 and page.headers["allow"] == "GET"


def _operation_ids(spec: dict[str, Any], operations: tuple[tuple[str, str], ...]) -> list[str]:
    """The operation ids of those of ``operations`` the document has."""
    paths = spec["paths"]
    return [
        paths[path][method.lower()]["operationId"]
        for method, path in operations
        if method.lower() in paths.get(path, {})
    ]


def _schemathesis(
    base_url: str,
    *,
    key: str,
    excluded: list[str],
    checks: tuple[str, ...] = CHECKS,
    phases: str = "examples,coverage,fuzzing",
    max_examples: int = EXAMPLES_PER_OPERATION,
) -> list[str]:
    """The schemathesis command line: bounded (examples per operation, one worker, fixed seed)."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        ",".join(checks),
        "--phases",
        phases,
        "--max-examples",
        str(max_examples),
        "--seed",
        "20",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    for operation_id in excluded:
        command += ["--exclude-operation-id", operation_id]
    return command


def test_schemathesis_finds_no_contract_failure_and_no_5xx(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(data_dir=tmp_path / "data", database_url=sqlite_url, **NO_LIMITS)
    factory = make_session_factory(sqlite_url)
    with factory() as session:
        key = create_user(session, name="root", role="admin", pepper=settings.pepper).key
        session.commit()
    factory.kw["bind"].dispose()
    app = create_app(settings, dispatcher=lambda: None)
    excluded = _operation_ids(app.openapi(), EXCLUDED)
    env = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false"}
    try:
        with serve(app) as base_url:
            command = _schemathesis(base_url, key=key, excluded=excluded)
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=SCHEMATHESIS_TIMEOUT_SECONDS,
                env=env,
                check=False,
            )
    finally:
        app.state.services.session_factory.kw["bind"].dispose()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested and int(tested.group(1)) == len(_operations(app.openapi())) - len(excluded), output[-3000:]
    assert "Authentication failed" not in output, output[-3000:]  # the key lasted the whole run
