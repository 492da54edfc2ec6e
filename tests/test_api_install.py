"""An API-only install serves (issue 16, item 6): ``pip install "mnemo[api]"`` into a fresh virtual
environment brings no torch, and ``mnemo api`` in it answers /healthz and authenticated requests.

The checkout's packages are copied to a temporary folder and installed from there, non-editable,
as the ``api`` image installs them (a build inside the checkout would write ``build/`` into it).
pip reads the package index as configured on this machine; its cache and every temporary file
stay under the test's own temporary folder.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from core.cli import processes
from tests.test_deployment import ML, api_health_command, render

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "core", "api", "worker", "migrations", "bench")
NOT_INSTALLED = (*ML, "numpy", "safetensors", "scikit-image")


def copy_checkout(target: Path) -> Path:
    target.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "results")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    return target


def run(argv: list[str], *, env: dict[str, str], timeout: float, cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{argv[:3]} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_api_only_install_serves_without_torch(tmp_path: Path) -> None:
    source = copy_checkout(tmp_path / "src")
    venv = tmp_path / "venv"
    home = tmp_path / "home"
    (tmp_path / "tmp").mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNEMO_", "VIRTUAL_ENV", "PYTHON"))}
    env |= {
        "HOME": str(home),
        "TMPDIR": str(tmp_path / "tmp"),
        "PIP_CACHE_DIR": str(tmp_path / "pip-cache"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
    }
    # --without-pip would leave pip out; a plain venv has its own, and no system site-packages.
    run([sys.executable, "-m", "venv", str(venv)], env=env, timeout=120, cwd=tmp_path)
    python = str(venv / "bin" / "python")
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    run([python, "-m", "pip", "install", "--quiet", f"{source}[api]"], env=env, timeout=1200, cwd=tmp_path)

    installed = run([python, "-m", "pip", "list", "--format=freeze"], env=env, timeout=60, cwd=tmp_path)
    distributions = {line.split("==")[0].lower() for line in installed.split()}
    assert "mnemo" in distributions and "fastapi" in distributions
    assert distributions.isdisjoint(NOT_INSTALLED), sorted(distributions & set(NOT_INSTALLED))
    no_torch = subprocess.run(
        [python, "-c", "import torch"], env=env, capture_output=True, text=True, timeout=60
    )
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr

    data = tmp_path / "data"
    mnemo = str(venv / "bin" / "mnemo")
    run([mnemo, "db", "upgrade", "--data-dir", str(data)], env=env, timeout=120, cwd=tmp_path)
    created = run(
        [mnemo, "users", "create", "alice", "--data-dir", str(data)], env=env, timeout=120, cwd=tmp_path
    )
    key = re.search(r"(mnemo_[A-Za-z0-9_-]{43})", created)
    assert key, created
    headers = {"Authorization": f"Bearer {key[1]}"}

    port = processes.free_port()
    api = processes.start(
        [
            mnemo,
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--log-level",
            "warning",
        ],
        env=env,
        log_path=tmp_path / "api.log",
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        processes.wait_http_ok(f"{base}/healthz", timeout=120, process=api)
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/healthz").json()["status"] == "ok"
            assert http.get("/readyz").status_code == 200  # SQLite and the embedded broker
            assert http.get("/v1/adapters").status_code == 401
            assert http.get("/v1/adapters", headers=headers).status_code == 200
            upload = http.post(
                "/v1/concepts",
                headers=headers,
                data={"name": "dog"},
                files=[("images", ("a.png", png(), "image/png"))],
            )
            assert upload.status_code == 202, upload.text
            job = http.get(f"/v1/jobs/{upload.json()['job']['id']}", headers=headers)
            assert job.status_code == 200 and job.json()["state"] == "queued"  # no worker here
        # The compose file's API health check, run with this environment's python.
        health = api_health_command(render(), port)
        assert health[0] == "python"
        run([python, *health[1:]], env=env, timeout=30, cwd=tmp_path)
    finally:
        processes.stop(api)
    log = (tmp_path / "api.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
