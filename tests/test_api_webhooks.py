"""``/v1/me/webhook``: set, read, rotate, delete, list deliveries; URL validation; erasure.

SQLite and PostgreSQL, through the app (docs/webhooks.md).
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.db.enqueue import TrainRequest, create_train_job
from core.db.models import Webhook, WebhookDelivery
from core.webhooks.events import EVENTS
from core.webhooks.signing import secret_check

URL = "https://hooks.example.com/mnemo"


def _put(api, headers, **body):  # type: ignore[no-untyped-def]
    return api.client.put("/v1/me/webhook", headers=headers, json={"url": URL, **body})


def _stored(api, user_id: str) -> Webhook | None:  # type: ignore[no-untyped-def]
    with api.session_factory() as session:
        return session.scalar(select(Webhook).where(Webhook.user_id == user_id))


def _queue_job(api, user_id: str, name: str) -> str:  # type: ignore[no-untyped-def]
    with api.session_factory() as session:
        request = TrainRequest(name=name, class_word=None, method="dsc_ewc_dc", steps=None)
        _, job = create_train_job(session, user_id=user_id, request=request, uploads=[], max_attempts=3)
        session.commit()
        return job.id


def test_the_secret_is_shown_once_kept_across_updates_and_rotated(api) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    assert api.client.get("/v1/me/webhook", headers=headers).status_code == 404

    created = _put(api, headers, events=["job.succeeded", "job.failed"])
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert created.json()["events"] == ["job.succeeded", "job.failed"]
    assert _stored(api, user_id).secret_check == secret_check(secret)

    shown = api.client.get("/v1/me/webhook", headers=headers)
    assert shown.status_code == 200 and shown.json()["secret"] is None
    assert shown.json()["url"] == URL

    updated = _put(api, headers, url=URL + "/v2")
    assert updated.status_code == 200 and updated.json()["secret"] is None
    assert updated.json()["events"] == list(EVENTS)  # the default: every event
    assert _stored(api, user_id).secret_check == secret_check(secret)  # same secret

    rotated = api.client.post("/v1/me/webhook/secret", headers=headers)
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != secret
    assert _stored(api, user_id).secret_check == secret_check(new_secret)

    assert api.client.delete("/v1/me/webhook", headers=headers).status_code == 204
    assert api.client.get("/v1/me/webhook", headers=headers).status_code == 404
    assert api.client.delete("/v1/me/webhook", headers=headers).status_code == 404
    assert api.client.post("/v1/me/webhook/secret", headers=headers).status_code == 404


BAD_URLS = [
    ("ftp://hooks.example.com/in", "must start with http:// or https://"),
    ("hooks.example.com/in", "must start with http:// or https://"),
    ("http:///in", "has no host"),
    ("https://user:pass@hooks.example.com/in", "user name or password"),
    ("https://hooks.example.com/in#top", "#fragment"),
    ("https://hooks.example.com:99999/in", "not a valid URL"),
    ("https://hooks.example.com/a b", "space or a control character"),
    ("http://localhost:8080/in", "localhost"),
    ("http://127.0.0.1/in", "127.0.0.1 is not a public address"),
    ("http://10.1.2.3/in", "10.1.2.3 is not a public address"),
    ("http://192.168.0.10/in", "is not a public address"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is not a public address"),
    ("http://[::1]:9000/in", "::1 is not a public address"),
    ("http://[::ffff:10.0.0.1]/in", "10.0.0.1 is not a public address"),
    ("http://0.0.0.0/in", "is not a public address"),
]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_or_private_urls_are_a_clear_422(api) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    for url, reason in BAD_URLS:
        answer = _put(api, headers, url=url)
        assert answer.status_code == 422, url
        assert reason in answer.json()["detail"], (url, answer.json())
    assert _stored(api, user_id) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_unknown_events_and_fields_are_422(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    assert _put(api, headers, events=["job.exploded"]).status_code == 422
    assert _put(api, headers, events=[]).status_code == 422
    assert _put(api, headers, secret="mine").status_code == 422


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_operator_setting_allows_private_addresses(api) -> None:  # type: ignore[no-untyped-def]
    _, headers = api.user("alice")
    assert _put(api, headers, url="http://127.0.0.1:9/in").status_code == 422
    api.settings.webhook_allow_private_addresses = True
    assert _put(api, headers, url="http://127.0.0.1:9/in").status_code == 201


def test_deliveries_are_listed_newest_first_with_their_status(api) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    other_id, other = api.user("bob")
    assert _put(api, headers, events=["job.queued"]).status_code == 201
    assert _put(api, other).status_code == 201
    jobs = [_queue_job(api, user_id, name) for name in ("mug", "dog", "cat")]
    _queue_job(api, other_id, "mug")

    first = api.client.get("/v1/me/webhook/deliveries?limit=2", headers=headers).json()
    rest = api.client.get(
        f"/v1/me/webhook/deliveries?limit=2&cursor={first['next_cursor']}", headers=headers
    ).json()
    listed = first["deliveries"] + rest["deliveries"]
    assert rest["next_cursor"] is None
    assert [d["job_id"] for d in listed] == jobs[::-1]
    assert {(d["event"], d["status"], d["attempts"]) for d in listed} == {("job.queued", "pending", 0)}
    assert all(d["next_attempt_at"] is not None and d["delivered_at"] is None for d in listed)
    bad = api.client.get("/v1/me/webhook/deliveries?cursor=nonsense", headers=headers)
    assert bad.status_code == 400


def test_erasure_deletes_the_webhook_and_its_deliveries(api) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    other_id, other = api.user("bob")
    for who, key in ((user_id, headers), (other_id, other)):
        assert _put(api, key).status_code == 201
        _queue_job(api, who, "mug")

    assert api.client.delete("/v1/me", headers=headers).status_code == 200

    with api.session_factory() as session:
        hooks = session.scalars(select(Webhook.user_id)).all()
        rows = session.execute(
            select(WebhookDelivery.user_id, func.count()).group_by(WebhookDelivery.user_id)
        ).all()
    assert hooks == [other_id]
    assert [tuple(row) for row in rows] == [(other_id, 1)]
