"""``mnemo bench api`` runs end to end (tiny backbone, a handful of requests) and reports its figures."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from core.cli.processes import mnemo_command

pytestmark = pytest.mark.slow


def test_bench_api_reports_overhead_and_polling_figures(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    args = ["bench", "api", "--json", "--backbone", "tiny", "--requests", "2", "--steps", "3"]
    args += ["--clients", "5", "--poll-seconds", "1", "--poll-requests", "200", "--data-dir", str(tmp_path)]
    result = subprocess.run(
        mnemo_command(*args), env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    generate, polling = summary["generate"], summary["polling"]
    assert len(generate["end_to_end_s"]) == len(generate["direct_s"]) == 2
    assert generate["end_to_end_median_s"] > 0 and generate["direct_median_s"] > 0
    e2e, direct = generate["end_to_end_median_s"], generate["direct_median_s"]
    rounding = 5e-5 / direct * (1 + e2e / direct) + 1e-4  # both medians are printed to 4 decimals
    assert generate["overhead_ratio"] == pytest.approx(e2e / direct - 1, abs=rounding)
    assert 0 < polling["requests"] <= 200 and polling["errors"] == 0
    assert 0 < polling["p50_ms"] <= polling["p99_ms"]
