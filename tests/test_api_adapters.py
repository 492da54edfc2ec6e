"""GET /v1/adapters: the lineage chain, parents first, hashes that match the files."""

from __future__ import annotations

from core.storage import LocalStore as ArtifactStore
from core.storage import manifest_sha256


def test_lineage_chain_links_parents_and_matches_files(api) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    first = api.trained_concept(user_id=user_id, name="rex")
    second = api.trained_concept(user_id=user_id, name="tom")
    lineage = api.client.get("/v1/adapters", headers=headers).json()
    versions = lineage["versions"]
    assert lineage["head"] == second["version"]
    assert [v["id"] for v in versions] == [first["version"], second["version"]]
    assert [(v["version"], v["task_index"]) for v in versions] == [(1, 1), (2, 2)]
    assert versions[0]["parent_id"] is None and versions[1]["parent_id"] == versions[0]["id"]
    assert [v["concept_id"] for v in versions] == [first["concept"], second["concept"]]
    assert [v["method"] for v in versions] == ["dsc_ewc_dc", "dsc_ewc_dc"]
    store = ArtifactStore(api.settings.data_dir)
    for version in versions:
        directory = store.adapter_dir(user_id=user_id, version_id=version["id"])
        on_disk = store.describe_dir(directory)
        assert version["files"] == on_disk
        assert version["sha256"] == manifest_sha256(on_disk)
        assert version["size_bytes"] == sum(f["bytes"] for f in on_disk.values())
    concepts = api.client.get("/v1/concepts", headers=headers).json()["concepts"]
    assert [(c["token"], c["status"], c["task_index"]) for c in concepts] == [
        ("<rex>", "ready", 1),
        ("<tom>", "ready", 2),
    ]
