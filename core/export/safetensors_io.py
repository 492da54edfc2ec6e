"""Read and write the safetensors format without torch or numpy.

A file is an 8-byte little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``),
then the tensors' raw little-endian bytes; the header is padded with spaces to 8 bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from core.export.errors import ExportCorruptError

ITEM_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


@dataclass(frozen=True)
class Tensor:
    """One tensor as safetensors stores it: dtype name, shape, row-major little-endian bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


def read(blob: bytes) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and the metadata of a safetensors file's bytes."""
    try:
        (length,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8 : 8 + length])
    except (struct.error, ValueError) as error:
        raise ExportCorruptError(f"not a safetensors file: {error}") from None
    metadata = header.pop("__metadata__", None) or {}
    body = blob[8 + length :]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        tensor = Tensor(dtype=entry["dtype"], shape=tuple(entry["shape"]), data=bytes(body[begin:end]))
        if tensor.dtype not in ITEM_SIZE or len(tensor.data) != tensor.numel * ITEM_SIZE[tensor.dtype]:
            raise ExportCorruptError(f"tensor {name!r} has an unsupported dtype or a wrong size")
        tensors[name] = tensor
    return tensors, dict(metadata)


def write(tensors: Mapping[str, Tensor], *, metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (sorted by name) and ``metadata``."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset, chunks = 0, []
    for name in sorted(tensors):
        tensor = tensors[name]
        header[name] = {
            "dtype": tensor.dtype,
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(tensor.data)],
        }
        chunks.append(tensor.data)
        offset += len(tensor.data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)
