"""The few tensor operations the export needs, on safetensors bytes (no torch, no numpy).

Concatenation along the rank axis is exact (bytes are only reordered); ``scaled`` and
``identity`` produce float32. Dtypes: F64, F32, F16, BF16 (little-endian, as safetensors).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from core.export.safetensors_io import ITEM_SIZE, Tensor

FORMAT = {"F64": "d", "F32": "f", "F16": "e"}
ONE = {dtype: struct.pack(f"<{code}", 1.0) for dtype, code in FORMAT.items()}
ONE["BF16"] = ONE["F32"][2:]  # bfloat16 is the upper half of a float32
ZERO = {dtype: bytes(size) for dtype, size in ITEM_SIZE.items()}


def to_floats(tensor: Tensor) -> list[float]:
    """The tensor's values, row-major, as Python floats."""
    n = tensor.numel
    if tensor.dtype == "BF16":
        halves = struct.unpack(f"<{n}H", tensor.data)
        return list(struct.unpack(f"<{n}f", struct.pack(f"<{n}I", *(h << 16 for h in halves))))
    return list(struct.unpack(f"<{n}{FORMAT[tensor.dtype]}", tensor.data))


def float32(values: Sequence[float], shape: tuple[int, ...]) -> Tensor:
    """A float32 tensor of ``values`` (row-major) with ``shape``."""
    return Tensor(dtype="F32", shape=shape, data=struct.pack(f"<{len(values)}f", *values))


def scalar(value: float) -> Tensor:
    """A 0-dimensional float32 tensor (kohya's per-module ``alpha``)."""
    return float32([value], ())


def scaled(tensor: Tensor, factor: float) -> Tensor:
    """``factor · tensor`` in float32 (exact when ``factor`` is 1)."""
    if factor == 1.0:
        return tensor
    return float32([factor * v for v in to_floats(tensor)], tensor.shape)


def same_dtype(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The tensors unchanged when they share a dtype, else all in float32."""
    if len({t.dtype for t in tensors}) <= 1:
        return list(tensors)
    return [t if t.dtype == "F32" else float32(to_floats(t), t.shape) for t in tensors]


def concat_rows(tensors: Sequence[Tensor]) -> Tensor:
    """[r_1, d]; …; [r_n, d] -> [Σ r_j, d] (stacking LoRA ``A`` matrices along the rank axis)."""
    parts = same_dtype(tensors)
    width = {t.shape[1:] for t in parts}
    if len(width) != 1:
        raise ValueError(f"cannot stack rows of shapes {[t.shape for t in parts]}")
    rows = sum(t.shape[0] for t in parts)
    data = b"".join(t.data for t in parts)
    return Tensor(dtype=parts[0].dtype, shape=(rows, *parts[0].shape[1:]), data=data)


def concat_cols(tensors: Sequence[Tensor]) -> Tensor:
    """[m, r_1], …, [m, r_n] -> [m, Σ r_j] (LoRA ``B`` matrices side by side along the rank axis)."""
    parts = same_dtype(tensors)
    if len({t.shape[0] for t in parts}) != 1 or any(len(t.shape) != 2 for t in parts):
        raise ValueError(f"cannot join columns of shapes {[t.shape for t in parts]}")
    size = ITEM_SIZE[parts[0].dtype]
    rows = parts[0].shape[0]
    widths = [t.shape[1] * size for t in parts]
    data = b"".join(
        t.data[i * w : (i + 1) * w] for i in range(rows) for t, w in zip(parts, widths, strict=True)
    )
    return Tensor(dtype=parts[0].dtype, shape=(rows, sum(t.shape[1] for t in parts)), data=data)


def identity(n: int, *, dtype: str = "F32") -> Tensor:
    """The n × n identity matrix."""
    one, zero = ONE[dtype], ZERO[dtype]
    row = [zero] * n
    data = []
    for i in range(n):
        row[i] = one
        data.append(b"".join(row))
        row[i] = zero
    return Tensor(dtype=dtype, shape=(n, n), data=b"".join(data))
