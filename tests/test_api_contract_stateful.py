"""Stateful schemathesis with two users (issue 20, "Then prove it under faults").

The app is served on loopback (SQLite) with two users who each own two exportable adapter
versions, a queued concept with its job, and a generated image. schemathesis's stateful phase
chains operations by the document's OpenAPI links (``api.contract.LINKS``: a generation to its
job and its cancel, the concept list to a concept, the lineage to an export; schemathesis infers
more), once with each user's key, and fails on a 5xx, on any contract failure and on cross-user
access: ``tests/api_contract_hooks.py`` checks that the other user's ids answer 404 and sends
every id lookup that succeeded again with the other user's key, which must answer 404. Bounded:
examples per operation, a fixed seed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis import Response

from api.app import create_app
from api.contract import LINKS
from core.db.enqueue import TrainRequest, create_train_job
from core.db.session import make_session_factory
from core.engine.backbone import build_tiny_backbone
from core.storage import LocalStore
from tests.api_contract_hooks import Isolation
from tests.conftest import ApiHarness, make_settings, seed_generated_image
from tests.export_support import publish_all, states_after_each_task
from tests.served_api import serve
from tests.test_api_contract import CHECKS, EXCLUDED, NO_LIMITS, _operation_ids, _schemathesis

STATEFUL_CHECKS = (*CHECKS, "use_after_free", "ensure_resource_availability", "no_cross_user_access")
MAX_EXAMPLES = 20
# Id lookups whose answer to the owner was sent again with the other user's key (at least these).
REPLAYED = (
    "GET /v1/jobs/{job_id}",
    "POST /v1/jobs/{job_id}/cancel",
    "GET /v1/concepts/{concept_id}",
    "GET /v1/adapters/{version}/export",
)
TIMEOUT_SECONDS = 120


def _two_users(harness: ApiHarness) -> dict[str, dict[str, Any]]:
    """alice and bob, each with two exportable adapter versions (concepts ``dog`` and ``cat``), a
    queued concept ``owl`` with its train job, and a finished generation with its image."""
    backbone = build_tiny_backbone(seed=0)
    states = states_after_each_task(backbone, method="c_lora", concepts=["dog", "cat"])
    store = LocalStore(harness.settings.data_dir)
    users: dict[str, dict[str, Any]] = {}
    for name in ("alice", "bob"):
        user_id, headers = harness.user(name)
        versions = publish_all(harness.session_factory, store, user_id=user_id, states=states)
        with harness.session_factory() as session:
            request = TrainRequest(name="owl", class_word=None, method="c_lora", steps=None)
            concept, job = create_train_job(
                session, user_id=user_id, request=request, uploads=[], max_attempts=3
            )
            session.commit()
        generated = seed_generated_image(harness, user_id=user_id)
        key = headers["Authorization"].removeprefix("Bearer ")
        users[name] = {"key": key, "ids": [user_id, *versions, concept.id, job.id, *generated.values()]}
    return users


def test_stateful_schemathesis_with_two_users_finds_no_failure_and_no_cross_user_access(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(data_dir=tmp_path / "data", database_url=sqlite_url, **NO_LIMITS)
    factory = make_session_factory(sqlite_url)
    users = _two_users(ApiHarness(client=None, settings=settings, session_factory=factory, dispatches=[]))
    factory.kw["bind"].dispose()
    app = create_app(settings, dispatcher=lambda: None)
    excluded = _operation_ids(app.openapi(), EXCLUDED)
    root = Path(__file__).resolve().parents[1]
    report = tmp_path / "replays.jsonl"
    env = {
        **os.environ,
        "SCHEMATHESIS_TELEMETRY": "false",
        "SCHEMATHESIS_HOOKS": "tests.api_contract_hooks",
        "MNEMO_CONTRACT_USERS": json.dumps(users),
        "MNEMO_CONTRACT_REPORT": str(report),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    outputs = []
    try:
        with serve(app) as base_url:
            for user in users.values():
                result = subprocess.run(
                    _schemathesis(
                        base_url,
                        key=user["key"],
                        excluded=excluded,
                        checks=STATEFUL_CHECKS,
                        phases="stateful",
                        max_examples=MAX_EXAMPLES,
                    ),
                    capture_output=True,
                    text=True,
                    timeout=TIMEOUT_SECONDS,
                    env=env,
                    cwd=root,
                    check=False,
                )
                outputs.append(result.stdout + result.stderr)
                assert result.returncode == 0, outputs[-1][-12000:]
    finally:
        app.state.services.session_factory.kw["bind"].dispose()
    for output in outputs:
        links = re.search(r"API Links:\s+(\d+) covered", output)
        assert links and int(links.group(1)) >= len(LINKS), output[-3000:]  # at least as many as declared
    replays = [json.loads(line) for line in report.read_text().splitlines()]
    assert {r["status"] for r in replays} == {404}
    # Each user's objects were asked for by the other one, through every kind of id lookup.
    reached = {(r["owner"], r["operation"]) for r in replays}
    for owner in users:
        for operation in REPLAYED:
            assert (owner, operation) in reached, (owner, operation, sorted(reached))


def test_the_isolation_check_fails_when_a_user_reaches_another_users_object(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The check is not vacuous: fabricated answers that leak fail it, the app's 404 passes it."""
    app = create_app(
        make_settings(data_dir=tmp_path / "data", database_url=sqlite_url), dispatcher=lambda: None
    )
    schema = schemathesis.openapi.from_dict(app.openapi())
    app.state.services.session_factory.kw["bind"].dispose()
    alices, bobs = str(uuid.uuid4()), str(uuid.uuid4())
    isolation = Isolation(
        users={"alice": {"key": "ka", "ids": [alices]}, "bob": {"key": "kb", "ids": [bobs]}}
    )
    get_job = schema["/v1/jobs/{job_id}"]["GET"].Case(path_parameters={"job_id": alices})
    list_concepts = schema["/v1/concepts"]["GET"].Case()

    def answer(status: int, body: dict[str, Any], *, key: str) -> Response:
        request = requests.Request("GET", "http://127.0.0.1/v1/x", headers={"Authorization": f"Bearer {key}"})
        headers = {"content-type": ["application/json"]}
        return Response(status, headers, json.dumps(body).encode(), request.prepare(), 0.0, True)

    isolation.check(answer(404, {"detail": "not found"}, key="kb"), get_job)  # what the app answers
    with pytest.raises(AssertionError, match="another user's id answered 200 to bob"):
        isolation.check(answer(200, {"id": alices}, key="kb"), get_job)
    with pytest.raises(AssertionError, match=f"showed alice another user's ids: \\['{bobs}'\\]"):
        isolation.check(answer(200, {"concepts": [{"id": alices}, {"id": bobs}]}, key="ka"), list_concepts)
