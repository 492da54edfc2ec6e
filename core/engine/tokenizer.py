"""An offline CLIP BPE tokenizer built from the vocabulary that OpenAI CLIP ships.

``assets/bpe_simple_vocab_16e6.txt.gz`` is the MIT-licensed merges file from
open_clip (see ``assets/LICENSE-open_clip.txt``). The vocabulary is derived the
way CLIP's ``SimpleTokenizer`` does it, which gives the 49,408 ids of SD's
tokenizer ("a photo of a dog" -> 49406 320 1125 539 320 1929 49407).

transformers v5 trap: ``CLIPTokenizer(vocab_file=..., merges_file=...)`` silently
builds a 2-token tokenizer, so we pass ``vocab=`` and ``merges=`` objects.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer

BPE_PATH = Path(__file__).parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
MAX_LENGTH = 77


def _bytes_to_unicode() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP vocabulary (token -> id) and BPE merges, exactly as SimpleTokenizer builds them."""
    with gzip.open(BPE_PATH) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}, merges


def build_clip_tokenizer() -> CLIPTokenizer:
    """A fresh ``CLIPTokenizer`` with SD's vocabulary; no download, about 0.1 s."""
    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        model_max_length=MAX_LENGTH,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
