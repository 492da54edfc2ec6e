"""The crash points themselves (``core.faults``, docs/faults.md): disarmed unless both switches are
set, bounded by the ledger, and every registered point is placed in the code and documented."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core import faults

ROOT = Path(__file__).resolve().parents[1]
CODE = "from core.faults import crash_point; crash_point({name!r}); print('alive')"


def _run(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CODE.format(name=name)],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # a crash kills its process group: not this one
    )


def test_an_armed_point_does_nothing_without_the_enabling_switch() -> None:
    done = _run("train.after_store", MNEMO_CRASH_AT="*")
    assert done.returncode == 0 and "alive" in done.stdout
    assert "crash points stay disarmed" in done.stderr


def test_an_armed_point_kills_its_process_as_often_as_the_ledger_allows(tmp_path: Path) -> None:
    env = {
        faults.ENABLED_ENV: "1",
        faults.ARM_ENV: "train.after_store,cleanup.mid_delete@0",
        faults.LEDGER_ENV: str(tmp_path),
        faults.TIMES_ENV: "2",
    }
    outcomes = [_run("train.after_store", **env).returncode for _ in range(3)]
    assert outcomes == [-signal.SIGKILL, -signal.SIGKILL, 0]
    assert faults.fired(tmp_path) == ["train.after_store", "train.after_store"]
    assert _run("cleanup.mid_delete", **env).returncode == 0  # probability 0
    assert _run("generate.after_store", **env).returncode == 0  # not armed


def test_probabilities_and_unknown_points() -> None:
    assert faults.armed_probability("*@0.25,train.after_store", "train.after_store") == 1.0
    assert faults.armed_probability("*@0.25", "cleanup.mid_delete") == 0.25
    assert faults.armed_probability("train.after_store", "cleanup.mid_delete") == 0.0
    with pytest.raises(ValueError, match="unknown crash point"), pytest.MonkeyPatch.context() as patch:
        patch.setenv(faults.ARM_ENV, "*")
        faults.crash_point("no.such.point")


def test_every_point_is_placed_in_the_code_and_documented() -> None:
    sources = "\n".join(
        path.read_text() for folder in ("api", "core", "worker") for path in (ROOT / folder).rglob("*.py")
    )
    placed = set(re.findall(r'crash_point\("([a-z_.]+)"\)', sources))
    phases = re.findall(r'self\._timed\("([a-z]+)"', (ROOT / "core/engine/task.py").read_text())
    placed |= {f"train.after_{phase}" for phase in phases}
    assert placed == set(faults.POINTS)
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", (ROOT / "docs/faults.md").read_text(), re.M))
    assert documented == set(faults.POINTS)
