"""Helpers of the export tests (docs/export.md): users' states with real tensors, published as the
worker publishes them (a version directory from ``save_version`` plus its row and the head move)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from core.db.models import AdapterVersion, User
from core.engine.adapters import fresh_state, zero_kv_delta
from core.engine.backbone import Backbone
from core.engine.config import TINY
from core.engine.state import ConceptRecord, UserState, save_version
from core.storage import LocalStore, manifest_sha256

RANK = 4


def random_adapter(backbone: Backbone, *, kind: str, seed: int) -> dict[str, torch.Tensor]:
    """An adapter with the engine's own keys and random, clearly non-zero values.

    ``lora``: ``<module>.lora_A/B`` of rank ``RANK``; ``kv``: Custom Diffusion's stored form, the
    merged ``<module>.delta`` and the task's raw ``<module>.task_delta``.
    """
    generator = torch.Generator().manual_seed(seed)
    if kind == "lora":
        shapes = fresh_state(backbone.unet, config=TINY.with_(lora_rank=RANK), seed=seed)
        return {k: 0.5 * torch.randn(v.shape, generator=generator) for k, v in shapes.items()}
    deltas = zero_kv_delta(backbone.unet)
    adapter = {k: 0.5 * torch.randn(v.shape, generator=generator) for k, v in deltas.items()}
    raw = {
        k.removesuffix(".delta") + ".task_delta": torch.randn(v.shape, generator=generator)
        for k, v in deltas.items()
    }
    return {**adapter, **raw}


def states_after_each_task(
    backbone: Backbone, *, method: str, concepts: list[str], kind: str = "lora", adapter_type: str = "lora"
) -> list[UserState]:
    """The user's state after each task of ``concepts`` learned with ``method`` (oldest first)."""
    states, state = [], UserState.empty()
    width = backbone.text_encoder.get_input_embeddings().weight.shape[1]
    for index, name in enumerate(concepts):
        row = torch.randn(width, generator=torch.Generator().manual_seed(100 + index))
        state = state.with_task(
            concept=ConceptRecord(
                name=name, token=f"<{name}>", class_word=None, task_index=index, method=method
            ),
            token_embedding=row,
            adapter=random_adapter(backbone, kind=kind, seed=index) if kind != "none" else {},
            fisher=None,
            adapter_type=adapter_type,
        )
        states.append(state)
    return states


def publish(factory, store: LocalStore, *, user_id: str, state: UserState) -> str:  # type: ignore[no-untyped-def]
    """Store the newest task of ``state`` as the user's next version and move the head; its id."""
    with factory() as session:
        user = session.get(User, user_id)
        version = AdapterVersion(
            user_id=user_id,
            parent_id=user.current_adapter_version_id,
            task_index=user.next_task_index,
            method=str(state.method),
            path="",
            sha256="",
            size_bytes=0,
        )
        session.add(version)
        session.flush()
        version.path = store.adapter_dir(user_id=user_id, version_id=version.id)
        with tempfile.TemporaryDirectory() as folder:
            save_version(state, Path(folder) / "v")
            store.put_dir(Path(folder) / "v", version.path)
        version.files = store.describe_dir(version.path)
        version.sha256 = manifest_sha256(version.files)
        version.size_bytes = sum(f["bytes"] for f in version.files.values())
        user.current_adapter_version_id = version.id
        user.next_task_index += 1
        session.commit()
        return version.id


def publish_all(factory, store: LocalStore, *, user_id: str, states: list[UserState]) -> list[str]:  # type: ignore[no-untyped-def]
    return [publish(factory, store, user_id=user_id, state=state) for state in states]
