"""The ``mnemo`` command line: one sub-command group per module, imported lazily.

Each module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)`` and keeps
its heavy imports (torch, FastAPI, Celery) inside the command functions, so that
``mnemo --help`` and the API process stay light.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "core.cli.service",  # serve, api, worker, db, users, demo
    "core.cli.toy",  # toy train | check
    "core.cli.bench",  # bench speed | cl | ...
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnemo", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.handler(args) or 0)


if __name__ == "__main__":
    main()
