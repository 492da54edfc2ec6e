"""Each equation of the paper against a hand computation on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from core.engine import losses as L


def test_denoise_loss_is_elementwise_mean_eq1():
    eps = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    pred = torch.tensor([[0.0, 2.0], [3.0, 2.0]])
    assert L.denoise_loss(pred, eps).item() == pytest.approx((1 + 0 + 0 + 4) / 4)


@pytest.mark.parametrize("reduction, expected", [("sum", [5.0, 1.0]), ("mean", [2.5, 0.5])])
def test_dc_errors_sum_and_mean_eq3(reduction, expected):
    eps = torch.tensor([[1.0, 2.0]])  # B=1, "latent" of 2 elements
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])  # k=2 conditions
    errors = L.dc_errors(pred, eps, reduction=reduction)
    assert errors.tolist() == [expected]


def test_dc_log_probs_is_softmax_of_negative_error_over_tau_eq3():
    errors = torch.tensor([[1.0, 2.0, 4.0]])
    tau = 0.5
    weights = [math.exp(-e / tau) for e in (1.0, 2.0, 4.0)]
    expected = [math.log(w / sum(weights)) for w in weights]
    assert L.dc_log_probs(errors, tau=tau)[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_batched_dc_equals_sequential_calls(backbone):
    """All k conditions in one UNet call give the same predictions as k separate calls."""
    torch.manual_seed(0)
    x_t = torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 500])
    cond = torch.randn(3, 77, 32)
    with torch.no_grad():
        batched = L.batched_eps(backbone.unet, x_t, t, cond)
        sequential = torch.stack(
            [backbone.unet(x_t, t, cond[i : i + 1].expand(2, -1, -1)).sample for i in range(3)], dim=1
        )
    assert batched.shape == (2, 3, 4, 8, 8)
    assert torch.allclose(batched, sequential, atol=1e-5)


def test_ewc_dc_objective_signs_eq5():
    log_probs = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    denoise = torch.tensor(0.7)
    got = L.ewc_dc_objective(denoise, log_probs, target=1, delta=0.5)
    # +H(p, c_n) for the task's concept, −H(p, c_i) for the others; H(p, c_i) = −log p_i
    expected = 0.7 + 0.5 * (-math.log(0.5) + math.log(0.2) + math.log(0.3))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_squared_grads_are_a_per_sample_diagonal_fisher_eq4():
    theta = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    loss = (theta**2).sum() * 3  # gradient 6θ
    loss.backward()
    assert L.squared_grads({"w": theta})["w"].tolist() == [36.0, 144.0]


def test_ewc_penalty_by_hand_and_its_gradient():
    theta = torch.nn.Parameter(torch.tensor([1.0, 3.0]))
    anchor = {"w": torch.tensor([0.0, 1.0])}
    fisher = {"w": torch.tensor([2.0, 0.5])}
    penalty = L.ewc_penalty({"w": theta}, anchor=anchor, fisher=fisher, weight=10.0)
    assert penalty.item() == pytest.approx(10 * (2 * 1**2 + 0.5 * 2**2))
    penalty.backward()
    assert theta.grad.tolist() == pytest.approx([2 * 10 * 2 * 1, 2 * 10 * 0.5 * 2])  # 2λF(θ−θ*)
    at_anchor = L.ewc_penalty({"w": anchor["w"]}, anchor=anchor, fisher=fisher, weight=10.0)
    assert at_anchor.item() == 0.0


def test_online_fisher_merge_is_a_running_mean_and_retry_safe():
    f1 = {"w": torch.tensor([4.0, 0.0])}
    f2_task = {"w": torch.tensor([1.0, 3.0])}
    first = L.merge_fisher(None, f1, task_index=1)
    merged = L.merge_fisher(first, f2_task, task_index=2)
    assert merged["w"].tolist() == [2.5, 1.5]  # ((2-1)·F1 + F2) / 2
    retried = L.merge_fisher(first, f2_task, task_index=2)  # a retried job starts from the STORED F1
    assert torch.equal(retried["w"], merged["w"])
    f3_task = {"w": torch.tensor([1.0, 0.0])}
    assert L.merge_fisher(merged, f3_task, task_index=3)["w"].tolist() == pytest.approx([2.0, 1.0])
    assert first["w"].tolist() == [4.0, 0.0]  # inputs untouched


def test_c_lora_forget_loss_eq2_by_hand():
    module = "m"
    past = [
        {f"{module}.lora_A": torch.tensor([[1.0, 0.0]]), f"{module}.lora_B": torch.tensor([[1.0], [-1.0]])},
    ]
    current = {
        f"{module}.lora_A": torch.tensor([[2.0, 1.0]]),
        f"{module}.lora_B": torch.tensor([[1.0], [1.0]]),
    }
    # past ΔW = B A = [[1, 0], [-1, 0]] -> |.| = [[1, 0], [1, 0]]; current ΔW = [[2, 1], [2, 1]]
    # |past| ⊙ current = [[2, 0], [2, 0]] -> squared Frobenius norm 8
    occupied = L.c_lora_occupancy(past)
    assert occupied["m"].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert L.c_lora_forget_loss(occupied, current).item() == pytest.approx(8.0)
    assert L.c_lora_forget_loss(L.c_lora_occupancy([]), current).item() == 0.0


def test_dsc_loss_eq6_by_hand():
    p_s = torch.tensor([[0.5, 0.25, 0.25]])
    p_n = torch.tensor([[0.1, 0.8, 0.1]])
    p_j = torch.tensor([[0.2, 0.2, 0.6]])
    e_s_n, e_n = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])
    e_s_j, e_j = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    got = L.dsc_loss(
        student_log_probs=p_s.log(),
        new_teacher_log_probs=p_n.log(),
        old_teacher_log_probs=p_j.log(),
        student_eps_new=e_s_n,
        new_teacher_eps=e_n,
        student_eps_old=e_s_j,
        old_teacher_eps=e_j,
        gamma=0.1,
        lam=1.5,
    )
    h_n = -(0.1 * math.log(0.5) + 0.8 * math.log(0.25) + 0.1 * math.log(0.25))
    h_j = -(0.2 * math.log(0.5) + 0.2 * math.log(0.25) + 0.6 * math.log(0.25))
    mse = (1 + 0) / 2 + (4 + 0) / 2
    assert got.item() == pytest.approx(0.1 * (h_n + h_j) + 1.5 * mse, rel=1e-6)
