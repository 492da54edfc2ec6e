"""Per-user quotas and failed-authentication lockouts answer 429 with Retry-After (issue 20 item 9).

Probed before: 40 maximal generate requests in 20 s all got 202, concepts per user were
unlimited, and bad keys could be tried without end. Every test runs on SQLite and PostgreSQL
(the quotas count rows).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.app import create_app
from api.limits import AuthThrottle
from core.db.models import Concept, ConceptStatus, Generation, Job, JobState, utcnow
from tests.conftest import ApiHarness, encode_image, make_settings

QUOTAS = {
    "quota_concepts_per_user": 2,
    "quota_unfinished_jobs_per_user": 3,
    "quota_images_per_window": 10,
    "quota_window_seconds": 600,
    "quota_retry_after_seconds": 7,
    "auth_failures_per_address": 3,
    "auth_lockout_seconds": 60,
}


@pytest.fixture
def limited(database_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    """The API with small quotas (``QUOTAS``) on ``database_url``."""
    settings = make_settings(data_dir=tmp_path / "data", database_url=database_url, **QUOTAS)
    app = create_app(settings, dispatcher=lambda: None)
    with TestClient(app) as client:
        yield ApiHarness(
            client=client,
            settings=settings,
            session_factory=app.state.services.session_factory,
            dispatches=[],
        )
    app.state.services.session_factory.kw["bind"].dispose()


def new_concept(api: ApiHarness, headers: dict[str, str], name: str):  # type: ignore[no-untyped-def]
    files = [("images", ("a.png", encode_image("PNG"), "image/png"))]
    return api.client.post("/v1/concepts", headers=headers, data={"name": name}, files=files)


def generate(api: ApiHarness, headers: dict[str, str], n: int = 1):  # type: ignore[no-untyped-def]
    return api.client.post("/v1/generate", headers=headers, json={"prompt": "a red circle", "n": n})


def finish_jobs(api: ApiHarness, *, user_id: str) -> None:
    with api.session_factory() as session:
        session.execute(update(Job).where(Job.user_id == user_id).values(state=JobState.SUCCEEDED.value))
        session.commit()


def assert_429(response, *, at_most: int, at_least: int = 1) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.text
    assert at_least <= int(response.headers["Retry-After"]) <= at_most, response.headers
    assert response.json()["detail"]


def test_concepts_per_user(limited: ApiHarness) -> None:
    alice_id, alice = limited.user("alice")
    _, bob = limited.user("bob")
    assert [new_concept(limited, alice, name).status_code for name in ("a", "b")] == [202, 202]
    finish_jobs(limited, user_id=alice_id)  # not the unfinished-jobs quota
    refused = new_concept(limited, alice, "c")
    assert_429(refused, at_least=600, at_most=600)
    assert "concepts" in refused.json()["detail"]
    assert len(limited.files_under("uploads")) == 2  # the refused upload stored nothing
    assert new_concept(limited, bob, "c").status_code == 202  # per user
    with limited.session_factory() as session:  # a failed concept does not count
        session.execute(
            update(Concept)
            .where(Concept.user_id == alice_id, Concept.name == "a")
            .values(status=ConceptStatus.FAILED.value)
        )
        session.commit()
    assert new_concept(limited, alice, "c").status_code == 202


def test_unfinished_jobs_per_user(limited: ApiHarness) -> None:
    alice_id, alice = limited.user("alice")
    _, bob = limited.user("bob")
    assert [generate(limited, alice).status_code for _ in range(3)] == [202, 202, 202]
    assert_429(generate(limited, alice), at_least=7, at_most=7)
    assert_429(new_concept(limited, alice, "rex"), at_least=7, at_most=7)  # both kinds count
    assert generate(limited, bob).status_code == 202
    finish_jobs(limited, user_id=alice_id)
    assert generate(limited, alice).status_code == 202


def test_images_per_window_and_its_retry_after(limited: ApiHarness) -> None:
    alice_id, alice = limited.user("alice")
    assert [generate(limited, alice, n=4).status_code for _ in range(2)] == [202, 202]
    finish_jobs(limited, user_id=alice_id)
    assert_429(generate(limited, alice, n=4), at_least=590, at_most=600)  # 8 + 4 > 10
    assert generate(limited, alice, n=2).status_code == 202  # 8 + 2 = 10
    finish_jobs(limited, user_id=alice_id)
    # The oldest generations fall out of the window in 30 s: 4 images are then allowed again.
    with limited.session_factory() as session:
        oldest = session.scalars(
            select(Generation).where(Generation.user_id == alice_id).order_by(Generation.created_at).limit(2)
        ).all()
        for generation in oldest:
            generation.created_at = utcnow() - timedelta(seconds=570)
        session.commit()
    assert_429(generate(limited, alice, n=4), at_least=29, at_most=31)


def test_failed_keys_lock_the_address_out(limited: ApiHarness) -> None:
    clock = [1000.0]
    limited.client.app.state.auth_throttle = AuthThrottle(limit=3, window_seconds=60, clock=lambda: clock[0])
    _, alice = limited.user("alice")
    bad = {"Authorization": "Bearer mnemo_" + "x" * 43}
    assert limited.client.get("/v1/concepts").status_code == 401  # no key: nothing guessed, not counted
    assert [limited.client.get("/v1/concepts", headers=bad).status_code for _ in range(3)] == [401] * 3
    assert_429(limited.client.get("/v1/concepts", headers=bad), at_least=60, at_most=60)
    assert_429(limited.client.get("/v1/concepts", headers=alice), at_least=60, at_most=60)  # even a good key
    # Another address is not locked out.
    with TestClient(limited.client.app, client=("203.0.113.7", 50000)) as other:
        assert other.get("/v1/concepts", headers=alice).status_code == 200
    clock[0] += 45
    assert_429(limited.client.get("/v1/concepts", headers=alice), at_least=15, at_most=15)
    clock[0] += 15
    assert limited.client.get("/v1/concepts", headers=alice).status_code == 200
    # The lockout is over: a new failure starts a new count.
    assert limited.client.get("/v1/concepts", headers=bad).status_code == 401
    assert limited.client.get("/v1/concepts", headers=alice).status_code == 200  # 1 failure in the window


def test_the_admin_login_form_counts_and_obeys_the_lockout(limited: ApiHarness) -> None:
    from tests.test_admin_pages import login

    limited.client.app.state.auth_throttle = AuthThrottle(limit=3, window_seconds=60)
    _, admin = limited.user("root", role="admin")
    assert [login(limited, "mnemo_wrong").status_code for _ in range(3)] == [401] * 3
    assert_429(login(limited, admin["Authorization"].removeprefix("Bearer ")), at_most=60)
    assert_429(limited.client.get("/v1/me", headers=admin), at_most=60)  # one lockout for both


def test_defaults_refuse_the_probe_of_forty_maximal_generations(api) -> None:  # type: ignore[no-untyped-def]
    _, alice = api.user("alice")
    codes = [
        api.client.post("/v1/generate", headers=alice, json={"prompt": "a circle", "n": 8}).status_code
        for _ in range(40)
    ]
    assert codes.count(202) == api.settings.quota_unfinished_jobs_per_user
    assert set(codes[api.settings.quota_unfinished_jobs_per_user :]) == {429}
