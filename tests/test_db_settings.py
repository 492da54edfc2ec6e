"""Settings from the environment (MNEMO_*): defaults derived from the data dir, the key pepper."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.settings import Settings, settings_reference


def test_defaults_derive_from_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, _, _ in settings_reference():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MNEMO_DATA_DIR", str(tmp_path / "d"))
    settings = Settings()
    assert settings.data_dir == (tmp_path / "d").resolve()
    assert settings.database_url == f"sqlite:///{tmp_path / 'd' / 'mnemo.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'd' / 'broker.sqlite'}"
    assert settings.embedded_broker and settings.is_sqlite
    assert (settings.backbone, settings.engine_preset) == ("toy", "toy")
    assert not (tmp_path / "d").exists()  # building settings touches no disk


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MNEMO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MNEMO_DATABASE_URL", "postgresql+psycopg://u@db/mnemo")
    monkeypatch.setenv("MNEMO_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("MNEMO_MAX_FILES_PER_CONCEPT", "5")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u@db/mnemo" and not settings.is_sqlite
    assert settings.broker_url == "redis://redis:6379/0" and not settings.embedded_broker
    assert settings.max_files_per_concept == 5
    monkeypatch.setenv("MNEMO_MAX_FILES_PER_CONCEPT", "0")
    with pytest.raises(ValueError, match="max_files_per_concept"):
        Settings()


def test_pepper_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).pepper
    path = tmp_path / "api-key-pepper"
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(data_dir=tmp_path).pepper == first
    assert Settings(data_dir=tmp_path, api_key_pepper="configured").pepper == b"configured"


def test_every_setting_is_documented() -> None:
    rows = settings_reference()
    assert len(rows) == len(Settings.model_fields)
    assert all(name.startswith("MNEMO_") and description for name, _, description in rows)


def test_concurrent_first_use_agrees_on_one_pepper(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        peppers = set(pool.map(lambda _: Settings(data_dir=tmp_path).pepper, range(32)))
    assert len(peppers) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["api-key-pepper"]  # no temp files left


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12"])
def test_a_worker_device_is_one_torch_names(device: str) -> None:
    assert Settings(device=device).device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda:0,cuda:1", " cuda", "CUDA"])
def test_any_other_device_is_refused(device: str) -> None:
    with pytest.raises(ValueError, match="device"):
        Settings(device=device)


def test_a_worker_with_a_bad_device_stops_with_one_line(tmp_path: Path) -> None:
    """``mnemo worker --device`` (or MNEMO_DEVICE) naming no torch device: a one-line error, exit 1."""
    import subprocess

    from core.cli import processes

    env = {"PATH": "/usr/bin:/bin", "MNEMO_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        processes.mnemo_command("worker", "--device", "cuda:x"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stderr.startswith("mnemo: invalid setting: device:"), done.stderr
