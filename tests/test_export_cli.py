"""``mnemo export``: the same zip as the API, read from the database and the store directly."""

from __future__ import annotations

import pytest

from core.cli.main import main
from core.engine.backbone import build_tiny_backbone
from core.storage import LocalStore
from tests.export_support import publish_all, states_after_each_task

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def run(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return int(done.value.code or 0)


@SQLITE_ONLY
def test_mnemo_export_writes_the_apis_zip(api, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    user_id, headers = api.user("alice")
    states = states_after_each_task(build_tiny_backbone(seed=0), method="dsc_ewc_dc", concepts=["dog", "cat"])
    _, head = publish_all(
        api.session_factory, LocalStore(api.settings.data_dir), user_id=user_id, states=states
    )
    where = ("--data-dir", str(api.settings.data_dir), "--database-url", api.settings.database_url)

    out = tmp_path / "alice.zip"
    assert run("export", "2", "--user", "alice", *where, "-o", str(out)) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert out.read_bytes() == api.client.get(f"/v1/adapters/{head}/export", headers=headers).content

    assert run("export", "3", "--user", "alice", *where) == 2
    assert "user 'alice' has no adapter version '3'" in capsys.readouterr().err
    assert run("export", "1", "--user", "carol", *where) == 2
    assert "no user 'carol'" in capsys.readouterr().err
    assert run("export", "1", "--user", "alice", "--data-dir", str(tmp_path / "nowhere")) == 2
    assert "no Mnemo database" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
