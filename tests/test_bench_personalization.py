"""`mnemo bench personalization` runs end to end on the tiny backbone with the rates it was given."""

from __future__ import annotations

import json

from core.cli.main import build_parser
from core.engine.config import TOY


def test_bench_personalization_sweeps_the_given_rates_and_judges_recognition(capsys, tmp_path):
    args = build_parser().parse_args(
        ["bench", "personalization", "--backbone", "tiny", "--preset", "toy", "--concepts", "smiley,chelsea",
         "--steps", "2", "--n-eval", "2", "--gen-steps", "2", "--lora-lr", "1e-4,2e-4", "--batch-size", "1",
         "--out", str(tmp_path), "--json"]
    )  # fmt: skip
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "[4/4]" in captured.err  # one progress line per task, on stderr
    first, second = summary["settings"]
    assert (first["lora_lr"], second["lora_lr"]) == (1e-4, 2e-4)
    assert first["train_steps"] == 2 and first["token_lr"] == TOY.token_lr
    assert first["batch_size"] == 1 and first["lora_rank"] == TOY.lora_rank  # asked for / the preset's
    assert "--batch-size 1" in summary["command"]
    smiley, chelsea = first["concepts"]
    assert smiley["concept"] == "smiley" and smiley["class_word"] == "circle"
    assert 0.0 <= smiley["recognition_concept_prompt"]["recognised"] <= 1.0
    assert smiley["recognition_base_class_word"]["images"] == 2
    assert "recognition_concept_prompt" not in chelsea  # a photograph: the judge cannot read it
    assert first["mean_recognition_concept_prompt"] == smiley["recognition_concept_prompt"]["recognised"]
    assert first["concepts_closer_mmd"] == sum(
        r["mmd_concept_prompt"] < r["mmd_base_class_word"] for r in first["concepts"]
    )
    assert summary["backbone_digest"] and summary["command"].startswith("mnemo bench personalization")
    assert (tmp_path / "personalization.png").stat().st_size > 0
