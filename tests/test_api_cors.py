"""CORS is off by default and answers only the configured origins (docs/api.md, "CORS")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.db.users import create_user
from tests.conftest import make_settings

APP = "https://app.example"
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
}


@pytest.fixture
def client_for(
    sqlite_url: str, tmp_path: Path
) -> Iterator[Callable[[str], tuple[TestClient, dict[str, str]]]]:
    """``client_for(MNEMO_CORS_ORIGINS)``: a client of an app so configured, and a user's headers."""
    from api.app import create_app

    opened: list[Any] = []

    def build(origins: str) -> tuple[TestClient, dict[str, str]]:
        settings = make_settings(data_dir=tmp_path / "data", database_url=sqlite_url, cors_origins=origins)
        app = create_app(settings, dispatcher=lambda: None)
        factory = app.state.services.session_factory
        with factory() as session:
            issued = create_user(session, name=f"u{len(opened)}", pepper=settings.pepper)
            session.commit()
        client = TestClient(app)
        opened.append((client, factory))
        return client, {"Authorization": f"Bearer {issued.key}"}

    yield build
    for client, factory in opened:
        client.close()
        factory.kw["bind"].dispose()


def test_off_by_default(client_for: Any) -> None:
    client, headers = client_for("")
    answer = client.get("/v1/jobs", headers={**headers, "Origin": APP})
    assert answer.status_code == 200
    assert not [h for h in answer.headers if h.startswith("access-control-")]
    assert client.options("/v1/generate", headers=PREFLIGHT).status_code == 405


def test_listed_origins_get_preflights_and_headers(client_for: Any) -> None:
    client, headers = client_for(f"{APP}/, https://other.example")
    preflight = client.options("/v1/generate", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == APP
    assert "idempotency-key" in preflight.headers["access-control-allow-headers"].lower()
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in preflight.headers  # cookies never cross origins

    answer = client.get("/v1/jobs", headers={**headers, "Origin": APP})
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()

    stranger = client.options("/v1/generate", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert stranger.status_code == 400 and "access-control-allow-origin" not in stranger.headers
    plain = client.get("/v1/jobs", headers={**headers, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in plain.headers


def test_a_star_allows_any_origin(client_for: Any) -> None:
    client, headers = client_for("*")
    answer = client.get("/v1/jobs", headers={**headers, "Origin": "https://anywhere.example"})
    assert answer.headers["access-control-allow-origin"] == "*"
