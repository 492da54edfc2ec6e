"""`mnemo bench personalization` runs end to end on the tiny backbone with the rates it was given."""

from __future__ import annotations

import json

from core.cli.main import build_parser
from core.engine.config import TOY


def test_bench_personalization_uses_the_given_rates_and_compares_with_the_class_word(capsys, tmp_path):
    args = build_parser().parse_args(
        ["bench", "personalization", "--backbone", "tiny", "--preset", "toy", "--concepts", "smiley",
         "--steps", "2", "--n-eval", "2", "--gen-steps", "2", "--lora-lr", "1e-4", "--out", str(tmp_path),
         "--json"]
    )  # fmt: skip
    assert args.handler(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_steps"] == 2
    assert summary["lora_lr"] == 1e-4 and summary["token_lr"] == TOY.token_lr
    (row,) = summary["concepts"]
    assert row["concept"] == "smiley" and row["class_word"] == "circle"
    assert row["mmd_concept_prompt"] >= 0 and row["mmd_base_class_word"] >= 0
    assert summary["concepts_closer"] == int(row["mmd_concept_prompt"] < row["mmd_base_class_word"])
    assert (tmp_path / "personalization.png").stat().st_size > 0
