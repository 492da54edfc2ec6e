"""/docs and /redoc are served from vendored assets: no URL outside this server (docs/dashboard.md)."""

from __future__ import annotations

import re

import pytest

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@SQLITE_ONLY
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_local_assets(api, page: str) -> None:  # type: ignore[no-untyped-def]
    html = api.client.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assets = ASSET.findall(html.text)
    assert assets, html.text
    for url in assets:
        assert url.startswith("/static/vendor/"), url
        asset = api.client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert "fonts.googleapis" not in html.text and "cdn.jsdelivr" not in html.text
    assert '"validatorUrl": null' in html.text or page == "/redoc"
    # anything a bundle links from elsewhere (ReDoc's redoc.ly logo) is blocked by the browser
    assert "img-src 'self' data:" in html.headers["content-security-policy"]


@SQLITE_ONLY
def test_the_bearer_scheme_is_declared_for_the_authorize_button(api) -> None:  # type: ignore[no-untyped-def]
    spec = api.client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <api key>",
    }
    assert spec["paths"]["/v1/me"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


@SQLITE_ONLY
def test_vendored_libraries_ship_their_licences(api) -> None:  # type: ignore[no-untyped-def]
    for library in ("uplot", "swagger-ui", "redoc"):
        licence = api.client.get(f"/static/vendor/{library}/LICENSE.txt")
        assert licence.status_code == 200 and "license" in licence.text.lower()
