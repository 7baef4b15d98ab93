"""The estimators: intervals that cover what they claim to, and exact answers where the data
leave no doubt."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import optimize, stats

from teachable.measure.intervals import (
    DISCORDANT,
    as_cube,
    bootstrap_clusters,
    bootstrap_rows,
    difference_of_means,
    hierarchical_mean,
    mean_and_se,
    spearman,
    tango,
    wilson,
)
from teachable.measure.reliability import ceiling, disattenuated, split_half, test_retest
from teachable.records.estimate import Estimate


def test_identical_sides_give_an_honest_interval_that_names_its_parts() -> None:
    """No pair disagrees: one seed gives Tango's interval, never [0, 0] (at 6 pairs it spans
    0.39 either way); several seeds give the crossed t, here zero-width for a verdict to read
    as inconclusive. n counts the cells; the parts say how they are laid out."""
    one = hierarchical_mean(np.zeros((1, 6, 1)))
    assert (one.value, one.low, one.high) == pytest.approx((0.0, -0.390334, 0.390334), abs=1e-6)
    assert one.parts == {"seeds": 1, "items": 6, "episodes": 1}
    assert one.counts == {DISCORDANT: 0} and "Tango" in one.method
    assert one.text() == "0.000 [-0.390, 0.390], n=1 seed x 6 items x 1 episode; 0 discordant"
    several = hierarchical_mean(np.zeros((3, 10, 4)))
    assert (several.value, several.low, several.high, several.n) == (0.0, 0.0, 0.0, 120)
    assert several.text().endswith("n=3 seeds x 10 items x 4 episodes; 0 discordant")


def test_tango_bounds_are_where_the_score_statistic_meets_the_normal_quantile() -> None:
    """Tango's score statistic, with p01 at its numerically maximized restricted likelihood,
    equals 1.96 at the lower bound and -1.96 at the upper."""
    ahead, behind, pairs = 7, 2, 30
    bounds = tango(ahead, behind, pairs)

    def score(delta: float) -> float:
        concordant = pairs - ahead - behind
        p01 = optimize.minimize_scalar(
            lambda q: (
                -(
                    ahead * np.log(q + delta)
                    + behind * np.log(q)
                    + concordant * np.log(1 - 2 * q - delta)
                )
            ),
            bounds=(max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12),
            method="bounded",
            options={"xatol": 1e-12},
        ).x
        variance = (2 * p01 + delta - delta**2) / pairs
        return ((ahead - behind) / pairs - delta) / np.sqrt(variance)

    assert score(float(bounds[0])) == pytest.approx(1.959964, abs=1e-4)
    assert score(float(bounds[1])) == pytest.approx(-1.959964, abs=1e-4)
    low, high = tango([0, 6], [0, 0], 6)
    assert (low[0], high[0]) == pytest.approx((-0.390334, 0.390334), abs=1e-6)
    assert high[1] == pytest.approx(1.0) and 0 < low[1] < 1


def test_several_seeds_take_the_item_effect_they_share() -> None:
    """Every seed gains on the same items and on no other: the seed means agree exactly, so a
    t on them would be [0.5, 0.5], yet another draw of items would move the mean. The crossed
    interval keeps the item spread; with a single item it is the t on seed means."""
    shared = np.tile(np.repeat([1.0, 0.0], 5), (3, 1))[:, :, None]
    estimate = hierarchical_mean(shared)
    assert estimate.value == 0.5 and estimate.low < 0.25 and estimate.high > 0.75
    assert "crossed seeds x items" in estimate.method
    seed_means = np.array([0.2, 0.4, 0.3])[:, None, None]
    single = hierarchical_mean(seed_means)
    half = stats.t.ppf(0.975, 2) * np.std([0.2, 0.4, 0.3], ddof=1) / np.sqrt(3)
    assert (single.low, single.high) == pytest.approx((0.3 - half, 0.3 + half), abs=1e-6)


def test_one_seed_of_real_values_gets_a_t_over_items_and_a_1d_array_has_no_parts() -> None:
    values = np.array([0.25, -0.5, 0.75, 0.0, 0.5])
    estimate = hierarchical_mean(values)
    half = stats.t.ppf(0.975, 4) * values.std(ddof=1) / np.sqrt(5)
    assert (estimate.low, estimate.high) == pytest.approx((0.2 - half, 0.2 + half), abs=1e-6)
    assert estimate.parts == {} and estimate.counts == {} and estimate.text().endswith("n=5")


def test_episodes_of_one_item_count_once_through_the_design_effect() -> None:
    """Four copies of each of 12 items' outcomes are 12 draws, not 48: the design effect (4)
    brings the score interval back to the 12 items'."""
    outcomes = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, -1, 1, 0], dtype=float)
    copied = hierarchical_mean(np.repeat(outcomes[:, None], 4, axis=1)[None])
    alone = hierarchical_mean(outcomes[None, :, None])
    assert (copied.low, copied.high) == pytest.approx((alone.low, alone.high), abs=1e-6)
    assert "design effect of 4.00" in copied.method and copied.n == 48


def test_items_a_seed_did_not_play_are_left_out() -> None:
    cube = np.full((2, 4, 2), np.nan)
    cube[:, :2] = 1.0
    cube[1, 2] = 0.0  # one seed only: left out
    estimate = hierarchical_mean(cube)
    assert estimate.value == 1.0 and estimate.n == 8
    assert estimate.parts == {"seeds": 2, "items": 2, "episodes": 2}
    assert hierarchical_mean(np.full((1, 3, 1), np.nan)).value is None


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
    assert estimate.low > 0.8 and estimate.p_value < 0.01
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]).value is None


def test_spearman_is_fisher_z_with_bonett_wright_error_and_counts_distinct_values() -> None:
    """The interval is tanh(atanh(rho) -+ 1.96 sqrt((1 + rho²/2) / (n - 3))): at the pilot's
    rho = 0.49, n = 12 that is [-0.15, 0.84]; every resample counts (none is dropped), the
    permutation p-value is scipy's, and the distinct values of each side are reported."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=12)
    y = np.where(rng.random(12) < 0.6, 0.0, np.round(x + rng.normal(0, 1, 12)))
    estimate = spearman(x, y, resamples=300, seed=4)
    rho = stats.spearmanr(x, y).statistic
    half = 1.959964 * np.sqrt((1 + rho**2 / 2) / 9)
    expected = np.tanh(np.arctanh(rho) - half), np.tanh(np.arctanh(rho) + half)
    assert (estimate.low, estimate.high) == pytest.approx(expected, abs=1e-5)
    assert estimate.counts == {"distinct x": 12, "distinct y": len(np.unique(y))}
    permuted = stats.permutation_test(
        (x,),
        lambda a: stats.spearmanr(a, y).statistic,
        permutation_type="pairings",
        n_resamples=300,
        rng=np.random.default_rng(4),
    )
    assert estimate.p_value == pytest.approx(permuted.pvalue, abs=1e-6)
    pilot = np.tanh(np.arctanh(0.49) + np.array([-1, 1]) * 1.959964 * np.sqrt(1.12005 / 9))
    assert pilot == pytest.approx([-0.154, 0.842], abs=1e-3)
    assert "distinct x" in estimate.text() and "p=" in estimate.text()


def test_difference_of_means_and_standard_error() -> None:
    estimate = difference_of_means([1.0] * 10, [0.0] * 10, resamples=200)
    assert (estimate.value, estimate.low, estimate.high) == (1.0, 1.0, 1.0)
    mean, se = mean_and_se([0.0, 1.0, 0.0, 1.0])
    assert mean == 0.5 and se == pytest.approx(np.std([0, 1, 0, 1], ddof=1) / 2)


def test_test_retest_reads_agreement_and_noise() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=80)
    close = test_retest(truth + rng.normal(0, 0.1, 80), truth + rng.normal(0, 0.1, 80))
    noisy = test_retest(rng.normal(size=80), rng.normal(size=80))
    assert close.low > 0.9
    assert noisy.low < 0 < noisy.high
    assert test_retest([1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]).value is None


def test_test_retest_covers_at_a_panel_of_12() -> None:
    """Two labelings with a true correlation of 0.6 at the pilot's panel of 12: over 1000
    simulated panels the Fisher-z interval covers 0.6 in 93-97% of them."""
    rng = np.random.default_rng(0)
    covariance = [[1.0, 0.6], [0.6, 1.0]]
    covered = []
    for _ in range(1000):
        first, second = rng.multivariate_normal([0, 0], covariance, 12).T
        r = test_retest(first, second)
        covered.append(r.low <= 0.6 <= r.high)
    assert 0.93 <= np.mean(covered) <= 0.97


def test_split_half_steps_up_and_disattenuation_reads_the_ceiling() -> None:
    """Halves that agree with r = 0.5 give a full-length reliability of 2/3 (Spearman-Brown);
    a rho of 0.3 against reliabilities 0.5 and 0.72 (ceiling 0.6) reads as 0.5, and no ceiling
    is drawn from a reliability that is not positive."""
    rng = np.random.default_rng(4)
    truth = rng.normal(size=4000)
    first, second = truth + rng.normal(size=4000), truth + rng.normal(size=4000)
    reliability = split_half(first, second)
    assert reliability.value == pytest.approx(2 / 3, abs=0.02)
    assert reliability.low < reliability.value < reliability.high
    rho = Estimate(value=0.3, low=0.1, high=0.48, n=40)
    known = [Estimate(value=0.5, n=12), Estimate(value=0.72, n=12)]
    corrected = disattenuated(rho, ceiling(known))
    assert (corrected.value, corrected.low, corrected.high) == pytest.approx(
        (0.5, 1 / 6, 0.8), abs=1e-6
    )
    assert "disattenuated" in corrected.method
    assert ceiling([known[0], Estimate(value=-0.1, n=12)]) is None
    assert disattenuated(rho, None) is None


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
