"""The registry of continual-personalization methods (paper §4, App. H).

A method is a small declarative record; the task loop reads its fields and never
branches on a method's name. The names and the default (``dsc_ewc_dc``) live in the torch-free
``core.vocabulary``, which the API validates uploads with; there is one record per name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.engine.errors import UnknownMethodError
from core.vocabulary import DEFAULT_METHOD

AdapterKind = Literal["none", "lora", "kv"]
EwcKind = Literal["none", "plain", "dc"]
Combine = Literal["head", "sum", "mean", "merge"]


@dataclass(frozen=True)
class Method:
    """How one task of a user's sequence is learned and consolidated.

    adapter:  ``lora`` (peft LoRA/VeRA on attn2 K/V), ``kv`` (full K/V delta, Custom Diffusion)
              or ``none`` (textual inversion: only the new token trains).
    per_task_adapters: a fresh adapter per task, combined at inference by ``combine``
              (``sum`` for C-LoRA, ``mean`` for LoRA merge, ``merge`` for Custom Diffusion's
              constrained merge of per-task K/V, ``core.engine.custom_diffusion``); otherwise one adapter is
              trained continually (Algorithm 4, line 1) and ``combine`` is ``head``.
    ewc:      EWC penalty during training with a Fisher from L_denoise (``plain``) or
              from the DC-augmented L_ewc of Eq. 5 (``dc``).
    dsc:      Diffusion Scores Consolidation after training (Eq. 6).
    c_lora_reg: C-LoRA self-regularisation (Eq. 2).
    """

    name: str
    adapter: AdapterKind
    per_task_adapters: bool = False
    combine: Combine = "head"
    ewc: EwcKind = "none"
    dsc: bool = False
    c_lora_reg: bool = False

    @property
    def uses_lora(self) -> bool:
        return self.adapter == "lora"


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("textual_inversion", adapter="none"),
        Method("custom_diffusion", adapter="kv", per_task_adapters=True, combine="merge"),
        Method("custom_diffusion_ewc", adapter="kv", ewc="plain"),
        Method("lora_sequential", adapter="lora"),
        Method("lora_merge", adapter="lora", per_task_adapters=True, combine="mean"),
        Method("c_lora", adapter="lora", per_task_adapters=True, combine="sum", c_lora_reg=True),
        Method("ewc", adapter="lora", ewc="plain"),
        Method("ewc_dc", adapter="lora", ewc="dc"),
        Method("dsc", adapter="lora", dsc=True),
        Method("dsc_ewc", adapter="lora", ewc="plain", dsc=True),
        Method("dsc_ewc_dc", adapter="lora", ewc="dc", dsc=True),
    )
}
__all__ = ["DEFAULT_METHOD", "METHODS", "Method", "get_method"]


def get_method(name: str) -> Method:
    """The method registered as ``name``; ``UnknownMethodError`` lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethodError(name, sorted(METHODS)) from None
