"""The export's pure-Python pieces against torch: safetensors bytes, tensor operations, the merge
equations of ``core.export.merge``, key names and refusals."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

from core.export import safetensors_io
from core.export.diffusers_keys import diffusers_key
from core.export.errors import ExportRefusedError
from core.export.kohya_keys import kohya_name, kohya_tensors
from core.export.merge import single_lora
from core.export.safetensors_io import Tensor
from core.export.tensors import concat_cols, concat_rows, identity, scaled, to_floats

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
MODULE = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"


def ours(tensor: torch.Tensor) -> Tensor:
    """A torch tensor as the export's ``Tensor``, through safetensors' own writer."""
    tensors, _ = safetensors_io.read(save({"t": tensor.contiguous()}))
    return tensors["t"]


def theirs(tensor: Tensor) -> torch.Tensor:
    """The export's ``Tensor`` read back by safetensors' own reader."""
    return load(safetensors_io.write({"t": tensor}))["t"]


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_safetensors_bytes_round_trip_through_the_reference_library(dtype: str) -> None:
    tensor = torch.randn(3, 5).to(DTYPES[dtype])
    blob = safetensors_io.write({"a": ours(tensor), "b": ours(tensor[0])}, metadata={"format": "pt"})
    loaded = load(blob)
    assert torch.equal(loaded["a"], tensor) and torch.equal(loaded["b"], tensor[0])
    assert safetensors_io.read(blob)[1] == {"format": "pt"}
    assert to_floats(ours(tensor)) == tensor.float().flatten().tolist()


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_rank_concatenation_and_identity_match_torch(dtype: str) -> None:
    a, b = torch.randn(2, 6).to(DTYPES[dtype]), torch.randn(3, 6).to(DTYPES[dtype])
    assert torch.equal(theirs(concat_rows([ours(a), ours(b)])), torch.cat([a, b]))
    assert torch.equal(theirs(concat_cols([ours(a.T), ours(b.T)])), torch.cat([a.T, b.T], dim=1))
    assert torch.equal(theirs(identity(4, dtype=dtype)), torch.eye(4, dtype=DTYPES[dtype]))
    assert torch.allclose(theirs(scaled(ours(a), 0.25)), a.float() * 0.25)


def lora(rank: int, *, seed: int, out: int = 6, inp: int = 5) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        f"{MODULE}.lora_A": ours(torch.randn(rank, inp, generator=generator)),
        f"{MODULE}.lora_B": ours(torch.randn(out, rank, generator=generator)),
    }


def delta_w(adapter: dict[str, Tensor]) -> torch.Tensor:
    return theirs(adapter[f"{MODULE}.lora_B"]) @ theirs(adapter[f"{MODULE}.lora_A"])


def exported_delta(**kwargs: object) -> torch.Tensor:
    module = single_lora(**kwargs).modules[MODULE]  # type: ignore[arg-type]
    return theirs(module.up) @ theirs(module.down)


def test_one_lora_is_exported_as_it_is_stored() -> None:
    adapter = lora(4, seed=0)
    merged = single_lora(method="dsc_ewc_dc", adapter_type="lora", task_adapters=[adapter])
    assert merged.modules[MODULE].down == adapter[f"{MODULE}.lora_A"]
    assert merged.modules[MODULE].up == adapter[f"{MODULE}.lora_B"]


def test_c_lora_is_the_sum_and_lora_merge_the_mean_of_the_task_loras() -> None:
    tasks = [lora(4, seed=0), lora(2, seed=1), lora(4, seed=2)]
    total = sum(delta_w(t) for t in tasks)
    summed = exported_delta(method="c_lora", adapter_type="lora", task_adapters=tasks)
    assert torch.allclose(summed, total, atol=1e-5)
    mean = exported_delta(method="lora_merge", adapter_type="lora", task_adapters=tasks)
    assert torch.allclose(mean, total / 3, atol=1e-5)
    assert single_lora(method="c_lora", adapter_type="lora", task_adapters=tasks).modules[MODULE].rank == 10


@pytest.mark.parametrize(("out", "inp"), [(4, 7), (7, 4)])
def test_a_custom_diffusion_delta_is_an_exact_lora_of_rank_min_out_in(out: int, inp: int) -> None:
    delta = torch.randn(out, inp)
    stored = {f"{MODULE}.delta": ours(delta), f"{MODULE}.task_delta": ours(torch.randn(out, inp))}
    for method in ("custom_diffusion", "custom_diffusion_ewc"):
        merged = single_lora(method=method, adapter_type="lora", task_adapters=[stored])
        assert merged.modules[MODULE].rank == min(out, inp)
        assert torch.equal(exported_delta(method=method, adapter_type="lora", task_adapters=[stored]), delta)


def test_what_is_not_one_lora_is_refused_or_has_no_lora() -> None:
    assert single_lora(method="textual_inversion", adapter_type="lora", task_adapters=[{}]) is None
    with pytest.raises(ExportRefusedError, match="VeRA"):
        single_lora(method="dsc_ewc_dc", adapter_type="vera", task_adapters=[{}])
    with pytest.raises(ExportRefusedError, match="unknown method"):
        single_lora(method="dreambooth", adapter_type="lora", task_adapters=[lora(4, seed=0)])


def test_key_names_of_both_formats() -> None:
    assert diffusers_key(MODULE, "lora_A") == f"unet.{MODULE}.lora_A.weight"
    name = kohya_name(MODULE)
    assert name == "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    merged = single_lora(
        method="c_lora", adapter_type="lora", task_adapters=[lora(4, seed=0), lora(4, seed=1)]
    )
    tensors = kohya_tensors(merged.modules)
    assert sorted(tensors) == [f"{name}.alpha", f"{name}.lora_down.weight", f"{name}.lora_up.weight"]
    assert theirs(tensors[f"{name}.alpha"]).item() == 8.0  # alpha = rank: scale 1
