"""``mnemo users ...`` where there is no Mnemo database: one line, status 2, nothing created."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from core.cli.processes import mnemo_command


def _run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(mnemo_command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_users_create_without_a_database_says_what_to_do_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    result = _run("users", "create", "alice", cwd=tmp_path, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Mnemo database at "), result.stderr
    assert "mnemo db upgrade" in lines[0] and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no empty ./mnemo-data left behind


def test_users_list_on_an_unmigrated_database_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnemo.db").write_bytes(b"")  # an empty SQLite file: no tables
    result = _run("users", "list", "--data-dir", str(tmp_path / "data"), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "has no tables" in result.stderr and "Traceback" not in result.stderr


def test_users_create_after_db_upgrade_prints_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    data = str(tmp_path / "data")
    assert _run("db", "upgrade", "--data-dir", data, cwd=tmp_path, env=env).returncode == 0
    result = _run("users", "create", "alice", "--data-dir", data, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "API key (shown once" in result.stdout
