"""The layers import only what they may (docs/architecture.md, "Layers"), each checked in a fresh
interpreter so that nothing another test imported hides a violation.

* the API process (the app and every route) loads no torch, diffusers, transformers, peft or numpy,
  and no worker code;
* ``core.engine`` (every module below it) imports no SQLAlchemy, FastAPI or Celery;
* ``core.db`` (every module below it) imports no torch;
* ``core.queue`` imports no ML library, FastAPI or code of the API and the worker;
* ``core.storage`` imports neither the database nor the engine;
* ``core.webhooks`` (signing, URLs, the relay) imports no ML library, FastAPI or code of the API
  and the worker;
* ``core.vocabulary`` imports nothing of the project's heavier layers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    def import_tree(package):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=package + "."):
            importlib.import_module(info.name)

    for target in sys.argv[2:]:
        if target.endswith(".*"):
            import_tree(target[:-2])
        else:
            importlib.import_module(target)
    banned = set(json.loads(sys.argv[1]))
    print(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & banned)))
    """
)


def loaded(banned: tuple[str, ...], *targets: str) -> list[str]:
    """Which of the ``banned`` top-level packages importing ``targets`` loads (``pkg.*``: all of pkg)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(banned), *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


ML = ("torch", "diffusers", "transformers", "peft", "numpy")


def test_the_api_process_loads_no_ml_library() -> None:
    assert loaded((*ML, "worker"), "api.app", "api.routes.*", "api.dashboard.*") == []


@pytest.mark.parametrize(
    ("targets", "banned"),
    [
        (("core.engine.*",), ("sqlalchemy", "fastapi", "celery", "kombu", "api", "worker")),
        (("core.db.*",), ("torch", "diffusers", "transformers", "peft")),
        (("core.queue.*",), ("torch", "diffusers", "transformers", "peft", "fastapi", "api", "worker")),
        (("core.storage.*",), ("torch", "numpy", "sqlalchemy", "fastapi", "celery", "api", "worker")),
        (("core.webhooks.*",), ("torch", "diffusers", "transformers", "peft", "fastapi", "api", "worker")),
        (("core.vocabulary",), ("torch", "numpy", "sqlalchemy", "fastapi", "celery")),
    ],
    ids=["engine", "db", "queue", "storage", "webhooks", "vocabulary"],
)
def test_each_core_layer_imports_only_its_own_dependencies(
    targets: tuple[str, ...], banned: tuple[str, ...]
) -> None:
    assert loaded(banned, *targets) == []
