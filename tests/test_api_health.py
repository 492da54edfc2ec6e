"""/healthz, /readyz, /metrics, /docs and the OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_health_and_readiness(api) -> None:  # type: ignore[no-untyped-def]
    assert api.client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    checks = {"database": "ok", "broker": "ok", "workers": "none live (not required)"}
    assert ready.json() == {"status": "ok", "checks": checks}


def test_readiness_is_503_when_the_broker_or_database_is_down(api) -> None:  # type: ignore[no-untyped-def]
    settings = api.settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(settings, dispatcher=lambda: None)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["broker"].startswith("error")

    settings = api.settings.model_copy(
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    )
    with TestClient(create_app(settings, dispatcher=lambda: None)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["database"].startswith("error")


@SQLITE_ONLY
def test_metrics_count_requests_by_route_template_and_jobs_by_state(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    api.client.get("/v1/jobs/11111111-1111-1111-1111-111111111111", headers=headers)
    api.client.post("/v1/generate", headers=headers, json={"prompt": "a circle"})
    api.client.post(
        "/v1/concepts", headers=headers, data={"name": "x"}, files=[("images", ("a", b"no", "x/y"))]
    )
    text = api.client.get("/metrics").text
    assert 'mnemo_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} 1.0' in text
    assert "11111111" not in text  # ids are never labels
    assert 'mnemo_jobs{kind="generate",state="queued"} 1.0' in text
    assert 'mnemo_upload_rejections_total{status="415"} 1.0' in text


@SQLITE_ONLY
def test_openapi_documents_every_route_with_typed_schemas(api) -> None:  # type: ignore[no-untyped-def]
    assert api.client.get("/docs").status_code == 200
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/v1/concepts": {"get", "post"},
        "/v1/concepts/{concept_id}": {"get"},
        "/v1/jobs": {"get"},
        "/v1/jobs/{job_id}": {"get"},
        "/v1/jobs/{job_id}/events": {"get"},
        "/v1/jobs/{job_id}/cancel": {"post"},
        "/v1/generate": {"post"},
        "/generate": {"post"},
        "/v1/generations": {"get"},
        "/v1/images/{image_id}": {"get"},
        "/v1/adapters": {"get"},
        "/v1/me": {"get", "delete"},
        "/v1/admin/users": {"get", "post"},
        "/v1/admin/users/{user_id}/rotate": {"post"},
        "/v1/admin/users/{user_id}/disable": {"post"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    schemas = spec["components"]["schemas"]
    for name in (
        "ConceptCreated",
        "JobOut",
        "GenerateIn",
        "GenerateOut",
        "AdapterLineage",
        "JobList",
        "GenerationList",
        "UnknownTokenOut",
    ):
        assert name in schemas
    assert schemas["JobOut"]["properties"]["state"]["enum"] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]
    upload = paths["/v1/concepts"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload


def test_readiness_with_the_production_broker(api) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL (the postgres param) or SQLite with a real Redis broker."""
    import os

    redis_url = os.environ.get("MNEMO_TEST_REDIS_URL", "redis://127.0.0.1:6379") + "/15"
    settings = api.settings.model_copy(update={"broker_url": redis_url})
    with TestClient(create_app(settings, dispatcher=lambda: None)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {
        "database": "ok",
        "broker": "ok",
        "workers": "none live (not required)",
    }
