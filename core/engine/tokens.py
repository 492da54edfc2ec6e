"""Per-user concept tokens ``<name>`` and prompt encoding with them.

The shared tokenizer and embedding table of the backbone are never modified.
A user's tokens live in their own table (token -> embedding row); a prompt is
tokenised with each ``<name>`` replaced by a placeholder position whose input
embedding is swapped for the user's row by a forward hook on the token embedding.
So encoding user A's prompt can never see user B's tokens, and the rows of
earlier concepts are plain tensors outside every optimiser: bit-for-bit frozen
(the Custom Diffusion weight-decay drift cannot happen; paper App. A, "V_n^* ...
remains frozen thereafter").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch

from core import vocabulary
from core.engine.backbone import Backbone
from core.engine.errors import InvalidConceptError, UnknownTokenError
from core.vocabulary import TOKEN_PATTERN, prompt_tokens

RARE_INIT_WORD = "sks"


def token_for(name: str) -> str:
    """The prompt token of concept ``name`` (``core.vocabulary.token_for``), as an engine error."""
    try:
        return vocabulary.token_for(name)
    except vocabulary.InvalidConceptNameError as error:
        raise InvalidConceptError(str(error)) from None


def check_tokens(prompt: str, known: Sequence[str]) -> None:
    """Raise ``UnknownTokenError`` for every ``<token>`` of ``prompt`` not in ``known``."""
    unknown = sorted(t for t in prompt_tokens(prompt) if t not in known)
    if unknown:
        raise UnknownTokenError(unknown, sorted(known))


def initial_embedding(backbone: Backbone, class_word: str | None) -> torch.Tensor:
    """The new row's start: the class word's embedding if it is one token, else a rare token's.

    Always fp32: the row trains, whatever dtype the frozen text encoder is stored in (docs/gpu.md).
    """
    table = backbone.text_encoder.get_input_embeddings().weight
    for word in (class_word, RARE_INIT_WORD):
        if not word:
            continue
        ids = backbone.tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) == 1:
            return table[ids[0]].detach().clone().float()
    rare = backbone.tokenizer(RARE_INIT_WORD, add_special_tokens=False).input_ids[0]
    return table[rare].detach().clone().float()


def tokenize(
    backbone: Backbone, prompts: Sequence[str], known: Sequence[str]
) -> tuple[torch.Tensor, list[list[tuple[int, str]]]]:
    """Token ids (padded to 77) and, per prompt, the (position, token) of each user token."""
    tokenizer = backbone.tokenizer
    max_len = tokenizer.model_max_length
    all_ids, all_slots = [], []
    for prompt in prompts:
        check_tokens(prompt, known)
        ids, slots = [tokenizer.bos_token_id], []
        for i, piece in enumerate(TOKEN_PATTERN.split(prompt)):
            if i % 2 == 1:  # a captured concept name
                slots.append((len(ids), f"<{piece}>"))
                ids.append(tokenizer.eos_token_id - 1)  # placeholder id; its embedding is replaced
            elif piece.strip():
                ids.extend(tokenizer(piece, add_special_tokens=False).input_ids)
        ids = [*ids[: max_len - 1], tokenizer.eos_token_id]
        slots = [(pos, tok) for pos, tok in slots if pos < max_len - 1]
        all_ids.append(ids + [tokenizer.pad_token_id] * (max_len - len(ids)))
        all_slots.append(slots)
    return torch.tensor(all_ids, device=backbone.device), all_slots


def encode_prompts(
    backbone: Backbone, prompts: Sequence[str], table: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """CLIP last hidden states [B, 77, D] for ``prompts``, with the user's token ``table``.

    Gradients flow into a row of ``table`` when it requires grad (the new token).
    """
    ids, slots = tokenize(backbone, prompts, list(table))
    with _token_rows(backbone, slots, table):
        return backbone.text_encoder(ids).last_hidden_state


@contextmanager
def _token_rows(
    backbone: Backbone, slots: list[list[tuple[int, str]]], table: Mapping[str, torch.Tensor]
) -> Iterator[None]:
    if not any(slots):
        yield
        return

    def replace_rows(_module, _inputs, output: torch.Tensor) -> torch.Tensor:
        rows = list(output.unbind(0))
        for b, prompt_slots in enumerate(slots):
            if prompt_slots:
                positions = [pos for pos, _ in prompt_slots]
                vectors = torch.stack([table[tok].to(output.dtype) for _, tok in prompt_slots])
                row = rows[b].clone()
                row[positions] = vectors
                rows[b] = row
        return torch.stack(rows)

    handle = backbone.text_encoder.get_input_embeddings().register_forward_hook(replace_rows)
    try:
        yield
    finally:
        handle.remove()
