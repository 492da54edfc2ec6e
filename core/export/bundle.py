"""The export zip: diffusers LoRA, kohya LoRA, one embedding per token, the card (docs/export.md).

    diffusers/pytorch_lora_weights.safetensors   pipe.load_lora_weights("diffusers")
    kohya/mnemo_lora.safetensors                 ComfyUI / AUTOMATIC1111 (lora_unet_* keys, alphas)
    embeddings/<concept>.safetensors             pipe.load_textual_inversion(path, token="<concept>")
    card.json                                    backbone, method, tokens, lineage, sha256 of each file

A textual-inversion version has no LoRA files.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.export import card, diffusers_keys, kohya_keys, textual_inversion
from core.export.merge import single_lora
from core.export.source import ExportSource, load_export_source
from core.storage import ArtifactStore

DIFFUSERS_PATH = f"diffusers/{diffusers_keys.FILE_NAME}"
KOHYA_PATH = f"kohya/{kohya_keys.FILE_NAME}"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class ExportArchive:
    filename: str
    data: bytes


def export_files(source: ExportSource, *, backbone: str) -> dict[str, bytes]:
    """Every file of the export (path in the zip -> bytes), the card last."""
    lora = single_lora(
        method=str(source.state.get("method")),
        adapter_type=str(source.state.get("adapter_type", "lora")),
        task_adapters=source.task_adapters,
    )
    tokens = [c["token"] for c in source.state.get("concepts", [])]
    files = textual_inversion.embedding_files(source.tokens, tokens)
    embeddings = {token: textual_inversion.file_name(token) for token in tokens}
    if lora is not None:
        files[DIFFUSERS_PATH] = diffusers_keys.diffusers_file(lora.modules)
        files[KOHYA_PATH] = kohya_keys.kohya_file(lora.modules, base_model=backbone)
    entry = card.lora_entry(lora, diffusers=DIFFUSERS_PATH, kohya=KOHYA_PATH)
    files[card.FILE_NAME] = card.build_card(
        source=source, backbone=backbone, lora=entry, embeddings=embeddings, files=files
    )
    return files


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A deflated zip of ``files`` with fixed timestamps (the same version gives the same bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def build_export(
    session: Session, *, store: ArtifactStore, user_id: str, ref: str, backbone: str
) -> ExportArchive:
    """The zip of the user's adapter version ``ref`` (an id or a lineage position).

    Raises ``ExportNotFoundError`` (not the user's), ``ExportRefusedError`` (no single LoRA) and
    ``ExportCorruptError`` (a stored file does not match its record).
    """
    source = load_export_source(session, store=store, user_id=user_id, ref=ref)
    files = export_files(source, backbone=backbone)
    return ExportArchive(filename=f"mnemo-export-{source.version.id}.zip", data=zip_bytes(files))
