"""The import warm-up gate of a pool process (``worker.warmup``; issue 20, item 5).

A task waits until the warm-up thread has finished importing, so the two never import the same
modules at once; a failed warm-up still opens the gate. (The race itself, with real worker
processes: ``tests/service/test_worker_startup.py``.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker import warmup


@pytest.fixture
def module_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n.startswith("mnemo_slow_")]:
        del sys.modules[name]
    warmup._done = None


def test_a_task_waits_until_the_warm_up_imported_everything(module_dir: Path) -> None:
    (module_dir / "mnemo_slow_one.py").write_text("import time\ntime.sleep(0.6)\nVALUE = 1\n")
    (module_dir / "mnemo_slow_two.py").write_text("import time\ntime.sleep(0.2)\nVALUE = 2\n")
    done = warmup.start_warm_up(("mnemo_slow_one", "mnemo_slow_two"))
    waited = warmup.wait_for_warm_up()
    assert done.is_set() and waited >= 0.5
    assert sys.modules["mnemo_slow_one"].VALUE == 1 and sys.modules["mnemo_slow_two"].VALUE == 2


def test_a_failed_warm_up_opens_the_gate_and_no_warm_up_means_no_wait(module_dir: Path) -> None:
    assert warmup.wait_for_warm_up() == 0.0  # in-process use (tests, benchmarks): nothing started
    (module_dir / "mnemo_slow_broken.py").write_text("import time\ntime.sleep(0.3)\nraise ImportError('x')\n")
    warmup.start_warm_up(("mnemo_slow_broken", "mnemo_slow_never"))
    assert warmup.wait_for_warm_up() >= 0.2
    assert "mnemo_slow_never" not in sys.modules  # stopped at the first failure
