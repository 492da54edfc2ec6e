"""The ``mnemo`` command line (``build_parser``): one sub-command group per module.

Each module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)`` and keeps
its heavy imports (torch, FastAPI, Celery) inside the command functions, so that
``mnemo --help`` and the API process stay light. Every parser shares ``Parser``: defaults
appear in the help, descriptions keep their line breaks.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from core.cli.help_pages import document

COMMAND_MODULES = (
    "core.cli.service",  # serve, api, worker, db, users, demo
    "core.cli.toy",  # toy train | check
    "core.cli.bench",  # bench speed | cl | ...
    "core.cli.export",  # export
)


DESCRIPTION = """\
Mnemo teaches a text-to-image diffusion model your own concepts, one at a time, keeps none of
your photos, and forgets none of the earlier concepts (LoRA + a token per concept, consolidated
with diffusion-classifier scores: EWC-DC and DSC)."""

EXAMPLES = """\
examples:
  mnemo demo                          three sample concepts learned one by one, on CPU (minutes)
  mnemo serve --data-dir ./mnemo-data the embedded service on http://127.0.0.1:8000
  mnemo users create alice            a user and their API key (shown once)
  mnemo toy check --quick             how well the shipped toy backbone follows its prompts
  mnemo bench personalization --concepts all
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks; an option's default is shown unless its help says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        quiet = action.default in (None, False, (), "", argparse.SUPPRESS) or action.option_strings == []
        if quiet or "default" in text or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``HelpFormatter`` for itself and its sub-commands."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnemo")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mnemo", description=DESCRIPTION, epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"mnemo {_version()}")
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="<command>", parser_class=Parser
    )
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.register(subparsers)
    document(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.handler(args) or 0)
    except ValidationError as error:  # a MNEMO_* setting (or its option) is invalid: say which
        if error.title != "Settings":
            raise
        fields = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()
        )
        sys.exit(f"mnemo: invalid setting: {fields}")


if __name__ == "__main__":
    main()
