"""The estimators: intervals that cover what they claim to, and exact answers where the data
leave no doubt."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from teachable.measure.intervals import (
    as_cube,
    bootstrap_clusters,
    bootstrap_rows,
    difference_of_means,
    hierarchical_bootstrap,
    mean_and_se,
    spearman,
    wilson,
)
from teachable.measure.reliability import test_retest


def test_identical_sides_give_a_zero_width_interval() -> None:
    estimate = hierarchical_bootstrap(np.zeros((3, 10, 4)), resamples=200)
    assert (estimate.value, estimate.low, estimate.high) == (0.0, 0.0, 0.0)
    assert estimate.n == 120


def test_hierarchical_bootstrap_covers_a_known_difference_at_its_nominal_rate() -> None:
    """200 synthetic experiments with a true mean difference of 0.1: seed, item and episode
    effects on top. A 95% interval should cover 0.1 in about 95% of them."""
    rng = np.random.default_rng(7)
    covered = 0
    for draw in range(200):
        seeds = rng.normal(0, 0.02, (4, 1, 1))
        items = rng.normal(0, 0.3, (1, 40, 1))
        episodes = rng.normal(0, 0.5, (4, 40, 4))
        estimate = hierarchical_bootstrap(0.1 + seeds + items + episodes, 400, seed=draw)
        covered += estimate.low <= 0.1 <= estimate.high
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_nan_cells_are_left_out() -> None:
    cube = np.full((1, 4, 2), np.nan)
    cube[0, :2] = 1.0
    estimate = hierarchical_bootstrap(cube, resamples=200)
    assert estimate.value == 1.0 and estimate.n == 4


def test_as_cube_reads_items_and_episodes() -> None:
    assert as_cube(np.zeros(5)).shape == (1, 5, 1)
    assert as_cube(np.zeros((5, 3))).shape == (1, 5, 3)
    with pytest.raises(ValueError, match="at most 3 axes"):
        as_cube(np.zeros((1, 2, 3, 4)))


def test_wilson_matches_the_textbook_interval() -> None:
    estimate = wilson(19, 60)
    p, n, z = 19 / 60, 60, 1.959964
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert estimate.value == pytest.approx(p, abs=1e-6)
    assert (estimate.low, estimate.high) == pytest.approx((center - half, center + half), abs=1e-5)
    assert wilson(0, 0).value is None


def test_spearman_interval_brackets_a_strong_correlation() -> None:
    x = np.arange(30.0)
    y = x + np.random.default_rng(0).normal(0, 3, 30)
    estimate = spearman(x, y, resamples=500)
    assert estimate.low <= estimate.value <= estimate.high
    assert estimate.low > 0.8
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]).value is None


def test_difference_of_means_and_standard_error() -> None:
    estimate = difference_of_means([1.0] * 10, [0.0] * 10, resamples=200)
    assert (estimate.value, estimate.low, estimate.high) == (1.0, 1.0, 1.0)
    mean, se = mean_and_se([0.0, 1.0, 0.0, 1.0])
    assert mean == 0.5 and se == pytest.approx(np.std([0, 1, 0, 1], ddof=1) / 2)


def test_test_retest_reads_agreement_and_noise() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=80)
    close = test_retest(truth + rng.normal(0, 0.1, 80), truth + rng.normal(0, 0.1, 80), 300)
    noisy = test_retest(rng.normal(size=80), rng.normal(size=80), 300)
    assert close.low > 0.9
    assert noisy.low < 0 < noisy.high


def test_row_bootstrap_pairs_its_figures_and_covers_a_known_mean() -> None:
    """Two figures of the same resampled rows: their difference is exact when the columns
    agree. Over 200 synthetic samples of 40 rows, the 95% interval on the mean covers the true
    mean in about 95% of them."""
    x = np.random.default_rng(0).normal(size=30)
    same = bootstrap_rows(30, lambda rows: {"gap": x[rows].mean() - x.copy()[rows].mean()}, 200)
    assert (same["gap"].value, same["gap"].low, same["gap"].high, same["gap"].n) == (0, 0, 0, 30)
    rng = np.random.default_rng(7)
    covered = 0
    for draw in range(200):
        sample = rng.normal(0.3, 1.0, 40)
        mean = bootstrap_rows(40, lambda rows, s=sample: {"mean": s[rows].mean()}, 300, draw)
        covered += mean["mean"].low <= 0.3 <= mean["mean"].high
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_row_bootstrap_leaves_out_undefined_resamples_and_empty_rows() -> None:
    values = np.array([0.0, 0.0, 0.0, 1.0])

    def spread(rows: np.ndarray) -> dict[str, float]:
        return {"spread": values[rows].std() if values[rows].std() > 0 else float("nan")}

    estimate = bootstrap_rows(4, spread, 300)["spread"]
    assert estimate.low > 0 and estimate.high <= 0.5
    empty = bootstrap_rows(0, lambda rows: {"mean": float("nan")})["mean"]
    assert (empty.value, empty.low, empty.n) == (None, None, 0)


def test_cluster_bootstrap_resamples_whole_clusters() -> None:
    """Ten clusters of ten identical rows hold ten independent draws, not a hundred: the
    cluster interval is as wide as the bootstrap of the ten cluster values, and wider than
    the row bootstrap that takes the copies for independent rows."""
    values = np.random.default_rng(2).normal(size=10)
    rows = np.repeat(values, 10)
    clusters = np.repeat(np.arange(10), 10).tolist()

    def mean_of(x: np.ndarray) -> Callable[[np.ndarray], dict[str, float]]:
        return lambda index: {"mean": x[index].mean()}

    by_cluster = bootstrap_clusters(clusters, mean_of(rows), 500, seed=1)["mean"]
    by_value = bootstrap_rows(10, mean_of(values), 500, seed=1)["mean"]
    by_row = bootstrap_rows(100, mean_of(rows), 500, seed=1)["mean"]
    assert by_cluster.value == pytest.approx(values.mean(), abs=1e-6)  # rounded to 6 places
    assert (by_cluster.low, by_cluster.high) == (by_value.low, by_value.high)
    assert by_cluster.high - by_cluster.low > 2 * (by_row.high - by_row.low)
    assert by_cluster.n == 100 and "10 clusters" in by_cluster.method
    one = bootstrap_clusters([0, 0, 0], mean_of(rows), 50)["mean"]
    assert one.value is not None and (one.low, one.high, one.n) == (None, None, 3)
