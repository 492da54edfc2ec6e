"""``GET /v1/adapters/{version}/export``: the owner gets the zip, anyone else the 404 of a missing id.

The zip holds the diffusers and kohya LoRAs, one embedding per token and a card whose sha256
entries match the files; a VeRA state is refused with 409, a textual-inversion one has no LoRA,
a stored file that does not match its sha256 is a 500 with the reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from core.engine.backbone import Backbone, build_tiny_backbone
from core.storage import LocalStore
from tests.export_support import publish_all, states_after_each_task

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
MISSING = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return build_tiny_backbone(seed=0)


def learn(api, backbone: Backbone, *, user_id: str, method: str = "c_lora", **kwargs: object) -> list[str]:  # type: ignore[no-untyped-def]
    """Two concepts (dog, cat) published for the user; their version ids."""
    states = states_after_each_task(backbone, method=method, concepts=["dog", "cat"], **kwargs)
    return publish_all(api.session_factory, LocalStore(api.settings.data_dir), user_id=user_id, states=states)


def unzip(content: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(content))
    return {name: archive.read(name) for name in archive.namelist()}


def test_a_user_exports_their_own_versions_and_no_one_elses(api, backbone: Backbone) -> None:  # type: ignore[no-untyped-def]
    alice_id, alice = api.user("alice")
    _, bob = api.user("bob")
    first, head = learn(api, backbone, user_id=alice_id)

    answer = api.client.get(f"/v1/adapters/{head}/export", headers=alice)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert f"mnemo-export-{head}.zip" in answer.headers["content-disposition"]
    files = unzip(answer.content)
    assert set(files) == {
        "card.json",
        "diffusers/pytorch_lora_weights.safetensors",
        "kohya/mnemo_lora.safetensors",
        "embeddings/dog.safetensors",
        "embeddings/cat.safetensors",
    }
    card = json.loads(files["card.json"])
    assert card["backbone"] == api.settings.backbone and card["method"] == "c_lora"
    assert [t["token"] for t in card["tokens"]] == ["<dog>", "<cat>"]
    assert [v["id"] for v in card["lineage"]] == [first, head]
    assert card["lora"]["rank"] == 8  # C-LoRA: two rank-4 task LoRAs side by side
    assert card["files"] == {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in files.items()
        if name != "card.json"
    }
    assert api.client.get(f"/v1/adapters/{head}/export", headers=alice).content == answer.content

    assert api.client.get("/v1/adapters/³/export", headers=alice).status_code == 404  # a digit, not ASCII

    by_position = api.client.get("/v1/adapters/1/export", headers=alice)
    assert [v["id"] for v in json.loads(unzip(by_position.content)["card.json"])["lineage"]] == [first]

    missing = api.client.get(f"/v1/adapters/{MISSING}/export", headers=bob)
    for ref in (head, first, "1"):
        other = api.client.get(f"/v1/adapters/{ref}/export", headers=bob)
        assert (other.status_code, other.json()) == (404, missing.json())
    assert missing.status_code == 404
    assert api.client.get(f"/v1/adapters/{head}/export").status_code == 401


@SQLITE_ONLY
def test_a_vera_state_is_refused_with_the_reason(api, backbone: Backbone) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    _, head = learn(api, backbone, user_id=user_id, method="dsc_ewc_dc", adapter_type="vera")
    answer = api.client.get(f"/v1/adapters/{head}/export", headers=headers)
    assert answer.status_code == 409
    assert "VeRA" in answer.json()["detail"]


@SQLITE_ONLY
def test_a_textual_inversion_version_has_embeddings_and_no_lora(api, backbone: Backbone) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    _, head = learn(api, backbone, user_id=user_id, method="textual_inversion", kind="none")
    files = unzip(api.client.get(f"/v1/adapters/{head}/export", headers=headers).content)
    assert set(files) == {"card.json", "embeddings/dog.safetensors", "embeddings/cat.safetensors"}
    assert json.loads(files["card.json"])["lora"] is None


@SQLITE_ONLY
def test_a_stored_file_that_does_not_match_its_sha256_is_an_error(api, backbone: Backbone) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    first, head = learn(api, backbone, user_id=user_id)
    (api.settings.data_dir / "adapters" / user_id / first / "adapter.safetensors").write_bytes(b"tampered")
    answer = api.client.get(f"/v1/adapters/{head}/export", headers=headers)
    assert answer.status_code == 500
    assert "does not match its sha256" in answer.json()["detail"]
