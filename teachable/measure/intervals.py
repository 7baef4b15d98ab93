"""Point estimates with their 95% intervals and n, as every figure of the workbench is reported.
Each method was chosen by simulation at the shapes the parameter sets use, and is tested there
for coverage (tests/test_interval_coverage.py):

- single rates: the Wilson score interval;
- means over levels, such as paired differences shaped `(seeds, items, episodes)` (common
  random numbers make episode e of item i the same draw for both sides): with several seeds, a
  t interval from the crossed seeds x items variance components with Satterthwaite's degrees of
  freedom; with one seed, Tango's score interval where every value is -1, 0 or 1 (the paired
  difference of binary outcomes), with its counts shrunk by the design effect of the episodes
  within items, else a t interval over items;
- rank correlation: Spearman's rho with a Fisher-z interval (Bonett and Wright's standard
  error) and a permutation p-value of no association;
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

from teachable.records.estimate import CONFIDENCE, Design, Estimate, VarianceComponent

RESAMPLES = 2000


LEVELS = ("seeds", "items", "episodes")  # the levels of a figure laid out in three axes


DISCORDANT = "discordant"  # the count of pairs of binary outcomes that disagree


TANGO_STEPS = 52  # bisection steps on [-1, 1]: Tango's bounds to double precision


Interval = tuple[float, float | None, float | None, str]  # value, low, high, method


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
    rate = successes / n
    return Estimate(
        value=number(rate),
        low=number(interval.low),
        high=number(interval.high),
        n=int(n),
        confidence=confidence,
        method="wilson",
        components=[VarianceComponent(level="n", variance=rate * (1 - rate), over={"n": int(n)})],
        design="normal",
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


def hierarchical_mean(
    values: np.ndarray, confidence: float = CONFIDENCE, replicates: str = "seeds"
) -> Estimate:
    """The mean of values laid out as (seeds, items, episodes), a 1-D array being items and a
    2-D one (items, episodes), with the interval its shape calls for: over several seeds (or
    other `replicates` on the first axis) the crossed t interval, at one seed Tango's score
    interval where every value is -1, 0 or 1, else a t interval over items. Items a seed did
    not play, and seeds that played none, are left out; so are NaN episodes.

    `n` counts the cells used; `parts` gives them as seeds x items x episodes (items x episodes
    for a 2-D array, none for a 1-D one), and values of -1, 0 and 1 count their `discordant`
    cells (the nonzero ones)."""
    raw = np.asarray(values, dtype=float)
    cube = as_cube(raw)
    played = ~np.isnan(cube).all(axis=2)
    seeds_played = played.any(axis=1)
    cube = cube[seeds_played][:, played[seeds_played].all(axis=0)]
    present = ~np.isnan(cube)
    names = (replicates, *LEVELS[1:])[3 - raw.ndim :] if raw.ndim > 1 else ()
    sizes = {
        "n": int(present.sum()),
        "confidence": confidence,
        "parts": dict(zip(names, cube.shape[3 - len(names) :], strict=True)),
    }
    if not present.any():
        return Estimate(value=None, method="mean (nothing measured)", **sizes)
    binary = bool(np.isin(cube[present], (-1.0, 0.0, 1.0)).all())
    counts = {DISCORDANT: int(np.sum(cube[present] != 0))} if binary else {}
    cells = np.nanmean(cube, axis=2)
    if len(cube) > 1:
        value, low, high, method = crossed_t(cells, confidence, replicates)
    elif binary:
        value, low, high, method = paired_score(cube[0], confidence)
    else:
        value, low, high, method = items_t(cells[0], confidence)
    design: Design = "crossed" if len(cube) > 1 else "normal" if binary else "welch"
    return Estimate(
        value=number(value),
        low=number(low),
        high=number(high),
        method=method,
        counts=counts,
        components=level_components(cube, (replicates, *LEVELS[1:])),
        design=design,
        **sizes,
    )


def mean_squares(cells: np.ndarray) -> tuple[float, float | None, float | None]:
    """The mean squares of seeds, items and their residual in a (replicates, items) table of
    cell means (None for items and residual where there is one item)."""
    seeds, items = cells.shape
    grand = float(cells.mean())
    by_seed, by_item = cells.mean(axis=1), cells.mean(axis=0)
    seed_square = float(items * np.sum((by_seed - grand) ** 2) / (seeds - 1))
    if items < 2:
        return seed_square, None, None
    item_square = float(seeds * np.sum((by_item - grand) ** 2) / (items - 1))
    residuals = cells - by_seed[:, None] - by_item[None, :] + grand
    return seed_square, item_square, float(np.sum(residuals**2) / ((seeds - 1) * (items - 1)))


def crossed_terms(
    squares: tuple[float, float | None, float | None], seeds: float, items: float
) -> list[tuple[float, float]]:
    """The weighted mean squares of a seeds x items table, each with its degrees of freedom,
    whose sum is seeds x items times the variance of the grand mean: (seed + item + residual
    components) from the mean squares, a negative component taken as 0 (so the sum is never
    below the residual's). One item leaves the seed means' mean square alone."""
    seed_square, item_square, residual_square = squares
    if item_square is None:
        return [(seed_square, seeds - 1)]
    terms = [
        (square, df)
        for square, df in ((seed_square, seeds - 1), (item_square, items - 1))
        if square > residual_square
    ]
    terms.append(((1 - len(terms)) * residual_square, (seeds - 1) * (items - 1)))
    return terms


def crossed_half(
    squares: tuple[float, float | None, float | None], seeds: int, items: int, confidence: float
) -> float:
    """The crossed t interval's half-width from the mean squares of a seeds x items table
    (`crossed_terms`), with Satterthwaite's degrees of freedom, never fewer than those of the
    smallest mean square with a positive weight."""
    terms = crossed_terms(squares, seeds, items)
    combined = float(sum(square for square, _ in terms))
    if combined <= 0:
        return 0.0
    satterthwaite = combined**2 / sum(square**2 / df for square, df in terms)
    freedom = max(satterthwaite, min(df for square, df in terms if square > 0))
    return float(stats.t.ppf((1 + confidence) / 2, freedom) * np.sqrt(combined / (seeds * items)))


def crossed_t(cells: np.ndarray, confidence: float, replicates: str) -> Interval:
    """The grand mean of a (replicates, items) table of cell means with its t interval. Seeds
    and items are crossed random effects: an item effect shared by every seed does not show in
    the spread of the seed means, so a t on seed means alone misses it (`crossed_half`)."""
    grand = float(cells.mean())
    half = crossed_half(mean_squares(cells), *cells.shape, confidence)
    return (
        grand,
        grand - half,
        grand + half,
        f"crossed {replicates} x items t interval (Satterthwaite)",
    )


def level_components(cube: np.ndarray, names: Sequence[str]) -> list[VarianceComponent]:
    """The variance components of the mean of a (replicates, items, episodes) cube without
    NaN cells, named by `names`: over several replicates, replicates, items and their
    interaction from the mean squares; at one, the items' (their means' variance); and, where
    items hold several episodes, the episodes' within a cell, taken out of the finest level
    above it. These are the unbiased ANOVA estimates, so one may be negative (a component
    smaller than its noise); the interval and the planner bound their sum, not each. At this
    run's sizes they give back the mean squares the interval used."""
    seeds, items, episodes = cube.shape
    replicate, item, episode = names
    cells = np.nanmean(cube, axis=2)
    within = float(np.nanmean(np.nanvar(cube, axis=2, ddof=1))) if episodes > 1 else 0.0
    if seeds > 1:
        seed_square, item_square, residual = mean_squares(cells)
        if item_square is None:
            return [
                VarianceComponent(level=replicate, variance=seed_square, over={replicate: seeds})
            ]
        finest = (replicate, item)
        parts = [
            VarianceComponent(
                level=replicate,
                variance=(seed_square - residual) / items,
                over={replicate: seeds},
            ),
            VarianceComponent(
                level=item, variance=(item_square - residual) / seeds, over={item: items}
            ),
        ]
    else:
        finest, parts = (item,), []
        residual = float(np.var(cells[0], ddof=1)) if items > 1 else 0.0
    sizes = {replicate: seeds, item: items, episode: episodes}
    crossing = " x ".join(finest)
    parts.append(
        VarianceComponent(
            level=crossing,
            variance=residual - within / episodes,
            over={name: sizes[name] for name in finest},
        )
    )
    if episodes > 1:
        parts.append(
            VarianceComponent(
                level=episode,
                variance=within,
                over=sizes if seeds > 1 else {item: items, episode: episodes},
            )
        )
    return parts


def items_t(means: np.ndarray, confidence: float) -> Interval:
    """The mean of per-item means with its t interval (none for one item)."""
    value, se = mean_and_se(means)
    method = "t interval over items"
    if len(means) < 2:
        return value, None, None, method
    half = float(stats.t.ppf((1 + confidence) / 2, len(means) - 1) * se)
    return value, value - half, value + half, method


def paired_score(differences: np.ndarray, confidence: float) -> Interval:
    """The mean of paired binary differences shaped (items, episodes) with Tango's score
    interval; where items hold several episodes, the counts are divided by the design effect
    (the item-clustered variance of the mean over that of independent pairs, at least 1)."""
    present = ~np.isnan(differences)
    total = present.sum()
    ahead, behind = np.sum(differences == 1), np.sum(differences == -1)
    value = (ahead - behind) / total
    independent = ((ahead + behind) / total - value**2) / total
    per_item = np.nansum(differences, axis=1) - present.sum(axis=1) * value
    design = max(1.0, np.sum(per_item**2) / total**2 / independent) if independent > 0 else 1.0
    low, high = tango(ahead / design, behind / design, total / design, confidence)
    method = "Tango score interval for paired binary outcomes"
    if differences.shape[1] > 1:
        method += f", counts over a design effect of {design:.2f} (episodes within items)"
    return float(value), float(low), float(high), method


def tango(
    ahead: np.ndarray | float,
    behind: np.ndarray | float,
    pairs: np.ndarray | float,
    confidence: float = CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Tango's (1998) score interval for p10 - p01 from `ahead` (1, 0) and `behind` (0, 1)
    discordant pairs among `pairs`: the differences whose score statistic, with its variance at
    the restricted maximum-likelihood p01, lies within the normal quantile. Never zero-width;
    vectorized, and the counts may be fractional."""
    ahead, behind, pairs = np.broadcast_arrays(
        *(np.asarray(count, dtype=float) for count in (ahead, behind, pairs))
    )
    quantile = stats.norm.ppf((1 + confidence) / 2)

    def score(delta: np.ndarray) -> np.ndarray:
        a = 2 * pairs
        b = -ahead - behind + (2 * pairs - ahead + behind) * delta
        c = -behind * delta * (1 - delta)
        restricted = (np.sqrt(np.maximum(b**2 - 4 * a * c, 0.0)) - b) / (2 * a)
        variance = pairs * (2 * restricted + delta * (1 - delta))
        return (ahead - behind - pairs * delta) / np.sqrt(np.maximum(variance, 1e-300))

    def solve(target: float) -> np.ndarray:
        below, above = np.full(ahead.shape, -1.0), np.full(ahead.shape, 1.0)
        for _ in range(TANGO_STEPS):
            middle = (below + above) / 2
            higher = score(middle) > target
            below, above = np.where(higher, middle, below), np.where(higher, above, middle)
        return (below + above) / 2

    return solve(quantile), solve(-quantile)


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
    """Spearman's rho of paired x and y with a Fisher-z interval whose standard error is
    Bonett and Wright's, sqrt((1 + rho²/2) / (n - 3)), and a two-sided permutation p-value of
    no association over `resamples` re-pairings (every one of them where there are fewer
    pairings). Ties narrow what ranks can say, so the distinct values of each side are counted.
    No rho where a side is constant or n < 3, and no interval for n < 4."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rho = _spearman(x, y)
    method = "spearman, Fisher z interval (Bonett-Wright standard error), permutation p"
    estimate = correlation(rho, x, y, 1 + rho**2 / 2, method, confidence)
    if estimate.low is None:
        return estimate
    p_value = rank_permutation_p(x, y, resamples, seed)
    return estimate.model_copy(update={"p_value": number(p_value)})


def fisher_z(r: float, se: float, confidence: float) -> tuple[float, float]:
    """A correlation's interval: symmetric on atanh(r) with standard error `se`, mapped back."""
    with np.errstate(divide="ignore"):
        center = np.arctanh(r)
    half = stats.norm.ppf((1 + confidence) / 2) * se
    return number(np.tanh(center - half)), number(np.tanh(center + half))


def pearson(x: Sequence[float], y: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Pearson's r of paired x and y with its Fisher-z interval (standard error
    1 / sqrt(n - 3)); no r where a side is constant or n < 3, and no interval for n < 4."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    constant = len(x) < 3 or np.std(x) == 0 or np.std(y) == 0
    r = float("nan") if constant else float(np.corrcoef(x, y)[0, 1])
    return correlation(r, x, y, 1.0, "pearson, Fisher z interval", confidence)


def correlation(
    r: float, x: np.ndarray, y: np.ndarray, variance: float, method: str, confidence: float
) -> Estimate:
    """A correlation `r` of paired x and y, the distinct values of each side counted, with its
    Fisher-z interval at standard error sqrt(variance / (n - 3)) and that variance kept as its
    component; no interval where r is undefined or n < 4."""
    estimate = Estimate(
        value=number(r),
        n=len(x),
        confidence=confidence,
        method=method,
        counts={"distinct x": len(np.unique(x)), "distinct y": len(np.unique(y))},
    )
    if np.isnan(r) or len(x) < 4:
        return estimate
    low, high = fisher_z(r, np.sqrt(variance / (len(x) - 3)), confidence)
    component = VarianceComponent(level="pairs", variance=variance, over={"pairs": len(x)})
    return estimate.model_copy(
        update={"low": low, "high": high, "components": [component], "design": "fisher z"}
    )


def rank_permutation_p(x: np.ndarray, y: np.ndarray, resamples: int, seed: int) -> float:
    """The two-sided permutation p-value of Spearman's rho: x's ranks re-paired with y's."""
    ranks_y = stats.rankdata(y) - (len(y) + 1) / 2
    ranks_y /= np.linalg.norm(ranks_y)

    def rho(ranks_x: np.ndarray, axis: int = -1) -> np.ndarray:
        centered = ranks_x - (ranks_x.shape[axis] + 1) / 2
        return (centered * ranks_y).sum(axis=axis) / np.linalg.norm(centered, axis=axis)

    result = stats.permutation_test(
        (stats.rankdata(x),),
        rho,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=resamples,
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


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
            spread = VarianceComponent(level="rows", variance=n * defined.var(), over={"rows": n})
            update = {"low": number(low), "high": number(high), "components": [spread]}
            estimate = estimate.model_copy(update=update | {"design": "normal"})
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
        update |= {"low": None, "high": None, "components": []}
    estimates = bootstrap_rows(len(groups), of_clusters, resamples, seed, confidence)
    return {
        name: estimate.model_copy(update=per_row(estimate, len(clusters)) | update)
        for name, estimate in estimates.items()
    }


def per_row(estimate: Estimate, rows: int) -> dict:
    """A cluster bootstrap's variance counted per row (clusters grow with rows at a fixed
    cluster size), as the fields of its estimate."""
    shares = [c.share() for c in estimate.components]
    return {
        "components": [
            VarianceComponent(level="rows", variance=share * rows, over={"rows": rows})
            for share in shares
        ]
    }


def negated(estimate: Estimate) -> Estimate:
    """-x with its interval turned round: a drop from a gain."""
    flip = {"value": estimate.value, "low": estimate.high, "high": estimate.low}
    return estimate.model_copy(update={name: None if v is None else -v for name, v in flip.items()})
