"""A user's continual-learning state, and its on-disk form: one directory per task.

After task n the state holds every concept's token row, the adapter of every task
(θ_j for the sequential methods — the DSC teachers and the lineage; LoRA_j for the
per-task methods C-LoRA and LoRA merge), and the online Fisher F_n. The EWC anchor
θ* is the newest task adapter, so it is not stored twice.

A version directory holds only what task n added (its adapter, all token rows, the
Fisher, ``state.json``); ``load_state`` rebuilds the state from the chain of version
directories, oldest first, so storage grows linearly with the number of tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.engine.adapters import AdapterState
from core.engine.losses import fisher_mean

STATE_FORMAT = 1


@dataclass(frozen=True)
class ConceptRecord:
    name: str
    token: str
    class_word: str | None
    task_index: int
    method: str


@dataclass(frozen=True)
class UserState:
    concepts: tuple[ConceptRecord, ...] = ()
    token_embeddings: dict[str, torch.Tensor] = field(default_factory=dict)
    task_adapters: tuple[AdapterState, ...] = ()
    fisher: AdapterState | None = None
    method: str | None = None
    adapter_type: str = "lora"
    normalisers: dict[str, float] = field(default_factory=dict)
    """Scales the penalties were divided by (docs/method.md): ``fisher_mean`` F̄ of the stored
    (un-normalised) online Fisher, ``c_lora_occupancy_rms`` R of Eq. 2 in the newest task."""

    @classmethod
    def empty(cls) -> UserState:
        return cls()

    @property
    def tokens(self) -> list[str]:
        return [c.token for c in self.concepts]

    @property
    def n_tasks(self) -> int:
        return len(self.concepts)

    @property
    def anchor(self) -> AdapterState | None:
        """θ* of EWC: the adapter after the newest task."""
        return self.task_adapters[-1] if self.task_adapters else None

    def with_task(
        self,
        *,
        concept: ConceptRecord,
        token_embedding: torch.Tensor,
        adapter: AdapterState,
        fisher: AdapterState | None,
        adapter_type: str,
        normalisers: dict[str, float] | None = None,
    ) -> UserState:
        return replace(
            self,
            concepts=(*self.concepts, concept),
            token_embeddings={**self.token_embeddings, concept.token: token_embedding.detach().clone()},
            task_adapters=(*self.task_adapters, {k: v.detach().clone() for k, v in adapter.items()}),
            fisher=fisher,
            method=concept.method,
            adapter_type=adapter_type,
            normalisers=dict(normalisers or {}),
        )

    @property
    def fisher_scale(self) -> float:
        """F̄ of the stored Fisher: the recorded value, else computed (states saved before it was recorded)."""
        if self.fisher is None:
            return 0.0
        return float(self.normalisers.get("fisher_mean", fisher_mean(self.fisher)))


def save_version(state: UserState, directory: Path) -> dict[str, str]:
    """Write the newest task of ``state`` into ``directory``; returns file name -> sha256."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "adapter.safetensors": _tensors(state.task_adapters[-1] if state.task_adapters else {}),
        "tokens.safetensors": _tensors(state.token_embeddings),
    }
    if state.fisher is not None:
        files["fisher.safetensors"] = _tensors(state.fisher)
    for name, tensors in files.items():
        save_file(tensors, str(directory / name), metadata={"format": str(STATE_FORMAT)})
    meta = {
        "format": STATE_FORMAT,
        "method": state.method,
        "adapter_type": state.adapter_type,
        "concepts": [asdict(c) for c in state.concepts],
        "normalisers": state.normalisers,
    }
    (directory / "state.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    for path in directory.iterdir():
        _fsync(path)
    return {path.name: sha256_file(path) for path in sorted(directory.iterdir()) if path.is_file()}


def load_state(directories: Sequence[Path]) -> UserState:
    """Rebuild a user's state from their lineage of version directories, oldest first."""
    if not directories:
        return UserState.empty()
    head = Path(directories[-1])
    meta = json.loads((head / "state.json").read_text())
    concepts = tuple(ConceptRecord(**c) for c in meta["concepts"])
    if len(concepts) != len(directories):
        raise ValueError(
            f"lineage has {len(directories)} versions but the head records {len(concepts)} tasks"
        )
    fisher_path = head / "fisher.safetensors"
    return UserState(
        concepts=concepts,
        token_embeddings=load_file(str(head / "tokens.safetensors")),
        task_adapters=tuple(load_file(str(Path(d) / "adapter.safetensors")) for d in directories),
        fisher=load_file(str(fisher_path)) if fisher_path.exists() else None,
        method=meta["method"],
        adapter_type=meta["adapter_type"],
        normalisers={k: float(v) for k, v in meta.get("normalisers", {}).items()},
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
