"""Point estimates with their 95% intervals and n, as every figure of the workbench is reported.

- single rates: the Wilson score interval;
- paired differences: a hierarchical percentile bootstrap over training seeds, then items, with
  each item's episodes resampled inside it, on an array `(seeds, items, episodes)` of paired
  differences (common random numbers make episode e of item i the same draw for both sides);
- rank correlation: Spearman's rho with a paired percentile bootstrap (`scipy.stats.bootstrap`);
- figures of paired rows (R², a ranking metric, the difference of two rankers on the same rows):
  a percentile bootstrap resampling the rows together, or whole clusters of rows (the
  snapshots of one task) where rows are not independent;
- a label's mean of paired differences: the mean and its standard error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence

import numpy as np
from scipy import stats

from teachable.records.estimate import CONFIDENCE, Estimate

RESAMPLES = 2000


BOOTSTRAP_CELLS = 4_000_000  # resampled cells held in memory at once by the bootstrap


def number(value: float | None) -> float | None:
    """A JSON-ready float: None for a missing value or NaN, else rounded to 6 places."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), 6)


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> Estimate:
    """A success rate with its Wilson score interval."""
    if n == 0:
        return Estimate(value=None, n=0, confidence=confidence, method="wilson")
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return Estimate(
        value=number(successes / n),
        low=number(interval.low),
        high=number(interval.high),
        n=int(n),
        confidence=confidence,
        method="wilson",
    )


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than two values)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()) if len(values) else float("nan"), 0.0
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def as_cube(differences: np.ndarray) -> np.ndarray:
    """Paired differences as (seeds, items, episodes): a 1-D array is items, 2-D is
    (items, episodes)."""
    cube = np.asarray(differences, dtype=float)
    while cube.ndim < 3:
        cube = cube[None] if cube.ndim == 2 else cube[:, None]
    if cube.ndim != 3:
        raise ValueError(f"paired differences need at most 3 axes, got shape {cube.shape}")
    return cube


def hierarchical_bootstrap(
    differences: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """The mean paired difference with a percentile interval from resampling training seeds,
    then items (shared by the seeds: every model played the same items), then each item's
    episodes. NaN cells (an item a model did not play) are left out of every mean.

    `n` counts the paired units, seeds x items x episodes that are not NaN."""
    cube = as_cube(differences)
    seeds, items, episodes = cube.shape
    present = int(np.sum(~np.isnan(cube)))
    method = f"hierarchical bootstrap: {seeds} seeds x {items} items x {episodes} episodes"
    if present == 0:
        return Estimate(value=None, n=0, confidence=confidence, method=method)
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOTSTRAP_CELLS // cube.size)
    parts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of NaN cells only
        for start in range(0, resamples, chunk):
            r = min(chunk, resamples - start)
            s = rng.integers(0, seeds, (r, seeds))[:, :, None, None]
            i = rng.integers(0, items, (r, items))
            e = rng.integers(0, episodes, (r, items, episodes))[:, None]
            parts.append(np.nanmean(cube[s, i[:, None, :, None], e], axis=(1, 2, 3)))
    draws = np.concatenate(parts)
    draws = draws[~np.isnan(draws)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Estimate(
        value=number(np.nanmean(cube)),
        low=number(low),
        high=number(high),
        n=present,
        confidence=confidence,
        method=method,
    )


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho, NaN where it is undefined (fewer than 3 points or a constant side)."""
    if len(x) < 3:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def spearman(
    x: Sequence[float],
    y: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Spearman's rho of paired x and y with a percentile bootstrap interval over the pairs;
    resamples with a constant side have no rho and are left out."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho = _spearman(x, y)
    method = "spearman, paired percentile bootstrap"
    estimate = Estimate(value=number(rho), n=len(x), confidence=confidence, method=method)
    if np.isnan(rho):
        return estimate
    with warnings.catch_warnings():  # resamples with a constant side are expected here
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        boot = stats.bootstrap(
            (x, y),
            _spearman,
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            method="percentile",
            confidence_level=confidence,
            rng=np.random.default_rng(seed),
        )
    distribution = boot.bootstrap_distribution
    defined = distribution[~np.isnan(distribution)]
    if len(defined):
        tail = (1 - confidence) / 2 * 100
        low, high = np.percentile(defined, [tail, 100 - tail])
        estimate = estimate.model_copy(update={"low": number(low), "high": number(high)})
    return estimate


def difference_of_means(
    first: Sequence[float],
    second: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """mean(first) - mean(second) for two independent groups, with a percentile bootstrap
    interval that resamples each group on its own."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    n = len(first) + len(second)
    method = "difference of means, two-sample percentile bootstrap"
    if not len(first) or not len(second):
        return Estimate(value=None, n=n, confidence=confidence, method=method)
    rng = np.random.default_rng(seed)
    draws = first[rng.integers(0, len(first), (resamples, len(first)))].mean(axis=1) - second[
        rng.integers(0, len(second), (resamples, len(second)))
    ].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Estimate(
        value=number(first.mean() - second.mean()),
        low=number(low),
        high=number(high),
        n=n,
        confidence=confidence,
        method=method,
    )


def bootstrap_rows(
    n: int,
    figures: Callable[[np.ndarray], dict[str, float]],
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Estimate]:
    """Figures of `n` paired rows, each with a percentile interval from resampling the rows
    together: `figures(indices)` computes every figure on the rows at `indices`, so figures of
    one resample (and differences between them) are paired. A figure undefined on a resample
    (NaN) leaves that resample out of its interval."""
    method = f"percentile bootstrap over {n} paired rows"
    point = figures(np.arange(n))
    if n == 0:
        return {name: Estimate(value=None, n=0, method=method) for name in point}
    rng = np.random.default_rng(seed)
    draws = [figures(rng.integers(0, n, n)) for _ in range(resamples)]
    tail = (1 - confidence) / 2 * 100
    estimates = {}
    for name, value in point.items():
        estimate = Estimate(value=number(value), n=n, confidence=confidence, method=method)
        defined = np.array([draw[name] for draw in draws], dtype=float)
        defined = defined[~np.isnan(defined)]
        if estimate.value is not None and len(defined):
            low, high = np.percentile(defined, [tail, 100 - tail])
            estimate = estimate.model_copy(update={"low": number(low), "high": number(high)})
        estimates[name] = estimate
    return estimates


def bootstrap_clusters(
    clusters: Sequence[Hashable],
    figures: Callable[[np.ndarray], dict[str, float]],
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Estimate]:
    """`bootstrap_rows` resampling whole clusters (row i belongs to `clusters[i]`): rows of one
    cluster, such as the snapshots of one task, are not independent draws. `figures` gets row
    indices in row order (a drawn cluster's rows repeat together); `n` counts the rows, and
    fewer than 2 clusters give no interval."""
    members: dict[Hashable, list[int]] = {}
    for index, cluster in enumerate(clusters):
        members.setdefault(cluster, []).append(index)
    groups = [np.array(rows) for rows in members.values()]

    def of_clusters(drawn: np.ndarray) -> dict[str, float]:
        picked = [groups[i] for i in drawn]
        return figures(np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=int))

    method = f"percentile bootstrap over {len(groups)} clusters ({len(clusters)} rows)"
    update: dict[str, object] = {"n": len(clusters), "method": method}
    if len(groups) < 2:
        update |= {"low": None, "high": None}
    estimates = bootstrap_rows(len(groups), of_clusters, resamples, seed, confidence)
    return {name: estimate.model_copy(update=update) for name, estimate in estimates.items()}


def negated(estimate: Estimate) -> Estimate:
    """-x with its interval turned round: a drop from a gain."""
    flip = {"value": estimate.value, "low": estimate.high, "high": estimate.low}
    return estimate.model_copy(update={name: None if v is None else -v for name, v in flip.items()})
