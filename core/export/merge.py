"""A version's adapter state as one LoRA, ΔW = B A on every ``attn2.to_k`` / ``attn2.to_v``.

Mnemo's generation (``core.engine.generate.user_adapters``) adds to each cross-attention K/V
weight W0 the update of the user's method; each case below writes exactly that update as one
LoRA, so a tool that computes W0 x + B (A x) reproduces it:

* one trained LoRA (sequential LoRA, EWC, EWC-DC, DSC and their combinations): peft's update is
  ΔW = (α / r) B A with α = r (``core.engine.adapters``), so ΔW = B A as stored;
* C-LoRA (``combine="sum"``, Smith et al. 2023, Eq. 1 of the paper): ΔW = Σ_j B_j A_j over the
  tasks j = 1…n. A sum of products is one product of the blocks side by side,

      Σ_j B_j A_j = [B_1 … B_n] [A_1; …; A_n],

  a LoRA of rank Σ_j r_j, exact (only bytes are reordered);
* LoRA merge (``combine="mean"``): ΔW = (1/n) Σ_j B_j A_j = [B_1/n … B_n/n] [A_1; …; A_n];
* Custom Diffusion (full K/V deltas; the constrained merge of ``core.engine.custom_diffusion``
  is already applied in the stored ``.delta``): rank Δ ≤ k = min(out, in), and Δ = I_out Δ
  (out ≤ in) or Δ I_in (in < out) is an exact LoRA of rank k, B = I, A = Δ (or B = Δ, A = I).
  Its files are as large as the deltas themselves (Custom Diffusion's own checkpoints are).

Refused (``ExportRefusedError``, HTTP 409): VeRA, whose update Λ_b B Λ_d A uses frozen random
projections A, B that peft regenerates from a seed and Mnemo does not store; a version of a
method the registry does not know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.engine.errors import UnknownMethodError
from core.engine.methods import get_method
from core.export.errors import ExportCorruptError, ExportRefusedError
from core.export.safetensors_io import Tensor
from core.export.tensors import concat_cols, concat_rows, identity, scaled

AdapterTensors = Mapping[str, Tensor]


@dataclass(frozen=True)
class LoraModule:
    """ΔW = up @ down of one module: down (A) [r, in], up (B) [out, r]; the scale is 1."""

    down: Tensor
    up: Tensor

    @property
    def rank(self) -> int:
        return self.down.shape[0]


@dataclass(frozen=True)
class SingleLora:
    """The whole update as one LoRA, keyed by UNet module path; ``how`` says how it was made."""

    modules: dict[str, LoraModule]
    how: str


def single_lora(
    *, method: str, adapter_type: str, task_adapters: Sequence[AdapterTensors]
) -> SingleLora | None:
    """The version's update as one LoRA (module docstring); ``None`` when it has none (textual
    inversion). ``task_adapters`` are the lineage's stored adapters, oldest first."""
    try:
        spec = get_method(method)
    except UnknownMethodError as error:
        raise ExportRefusedError(f"cannot export: {error}") from None
    if spec.adapter == "none":
        return None
    if adapter_type != "lora":
        raise ExportRefusedError(
            f"cannot export a {adapter_type} adapter as a LoRA: VeRA's update Λ_b B Λ_d A uses "
            "frozen random projections A, B that are regenerated from a seed, not stored"
        )
    if not task_adapters:
        raise ExportCorruptError("the lineage has no adapter")
    if spec.adapter == "kv":
        return SingleLora(full_rank_lora(task_adapters[-1]), how="K/V delta as B = I, A = Δ (exact)")
    if not spec.per_task_adapters:
        return SingleLora(lora_factors(task_adapters[-1]), how="the trained LoRA, ΔW = B A")
    if spec.combine not in ("sum", "mean"):
        raise ExportRefusedError(f"cannot export method {method!r}: combine {spec.combine!r}")
    weight = 1.0 / len(task_adapters) if spec.combine == "mean" else 1.0
    loras = [lora_factors(adapter) for adapter in task_adapters]
    how = f"{len(loras)} task LoRAs side by side, [B_1 … B_n]·{weight:g} [A_1; …; A_n] (exact)"
    return SingleLora(sum_of_loras(loras, weight=weight), how=how)


def needs_every_task(method: str) -> bool:
    """Whether the export reads every task's adapter (C-LoRA, LoRA merge) or only the newest."""
    try:
        spec = get_method(method)
    except UnknownMethodError:
        return False
    return spec.adapter == "lora" and spec.per_task_adapters


def lora_factors(adapter: AdapterTensors) -> dict[str, LoraModule]:
    """``<module>.lora_A`` / ``<module>.lora_B`` pairs of a stored adapter."""
    modules = sorted(key.removesuffix(".lora_A") for key in adapter if key.endswith(".lora_A"))
    if not modules:
        raise ExportCorruptError("the stored adapter holds no LoRA tensors")
    try:
        return {m: LoraModule(down=adapter[f"{m}.lora_A"], up=adapter[f"{m}.lora_B"]) for m in modules}
    except KeyError as error:
        raise ExportCorruptError(f"the stored adapter lacks {error.args[0]}") from None


def sum_of_loras(loras: Sequence[Mapping[str, LoraModule]], *, weight: float) -> dict[str, LoraModule]:
    """weight · Σ_j B_j A_j as one LoRA per module: [w B_1 … w B_n] [A_1; …; A_n]."""
    modules = sorted(loras[-1])
    if any(sorted(lora) != modules for lora in loras):
        raise ExportCorruptError("the task adapters of the lineage target different modules")
    return {
        m: LoraModule(
            down=concat_rows([lora[m].down for lora in loras]),
            up=concat_cols([scaled(lora[m].up, weight) for lora in loras]),
        )
        for m in modules
    }


def full_rank_lora(adapter: AdapterTensors) -> dict[str, LoraModule]:
    """Each ``<module>.delta`` Δ [out, in] as the exact LoRA of rank min(out, in)."""
    modules = sorted(key.removesuffix(".delta") for key in adapter if key.endswith(".delta"))
    if not modules:
        raise ExportCorruptError("the stored adapter holds no K/V deltas")
    return {m: _identity_factorisation(adapter[f"{m}.delta"]) for m in modules}


def _identity_factorisation(delta: Tensor) -> LoraModule:
    """Δ = I_out Δ when out ≤ in (B = I, A = Δ), else Δ I_in (B = Δ, A = I)."""
    out, inp = delta.shape
    if out <= inp:
        return LoraModule(down=delta, up=identity(out, dtype=delta.dtype))
    return LoraModule(down=identity(inp, dtype=delta.dtype), up=delta)
