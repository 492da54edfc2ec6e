"""One textual-inversion file per token, as ``pipe.load_textual_inversion(path, token=...)`` reads it.

Each file holds one tensor, the token's input-embedding row [d], under the token's own name
(the diffusers "concept" format; AUTOMATIC1111 reads a one-tensor file too and names the
embedding after the file). Mnemo's prompt encoding swaps that row in at the token's position
(``core.engine.tokens``); diffusers adds the token to the tokenizer with that row, so the text
encoder sees the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.export import safetensors_io
from core.export.errors import ExportCorruptError
from core.export.safetensors_io import Tensor

FOLDER = "embeddings"


def file_name(token: str) -> str:
    """``<red_dog>`` -> ``embeddings/red_dog.safetensors`` (tokens follow ``core.vocabulary``'s grammar)."""
    return f"{FOLDER}/{token.strip('<>')}.safetensors"


def embedding_file(token: str, row: Tensor) -> bytes:
    if len(row.shape) != 1:
        raise ExportCorruptError(f"the embedding of {token} has shape {list(row.shape)}, not [d]")
    return safetensors_io.write({token: row}, metadata={"format": "pt"})


def embedding_files(table: Mapping[str, Tensor], tokens: list[str]) -> dict[str, bytes]:
    """File name -> bytes for each of ``tokens`` (in order), from the stored token table."""
    missing = [t for t in tokens if t not in table]
    if missing:
        raise ExportCorruptError(f"the stored token table lacks {', '.join(missing)}")
    return {file_name(token): embedding_file(token, table[token]) for token in tokens}
