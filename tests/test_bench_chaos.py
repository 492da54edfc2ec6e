"""``mnemo bench chaos`` for about a minute (docs/faults.md): real API and worker processes, the
soak's own PostgreSQL and Redis, a handful of faults of every kind the soak injects; every
accepted job completes exactly once and nothing is lost, run twice or left behind."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from core.cli import processes

pytestmark = pytest.mark.slow


def test_a_short_soak_reads_all_zeros(tmp_path: Path) -> None:
    command = processes.mnemo_command(
        "bench", "chaos", "--minutes", "0.75", "--faults", "8", "--fault-every", "4", "--users", "2"
    )
    command += ["--settle-minutes", "4", "--seed", "7", "--out", str(tmp_path / "out"), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "out" / "soak.json").read_text())
    summary = report["summary"]
    assert done.returncode == 0, f"{report}\n{done.stderr[-3000:]}"
    assert report["line"].startswith("chaos: ") and f"accepted {summary['accepted']}," in report["line"]
    assert sum(report["injected"].values()) >= 4
    assert summary["accepted"] >= 3
    assert summary["completed_exactly_once"] == summary["accepted"]
    zeros = ("lost", "run_twice", "lineage_violations", "raw_bytes_left", "orphans_left")
    assert {key: summary[key] for key in zeros} == dict.fromkeys(zeros, 0), summary["details"]
