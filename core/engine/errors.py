"""Typed errors of the engine. Every one is a ``EngineError`` with a clear message.

The service maps them to 4xx answers (bad input) or a failed job (bad numerics);
none of them ever leaves a half-written state behind.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of everything the engine raises on purpose."""


class InvalidImagesError(EngineError):
    """No images, unreadable images, or images of an unusable size."""


class UnknownMethodError(EngineError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(f"unknown method {name!r}; known methods: {', '.join(known)}")
        self.name, self.known = name, known


class UnknownTokenError(EngineError):
    def __init__(self, unknown: list[str], known: list[str]):
        listed = ", ".join(known) if known else "none yet"
        super().__init__(f"unknown token(s) {', '.join(unknown)} in prompt; your tokens: {listed}")
        self.unknown, self.known = unknown, known


class InvalidConceptError(EngineError):
    """A concept name that is not a slug, or a token that already exists."""


class NonFiniteError(EngineError):
    """NaN or Inf in a loss or in the trained weights: the task result is discarded."""


class TaskCancelled(EngineError):
    """The caller's ``should_stop`` asked the task to stop; nothing is returned."""


class BackboneError(EngineError):
    """A backbone folder or id that cannot be loaded offline."""
