"""Scale-free consolidation: the normalised Fisher (EWC, EWC-DC) and C-LoRA occupancy, on the tiny model."""

from __future__ import annotations

import pytest
import torch

from core.engine import losses as L
from core.engine.config import TINY
from core.engine.state import UserState, load_state, save_version
from tests.engine.test_engine_task import learn


def _task(backbone, state, index, *, method, config, prior_cache):
    return learn(backbone, config, prior_cache, method=method, count=1, state=state, start=index)[0]


def _movement(before, after) -> float:
    return float(sum(((after[k] - before[k]) ** 2).sum() for k in after) ** 0.5)


# --- pure functions ----------------------------------------------------------------------------


def test_fisher_mean_and_normalisation_by_hand():
    fisher = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([[2.0, 6.0]])}
    assert L.fisher_mean(fisher) == pytest.approx(3.0)  # (1 + 3 + 2 + 6) / 4
    normalised = L.normalise_fisher(fisher, mean=3.0)
    assert normalised["a"].tolist() == pytest.approx([1 / 3, 1.0])
    assert L.fisher_mean(normalised) == pytest.approx(1.0)
    zero = {"a": torch.zeros(3)}
    assert torch.equal(L.normalise_fisher(zero, mean=0.0)["a"], zero["a"])  # no division by 0


def test_normalised_penalty_ignores_the_fisher_scale():
    g = torch.Generator().manual_seed(0)
    fisher = {"w": torch.rand(50, generator=g)}
    anchor = {"w": torch.zeros(50)}
    theta = {"w": torch.randn(50, generator=g)}
    penalties = []
    for scale in (1e-7, 1.0, 1e5):
        scaled = {"w": fisher["w"] * scale}
        norm = L.normalise_fisher(scaled, mean=L.fisher_mean(scaled))
        penalties.append(L.ewc_penalty(theta, anchor=anchor, fisher=norm, weight=2.0).item())
    assert penalties == pytest.approx([penalties[0]] * 3, rel=1e-5)


def test_c_lora_occupancy_normalisation_is_scale_free():
    m = "m"
    past = [{f"{m}.lora_A": torch.tensor([[1.0, 2.0]]), f"{m}.lora_B": torch.tensor([[1.0], [-3.0]])}]
    current = {f"{m}.lora_A": torch.tensor([[0.5, 1.0]]), f"{m}.lora_B": torch.tensor([[2.0], [1.0]])}
    occupied = L.c_lora_occupancy(past)  # |B A| = [[1, 2], [3, 6]]
    assert L.occupancy_rms(occupied) == pytest.approx(((1 + 4 + 9 + 36) / 4) ** 0.5)
    losses = []
    for scale in (1e-3, 1.0, 40.0):
        scaled = [{**past[0], f"{m}.lora_B": past[0][f"{m}.lora_B"] * scale}]
        occ = L.c_lora_occupancy(scaled)
        normalised = L.normalise_occupancy(occ, rms=L.occupancy_rms(occ))
        assert L.elementwise_mean({k: v**2 for k, v in normalised.items()}) == pytest.approx(1.0)
        losses.append(L.c_lora_forget_loss(normalised, current).item())
    assert losses == pytest.approx([losses[0]] * 3, rel=1e-5)


# --- on the tiny backbone ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def consolidation_config():
    """The TINY preset (its λ are the toy's, TOY_EWC_LAMBDA) with 10 steps per task."""
    return TINY.with_(train_steps=10, checkpoint_every=100)


@pytest.fixture(scope="module")
def first_tasks(backbone, consolidation_config, tmp_path_factory):
    """Task 1 of each method, and sequential LoRA's task 2 (the unconstrained reference)."""
    cache = tmp_path_factory.mktemp("prior_consolidation")
    states = {
        method: _task(
            backbone, UserState.empty(), 0, method=method, config=consolidation_config, prior_cache=cache
        )
        for method in ("lora_sequential", "ewc", "ewc_dc")
    }
    states["lora_sequential_2"] = _task(
        backbone,
        states["lora_sequential"],
        1,
        method="lora_sequential",
        config=consolidation_config,
        prior_cache=cache,
    )
    return states, cache


def test_ewc_and_ewc_dc_penalties_are_of_the_same_order_for_one_lambda(first_tasks, consolidation_config):
    states, _ = first_tasks
    plain, dc = states["ewc"], states["ewc_dc"]
    assert plain.normalisers["fisher_mean"] == pytest.approx(L.fisher_mean(plain.fisher))
    assert dc.normalisers["fisher_mean"] == pytest.approx(L.fisher_mean(dc.fisher))
    # one displacement for both: where sequential LoRA goes in task 2
    anchor = states["lora_sequential"].task_adapters[0]
    moved = states["lora_sequential_2"].task_adapters[1]
    lam = consolidation_config.ewc_lambda
    penalty, raw = {}, {}
    for name, state in (("plain", plain), ("dc", dc)):
        normalised = L.normalise_fisher(state.fisher, mean=state.fisher_scale)
        penalty[name] = L.ewc_penalty(moved, anchor=anchor, fisher=normalised, weight=lam).item()
        raw[name] = L.ewc_penalty(moved, anchor=anchor, fisher=state.fisher, weight=lam).item()
    print(
        f"fisher means plain {plain.fisher_scale:.3e} dc {dc.fisher_scale:.3e}; penalties {penalty} raw {raw}"
    )
    assert penalty["plain"] > 0 and penalty["dc"] > 0
    assert 0.1 < penalty["dc"] / penalty["plain"] < 10.0, (penalty, raw)


@pytest.mark.parametrize("method", ["ewc", "ewc_dc"])
def test_preset_lambda_neither_freezes_nor_frees_task_2(first_tasks, backbone, consolidation_config, method):
    """Movement ‖θ_2 − θ_1‖ relative to sequential LoRA's: frozen < 5 %, free > 95 %."""
    states, cache = first_tasks
    free = _movement(states["lora_sequential"].task_adapters[0], states["lora_sequential_2"].task_adapters[1])
    first = states[method]
    second = _task(backbone, first, 1, method=method, config=consolidation_config, prior_cache=cache)
    moved = _movement(first.task_adapters[0], second.task_adapters[1])
    print(f"{method}: task-2 movement {moved:.4g}, sequential LoRA {free:.4g}, ratio {moved / free:.3f}")
    assert 0.05 < moved / free < 0.95, (moved, free)


def test_online_merge_and_retry_use_the_stored_fisher(first_tasks, backbone, consolidation_config, tmp_path):
    states, cache = first_tasks
    first = states["ewc_dc"]
    save_version(first, tmp_path / "v1")
    reloaded = load_state([tmp_path / "v1"])
    assert reloaded.normalisers == pytest.approx(first.normalisers)
    a = _task(backbone, reloaded, 1, method="ewc_dc", config=consolidation_config, prior_cache=cache)
    b = _task(
        backbone, reloaded, 1, method="ewc_dc", config=consolidation_config, prior_cache=cache
    )  # a retry
    for key in a.fisher:
        assert torch.equal(a.fisher[key], b.fisher[key])
    assert (
        a.normalisers["fisher_mean"] == b.normalisers["fisher_mean"] == pytest.approx(L.fisher_mean(a.fisher))
    )
    # F_2 = (F_1 + F_2^task) / 2 over the STORED raw F_1: the implied task Fisher 2 F_2 − F_1 is a
    # mean of squared gradients, so it is ≥ 0 (it would not be, had F_1 been normalised first)
    implied = {k: 2 * a.fisher[k].double() - first.fisher[k].double() for k in a.fisher}
    tolerance = 1e-5 * L.fisher_mean(a.fisher)
    assert all((v >= -tolerance).all() for v in implied.values())
    assert torch.equal(reloaded.fisher[next(iter(reloaded.fisher))], first.fisher[next(iter(first.fisher))])


def test_a_state_without_a_recorded_normaliser_computes_it(first_tasks):
    states, _ = first_tasks
    legacy = UserState(
        concepts=states["ewc"].concepts,
        token_embeddings=states["ewc"].token_embeddings,
        task_adapters=states["ewc"].task_adapters,
        fisher=states["ewc"].fisher,
        method="ewc",
    )
    assert legacy.fisher_scale == pytest.approx(states["ewc"].normalisers["fisher_mean"])


def test_c_lora_records_its_occupancy_normaliser(backbone, consolidation_config, tmp_path):
    state = _task(
        backbone, UserState.empty(), 0, method="c_lora", config=consolidation_config, prior_cache=tmp_path
    )
    assert "c_lora_occupancy_rms" not in state.normalisers  # nothing occupied in task 1
    state = _task(backbone, state, 1, method="c_lora", config=consolidation_config, prior_cache=tmp_path)
    expected = L.occupancy_rms(L.c_lora_occupancy(state.task_adapters[:1]))
    assert state.normalisers["c_lora_occupancy_rms"] == pytest.approx(expected)
