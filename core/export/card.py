"""The export's JSON card: backbone, method, tokens, lineage, how the LoRA was made, file hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from core.export.merge import SingleLora
from core.export.source import ExportSource

FILE_NAME = "card.json"
CARD_FORMAT = "mnemo-export/1"


def lineage_entries(source: ExportSource) -> list[dict[str, Any]]:
    """One entry per version, first task to the exported one (the concept from ``state.json``)."""
    concepts = source.state.get("concepts", [])
    entries = []
    for position, version in enumerate(source.chain, start=1):
        concept = concepts[position - 1] if position <= len(concepts) else {}
        entries.append(
            {
                "version": position,
                "id": version.id,
                "parent_id": version.parent_id,
                "task_index": version.task_index,
                "method": version.method,
                "concept": concept.get("name"),
                "token": concept.get("token"),
                "manifest_sha256": version.sha256,
                "created_at": version.created_at.isoformat() if version.created_at else None,
            }
        )
    return entries


def lora_entry(lora: SingleLora | None, *, diffusers: str, kohya: str) -> dict[str, Any] | None:
    if lora is None:
        return None
    ranks = sorted({m.rank for m in lora.modules.values()})
    return {
        "diffusers": diffusers,
        "kohya": kohya,
        "modules": sorted(lora.modules),
        "rank": ranks[0] if len(ranks) == 1 else ranks,
        "scale": 1.0,
        "how": lora.how,
    }


def build_card(
    *,
    source: ExportSource,
    backbone: str,
    lora: Mapping[str, Any] | None,
    embeddings: Mapping[str, str],
    files: Mapping[str, bytes],
) -> bytes:
    """The card's bytes. ``embeddings``: token -> file; ``files``: every other file of the zip."""
    concepts = source.state.get("concepts", [])
    card = {
        "format": CARD_FORMAT,
        "backbone": backbone,
        "method": source.state.get("method"),
        "adapter_type": source.state.get("adapter_type"),
        "version": {"id": source.version.id, "position": len(source.chain)},
        "tokens": [
            {
                "token": c["token"],
                "concept": c["name"],
                "class_word": c.get("class_word"),
                "task_index": c.get("task_index"),
                "file": embeddings.get(c["token"]),
            }
            for c in concepts
        ],
        "lora": lora,
        "lineage": lineage_entries(source),
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in sorted(files.items())
        },
    }
    return json.dumps(card, indent=2, sort_keys=True).encode()
