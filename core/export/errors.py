"""Typed errors of the export: the API maps them to 404 and 409 answers, the CLI to one line."""

from __future__ import annotations


class ExportError(Exception):
    """Base class of everything the export raises on purpose."""


class ExportNotFoundError(ExportError):
    """No such adapter version for this user (another user's version is "not found" too)."""


class ExportRefusedError(ExportError):
    """The version's state cannot be written as one LoRA; the message says why."""


class ExportCorruptError(ExportError):
    """A stored file is missing, does not match its recorded sha256, or is not valid safetensors."""
