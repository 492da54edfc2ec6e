"""The words every layer shares: method names, the concept-name grammar and prompt tokens.

Torch-free and dependency-free, so the API, the database layer, the engine and the benchmarks
all read the same definitions (docs/architecture.md, "Layers"). The engine's method registry
(``core.engine.methods.METHODS``) defines one record per name listed here; a test keeps the
two equal.

A concept name is a slug of 1-32 characters: lowercase ASCII letters, digits, ``-`` or ``_``,
starting with a letter or digit. Its prompt token is ``<name>``. Names are checked with full
matches, so a trailing newline is not a slug.
"""

from __future__ import annotations

import re

METHOD_NAMES = (
    "textual_inversion",
    "custom_diffusion",
    "custom_diffusion_ewc",
    "lora_sequential",
    "lora_merge",
    "c_lora",
    "ewc",
    "ewc_dc",
    "dsc",
    "dsc_ewc",
    "dsc_ewc_dc",
)
DEFAULT_METHOD = "dsc_ewc_dc"

_NAME = r"[a-z0-9][a-z0-9_-]{0,31}"
CONCEPT_NAME = re.compile(_NAME)
# A token inside a prompt; the group captures the concept name (``re.split`` keeps it).
TOKEN_PATTERN = re.compile(rf"<({_NAME})>")
NAME_RULE = "a slug: 1-32 characters of a-z, 0-9, '_' or '-', starting with a letter or digit"


class InvalidConceptNameError(ValueError):
    """A concept name that is not a slug."""

    def __init__(self, name: str) -> None:
        super().__init__(f"concept name {name!r} must be {NAME_RULE}")
        self.name = name


def is_concept_name(name: str) -> bool:
    """True when all of ``name`` is a slug (a trailing newline is not)."""
    return CONCEPT_NAME.fullmatch(name) is not None


def token_for(name: str) -> str:
    """The prompt token of concept ``name``: ``<name>``; ``InvalidConceptNameError`` if not a slug."""
    if not is_concept_name(name):
        raise InvalidConceptNameError(name)
    return f"<{name}>"


def prompt_tokens(prompt: str) -> list[str]:
    """The ``<token>``s a prompt uses, in order of first use, without duplicates."""
    return list(dict.fromkeys(f"<{name}>" for name in TOKEN_PATTERN.findall(prompt)))


def slug_from(text: str) -> str:
    """A concept name derived from free text (a folder name): lowercased, other runs become ``-``."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:32]
    if not is_concept_name(slug):
        raise InvalidConceptNameError(text)
    return slug
