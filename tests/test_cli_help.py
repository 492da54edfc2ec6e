"""`mnemo <command> --help` reads like a well-kept CLI's: a description and examples for every command."""

from __future__ import annotations

import argparse

import pytest

from core.cli.help_pages import PAGES, subcommands
from core.cli.main import build_parser

Commands = dict[tuple[str, ...], argparse.ArgumentParser]


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Commands:
    """Every runnable command (a parser without sub-commands of its own), by its path."""
    children = subcommands(parser)
    if not children:
        return {path: parser}
    found: Commands = {}
    for name, child in children.items():
        found.update(leaves(child, (*path, name)))
    return found


COMMANDS = leaves(build_parser())


def test_the_cli_has_the_commands_the_readme_uses():
    assert {("serve",), ("demo",), ("users", "create"), ("toy", "check"), ("bench", "cl")} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_has_a_description_and_an_example_of_itself(path):
    text = COMMANDS[path].format_help()
    description, examples = PAGES[path]
    assert description.splitlines()[0] in text
    assert "examples:" in text
    # each example runs this very command (or the script that wraps it)
    assert all(e.startswith(("mnemo " + " ".join(path), "bench/", "MNEMO_")) for e, _ in examples), examples


def test_defaults_show_in_the_help():
    assert "(default: 1)" in COMMANDS[("worker",)].format_help()
