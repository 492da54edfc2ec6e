"""Who may read ``/metrics`` (issue 20, item 10): open by default, a bearer token when
``MNEMO_METRICS_TOKEN`` is set, nobody when ``MNEMO_METRICS_ENABLED=false``."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
TOKEN = "scrape-" + "t0ken" * 6
SECRET = SecretStr(TOKEN)


def _client(api, **update: object) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(api.settings.model_copy(update=update), dispatcher=lambda: None))


@SQLITE_ONLY
def test_a_metrics_token_is_required_once_it_is_set(api) -> None:  # type: ignore[no-untyped-def]
    _, user = api.user("alice")
    with _client(api, metrics_token=SECRET) as client:
        anonymous = client.get("/metrics")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        assert "mnemo_http_requests" not in anonymous.text
        assert client.get("/metrics", headers=user).status_code == 401  # an API key is not the token
        assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
        allowed = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200 and "mnemo_http_requests_total" in allowed.text


@SQLITE_ONLY
def test_metrics_can_be_turned_off_and_are_open_by_default(api) -> None:  # type: ignore[no-untyped-def]
    with _client(api, metrics_enabled=False, metrics_token=SECRET) as client:
        assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    assert api.client.get("/metrics").status_code == 200
