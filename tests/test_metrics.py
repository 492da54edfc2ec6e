"""Unit tests of the paper's metrics (App. E) against values computed by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from core.engine.metrics import (
    a_mmd,
    bwt_mmd,
    f_mmd,
    image_image_similarity,
    kid,
    mean_over_seen,
    mmd,
    mmd2_biased,
    mmd2_unbiased,
    n_param_store_pct,
    n_param_train_pct,
    polynomial_kernel,
)

X = torch.tensor([[0.0], [1.0]])
Y = torch.tensor([[2.0], [3.0]])


def test_polynomial_kernel_matches_hand_value():
    # (x.y/d + 1)^2 with x.y = 1, d = 2 -> 1.5^2
    k = polynomial_kernel(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), degree=2)
    assert k.item() == pytest.approx(2.25)


def test_mmd_unbiased_quadratic_hand_computed():
    # k(a,b) = (ab + 1)^2. Kxx off-diagonal: k(0,1) = 1 -> 1. Kyy: k(2,3) = 49 -> 49.
    # Kxy: 1, 1, 9, 16 -> mean 6.75. MMD^2_u = 1 + 49 - 2 * 6.75 = 36.5
    assert mmd2_unbiased(X, Y, degree=2) == pytest.approx(36.5)
    assert mmd2_unbiased(Y, X, degree=2) == pytest.approx(36.5)


def test_biased_mmd_hand_computed_and_mmd_is_the_unbiased_one():
    # Kxx: k(0,0)=1, k(0,1)=1, k(1,1)=4 -> (1+1+1+4)/4 = 1.75
    # Kyy: k(2,2)=25, k(2,3)=49, k(3,3)=100 -> (25+49+49+100)/4 = 55.75
    # Kxy mean 6.75 -> 1.75 + 55.75 - 13.5 = 44
    assert mmd2_biased(X, Y, degree=2) == pytest.approx(44.0)
    assert mmd(X, Y) == pytest.approx(36.5)  # the benchmark's MMD is the U-statistic
    assert mmd2_biased(Y, Y, degree=2) == 0.0
    assert mmd2_unbiased(Y, Y, degree=2) < 0.0


def test_unbiased_mmd_is_centred_at_zero_for_one_distribution_unlike_the_biased():
    """Pairs of 8-sample sets from ONE distribution: MMD²_u averages ≈ 0 (some values < 0), MMD²_b > 0."""
    g = torch.Generator().manual_seed(0)
    unbiased, biased = [], []
    for _ in range(400):
        a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
        unbiased.append(mmd2_unbiased(a, b, degree=2))
        biased.append(mmd2_biased(a, b, degree=2))
    u, bias = torch.tensor(unbiased), torch.tensor(biased)
    standard_error = float(u.std() / len(unbiased) ** 0.5)
    assert abs(float(u.mean())) < 3 * standard_error  # centred at 0
    assert (u < 0).any() and (u > 0).any()
    assert (bias > 0).all() and float(bias.mean()) > 10 * standard_error  # biased: offset > 0


def test_mmd_cubic_hand_computed():
    # k = (ab + 1)^3: Kxx 1, Kyy 343, Kxy mean (1 + 1 + 27 + 64) / 4 = 23.25 -> 297.5
    assert mmd2_unbiased(X, Y, degree=3) == pytest.approx(297.5)


def test_mmd_is_near_zero_for_same_distribution_and_large_for_shifted():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 8, generator=g)
    b = torch.randn(400, 8, generator=g)
    assert abs(mmd2_unbiased(a, b, degree=2)) < 0.02
    assert mmd2_unbiased(a, b + 1.0, degree=2) > 10 * abs(mmd2_unbiased(a, b, degree=2))
    assert abs(mmd(a, b)) < 0.02 < mmd(a, b + 1.0)


def test_mmd_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        mmd(X[:1], Y)
    with pytest.raises(ValueError, match="dimensions"):
        mmd(X, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        mmd(torch.tensor([[math.nan], [1.0]]), Y)


def test_kid_full_sets_is_cubic_unbiased_mmd():
    result = kid(X, Y)
    assert result.mean == pytest.approx(297.5)
    assert result.subset_size == 2 and result.subsets == 1 and result.std == 0.0


def test_kid_subsets_average_of_subset_mmds():
    real = torch.tensor([[0.0], [1.0], [2.0]])
    fake = torch.tensor([[1.0], [3.0], [4.0]])
    every = [
        mmd2_unbiased(real[list(r)], fake[list(f)], degree=3)
        for r in itertools.combinations(range(3), 2)
        for f in itertools.combinations(range(3), 2)
    ]
    result = kid(real, fake, subsets=2000, subset_size=2, seed=1)
    assert result.subset_size == 2
    # Uniform subsets: the mean over many draws converges to the mean over all pairs.
    assert result.mean == pytest.approx(sum(every) / len(every), rel=0.05)
    assert kid(real, fake, subsets=5, subset_size=2, seed=3) == kid(
        real, fake, subsets=5, subset_size=2, seed=3
    )


def test_image_image_similarity_hand_computed():
    real = torch.tensor([[1.0, 0.0]])
    fake = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    # cosines 1 and 0 -> mean 0.5 -> x100
    assert image_image_similarity(real, fake) == pytest.approx(50.0)
    assert image_image_similarity(fake, fake) == pytest.approx(50.0)


NAN = math.nan
TO_REAL = [[1.0, NAN, NAN], [2.0, 3.0, NAN], [4.0, 5.0, 6.0]]
DRIFT = [[0.0, NAN, NAN], [0.5, 0.0, NAN], [1.0, 2.0, 0.0]]


def test_a_mmd_eq7():
    assert a_mmd(TO_REAL) == pytest.approx(5.0)  # (4 + 5 + 6) / 3
    assert a_mmd(TO_REAL, after_task=1) == pytest.approx(2.5)
    assert a_mmd(TO_REAL, after_task=0) == pytest.approx(1.0)


def test_bwt_mmd_eq9():
    # ((1 - 4) + (3 - 5)) / 2
    assert bwt_mmd(TO_REAL) == pytest.approx(-2.5)
    assert bwt_mmd(TO_REAL, after_task=1) == pytest.approx(-1.0)
    assert math.isnan(bwt_mmd(TO_REAL, after_task=0))


def test_f_mmd_eq8():
    assert f_mmd(DRIFT) == pytest.approx(1.5)  # (1 + 2) / 2
    assert f_mmd(DRIFT, after_task=1) == pytest.approx(0.5)
    assert math.isnan(f_mmd(DRIFT, after_task=0))


def test_mean_over_seen_and_errors():
    assert mean_over_seen(TO_REAL, after_task=1) == pytest.approx(2.5)
    with pytest.raises(ValueError, match="after_task"):
        a_mmd(TO_REAL, after_task=3)
    with pytest.raises(ValueError, match="square"):
        a_mmd([[1.0, 2.0]])


def test_param_percentages():
    assert n_param_train_pct(trained=9, unet=10_000) == pytest.approx(0.09)
    assert n_param_store_pct(stored=54, unet=10_000) == pytest.approx(100.54)
    assert n_param_store_pct(stored=0, unet=10) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        n_param_train_pct(trained=1, unet=0)
