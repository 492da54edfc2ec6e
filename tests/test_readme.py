"""The README's runnable shell blocks (marked ``<!-- doctest: NAME -->``) run as written.

Each marked block runs in a fresh folder (with ``.venv`` linked from the checkout) under
``bash -euo pipefail``, against the ``mnemo serve`` the block itself starts; only the port is
moved off 8000 to a free one, so that a machine with something on 8000 still runs the test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- doctest: (?P<name>[\w-]+) -->\n```bash\n(?P<body>.*?)```", re.S)

pytestmark = pytest.mark.slow


def readme_blocks() -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer((ROOT / "README.md").read_text())}


def test_the_readme_marks_its_runnable_blocks():
    assert set(readme_blocks()) == {"api"}


def test_the_api_walkthrough_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    script = readme_blocks()["api"].replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")} | {"MNEMO_PORT": str(port)}
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        else:
            subprocess.run(["pkill", "-KILL", "-s", str(process.pid)], check=False)  # the server, if left
    log = (tmp_path / "serve.log").read_text() if (tmp_path / "serve.log").exists() else ""
    assert process.returncode == 0, output + log[-3000:]
    assert re.search(r"^training job \S+: succeeded$", output, re.M), output
    assert sorted(p.name for p in (tmp_path / "smiley").iterdir()) == [f"smiley-{i}.png" for i in range(1, 7)]
    assert (tmp_path / "smiley-generated.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert '"token": "<smiley>"' in output
    assert output.strip().splitlines()[-1] == "200"  # DELETE /v1/me
    assert not any((tmp_path / "mnemo-data" / "uploads").rglob("*.*"))  # no raw upload left
