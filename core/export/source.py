"""What an export reads: the user's adapter version, its lineage and their files, verified.

Files come from the artifact store by the paths the database records and are checked against
the recorded sha256 before they are parsed (docs/architecture.md, "Adapter lineage").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db.jobs.lineage import lineage, user_lineage
from core.db.models import AdapterVersion
from core.export import safetensors_io
from core.export.errors import ExportCorruptError, ExportNotFoundError
from core.export.merge import needs_every_task
from core.export.safetensors_io import Tensor
from core.storage import ArtifactStore

ADAPTER_FILE = "adapter.safetensors"
TOKENS_FILE = "tokens.safetensors"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class ExportSource:
    """The exported version (``chain[-1]``), its lineage and the files the export needs."""

    chain: list[AdapterVersion]
    state: dict[str, Any]
    tokens: dict[str, Tensor]
    task_adapters: list[dict[str, Tensor]]

    @property
    def version(self) -> AdapterVersion:
        return self.chain[-1]


def find_version(session: Session, *, user_id: str, ref: str) -> AdapterVersion:
    """The user's version by id, or by its position (1 = first task) in the user's current lineage.

    Another user's version is ``ExportNotFoundError``, like a missing one.
    """
    if ref.isascii() and ref.isdigit():  # "³".isdigit() is True, int("³") raises
        chain = user_lineage(session, user_id=user_id)
        if 1 <= int(ref) <= len(chain):
            return chain[int(ref) - 1]
        raise ExportNotFoundError("not found")
    version = session.scalar(
        select(AdapterVersion).where(AdapterVersion.id == ref, AdapterVersion.user_id == user_id)
    )
    if version is None:
        raise ExportNotFoundError("not found")
    return version


def read_verified(store: ArtifactStore, version: AdapterVersion, name: str) -> bytes:
    """The bytes of one file of ``version``, checked against the sha256 its row records."""
    recorded = (version.files or {}).get(name)
    if recorded is None:
        raise ExportCorruptError(f"adapter version {version.id} has no {name}")
    try:
        data = store.read_bytes(f"{version.path}/{name}")
    except (OSError, ValueError):
        raise ExportCorruptError(f"{name} of adapter version {version.id} is missing") from None
    if hashlib.sha256(data).hexdigest() != recorded["sha256"]:
        raise ExportCorruptError(f"{name} of adapter version {version.id} does not match its sha256")
    return data


def load_export_source(session: Session, *, store: ArtifactStore, user_id: str, ref: str) -> ExportSource:
    """The version ``ref`` of the user with its lineage, state and token table, and the adapters
    its method combines: every task's (C-LoRA, LoRA merge) or only the version's own."""
    version = find_version(session, user_id=user_id, ref=ref)
    chain = lineage(session, head_id=version.id)
    try:
        state = json.loads(read_verified(store, version, STATE_FILE))
    except ValueError:
        raise ExportCorruptError(f"state.json of adapter version {version.id} is not JSON") from None
    every_task = needs_every_task(str(state.get("method")))
    tokens, _ = safetensors_io.read(read_verified(store, version, TOKENS_FILE))
    wanted = chain if every_task else chain[-1:]
    adapters = [safetensors_io.read(read_verified(store, v, ADAPTER_FILE))[0] for v in wanted]
    return ExportSource(chain=chain, state=state, tokens=tokens, task_adapters=adapters)
