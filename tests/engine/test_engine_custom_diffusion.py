"""Custom Diffusion's constrained merge of per-task K/V deltas (Kumari et al. 2023), replay-free."""

from __future__ import annotations

import torch

from core.engine import custom_diffusion as CD
from core.engine.methods import get_method
from core.engine.tokens import encode_prompts, tokenize
from tests.engine.test_engine_task import learn


def _random(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _objective(delta, regulariser, ridge=CD.RIDGE):
    gram = regulariser.T @ regulariser
    m = gram + ridge * float(gram.diagonal().mean()) * torch.eye(gram.shape[0], dtype=gram.dtype)
    return float(torch.trace(delta @ m @ delta.T))


def test_merge_keeps_every_tasks_outputs_on_its_own_features():
    deltas = [_random(5, 8, seed=s) for s in range(3)]
    features = [_random(2, 8, seed=10 + s) for s in range(3)]
    regulariser = _random(4, 8, seed=99)
    merged = CD.constrained_merge(deltas=deltas, features=features, regulariser=regulariser)
    for delta, c in zip(deltas, features, strict=True):
        assert torch.allclose(merged @ c.T, delta @ c.T, atol=1e-8)


def test_merge_is_the_least_change_on_the_regulariser_features():
    deltas = [_random(5, 8, seed=s) for s in range(2)]
    features = [_random(2, 8, seed=20 + s) for s in range(2)]
    regulariser = _random(6, 8, seed=7)
    merged = CD.constrained_merge(deltas=deltas, features=features, regulariser=regulariser)
    c = torch.cat(features)
    null = torch.eye(8, dtype=torch.float64) - torch.linalg.pinv(c) @ c  # Z @ null keeps Z Cᵀ = 0
    best = _objective(merged, regulariser)
    for seed in range(5):
        other = merged + _random(5, 8, seed=50 + seed) @ null
        assert torch.allclose(other @ c.T, merged @ c.T, atol=1e-8)  # also feasible
        assert _objective(other, regulariser) > best


def test_more_constraints_than_dimensions_fall_back_to_least_squares():
    deltas = [_random(3, 4, seed=s) for s in range(3)]
    features = [_random(2, 4, seed=30 + s) for s in range(3)]  # 6 rows in 4 dimensions
    merged = CD.constrained_merge(deltas=deltas, features=features, regulariser=_random(4, 4, seed=1))
    assert torch.isfinite(merged).all()


def test_custom_diffusion_merges_per_task_kv_on_the_tiny_model(backbone, config, prior_cache):
    assert get_method("custom_diffusion").per_task_adapters
    state, _ = learn(backbone, config, prior_cache, method="custom_diffusion", count=2)
    first, second = state.task_adapters
    assert {k.rsplit(".", 1)[1] for k in second} == {"delta", "task_delta"}
    prompts = [f"a photo of {tok}" for tok in state.tokens]
    ids, slots = tokenize(backbone, prompts, state.tokens)
    with torch.no_grad():
        hidden = encode_prompts(backbone, prompts, state.token_embeddings)
    eos = backbone.tokenizer.eos_token_id
    assert [r.shape[0] for r in CD.prompt_rows(hidden, ids, eos_id=eos)] == [6, 6]  # BOS a photo of <t> EOS
    rows = CD.prompt_rows(hidden, ids, eos_id=eos, starts=[s[0][0] for s in slots])
    assert [r.shape[0] for r in rows] == [2, 2]  # <token> EOS: the rows that differ between tasks
    key = next(k for k in second if k.endswith(".delta"))
    raw = key.removesuffix(".delta") + ".task_delta"
    for adapter, c in ((first, rows[0]), (second, rows[1])):
        merged_out = second[key].double() @ c.double().T
        own_out = adapter[raw].double() @ c.double().T
        assert torch.allclose(merged_out, own_out, atol=1e-4 * float(own_out.abs().max()) + 1e-9)
