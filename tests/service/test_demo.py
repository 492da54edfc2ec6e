"""``mnemo demo`` end to end on the tiny backbone: three concepts in order, images, table, grid."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from core.cli.processes import mnemo_command

pytestmark = pytest.mark.slow


def test_demo_trains_three_concepts_in_order_and_writes_a_grid(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    out = tmp_path / "out"
    result = subprocess.run(
        mnemo_command(
            "demo",
            "--backbone",
            "tiny",
            "--steps",
            "2",
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(out),
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = re.findall(
        r"^(\S+)\s+(<\S+>)\s+(\d)\s+([\d.]+)\s+([\d.]+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)$",
        result.stdout,
        re.M,
    )
    assert [(name, token, task) for name, token, task, *_ in rows] == [
        ("bullseye", "<bullseye>", "1"),
        ("striped-square", "<striped-square>", "2"),
        ("smiley", "<smiley>", "3"),
    ]
    assert "raw images left in" in result.stdout and ": 0 files" in result.stdout
    assert "'a photo of <bullseye> and <striped-square>'" in result.stdout
    after = re.findall(r"^after task (\d) \((<\S+>)\): recognised in 8 images: (.*)$", result.stdout, re.M)
    assert [(task, token) for task, token, _ in after] == [
        ("1", "<bullseye>"),
        ("2", "<striped-square>"),
        ("3", "<smiley>"),
    ]
    assert re.fullmatch(r"<bullseye> \d+%  <striped-square> \d+%", after[1][2]), after  # every token so far
    report = json.loads((out / "recognition.json").read_text())
    assert [list(task) for task in report["recognition_after_task"]] == [
        ["<bullseye>"],
        ["<bullseye>", "<striped-square>"],
        ["<bullseye>", "<striped-square>", "<smiley>"],
    ]
    assert all(0.0 <= v <= 1.0 for task in report["recognition_after_task"] for v in task.values())
    assert report["kept"]["<bullseye>"]["at_the_end"] == report["recognition_after_task"][2]["<bullseye>"]
    assert set(report["pair"]) == {"prompt", "left", "right"}
    with Image.open(out / "grid.png") as grid:
        assert grid.format == "PNG" and grid.size[1] > grid.size[0]  # five prompt rows of four images
    assert not any((tmp_path / "data" / "uploads").iterdir())
