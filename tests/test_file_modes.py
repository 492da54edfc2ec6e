"""The service's data files are 0600 and its folders 0700 (issue 20, item 10).

Real processes on the embedded configuration: ``mnemo db upgrade``, ``mnemo users create`` and
``mnemo api`` (which stores an upload and sends its job to the embedded broker) on a data
directory that already exists with the old 0755 mode. Afterwards the data directory and every
folder below it are 0700, and every file — ``mnemo.db`` and its journals, ``broker.sqlite``,
the key pepper, the stored upload — is 0600.
"""

from __future__ import annotations

import io
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from core.cli import processes


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _modes(root: Path) -> dict[str, str]:
    """``relative path -> octal mode`` of ``root`` and everything below it."""
    paths = [root, *sorted(root.rglob("*"))]
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in paths if p.exists()}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """An embedded environment whose data directory exists with mode 0755; (env, data dir)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    env = processes.embedded_environment(
        data_dir=data_dir, backbone="toy", preset="toy", port=processes.free_port(), PYTHONUNBUFFERED="1"
    )
    yield env, data_dir


def _mnemo(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        processes.mnemo_command(*args), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_files_are_0600_and_folders_0700(service: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, data_dir = service
    _mnemo(env, "db", "upgrade")
    key = re.search(r"(mnemo_[A-Za-z0-9_-]{43})", _mnemo(env, "users", "create", "fay"))
    assert key is not None
    api = processes.start(processes.mnemo_command("api"), env=env, log_path=tmp_path / "api.log")
    try:
        base_url = f"http://127.0.0.1:{env['MNEMO_PORT']}"
        processes.wait_http_ok(f"{base_url}/readyz", timeout=60, process=api)
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        files = [("images", ("a.png", _png(), "image/png"))]
        answer = httpx.post(f"{base_url}/v1/concepts", headers=headers, data={"name": "fern"}, files=files)
        assert answer.status_code == 202, answer.text
    finally:
        processes.stop(api)

    modes = _modes(data_dir)
    assert {"mnemo.db", "broker.sqlite", "api-key-pepper"} <= set(modes), modes
    assert any(name.startswith("uploads/") and not (data_dir / name).is_dir() for name in modes), modes
    wrong = {
        name: mode
        for name, mode in modes.items()
        if mode != ("0o700" if (data_dir / name).is_dir() else "0o600")
    }
    assert wrong == {}, modes
