"""How an interval shrinks as a run grows: from an estimate's variance components and design
(`records.estimate`), the half-width it would have at other sizes, and how many times larger
every level must be for a verdict to be decided or to reach a target half-width.

The prediction mirrors the estimator: a normal quantile, Welch's or Satterthwaite's degrees of
freedom from the components at the new sizes, or a Fisher-z interval around the estimate. The
figure and its components are taken to hold at the new sizes; a component this run could not
separate (the seeds' at one seed) is absent, so more seeds are predicted to help only through
the levels below them, and the plan says so.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
from scipy import stats

from teachable.measure.intervals import crossed_half
from teachable.records.estimate import Estimate, VarianceComponent

SCALES = tuple(float(m) for m in np.round(np.geomspace(1, 1000, 73), 3))  # 1 to 1000 in 10% steps


def current_sizes(estimate: Estimate) -> dict[str, float]:
    """Every level the estimate's components are averaged over, at this run's size."""
    return {name: float(size) for c in estimate.components for name, size in c.over.items()}


def predicted_half(
    estimate: Estimate, sizes: Mapping[str, float], confidence: float
) -> float | None:
    """The half-width of the estimate's interval at `sizes` (levels missing there keep this
    run's size), at `confidence`; None without components or a value."""
    if not estimate.components or estimate.design is None or estimate.value is None:
        return None
    at = current_sizes(estimate) | dict(sizes)
    if estimate.design == "fisher z":
        return _fisher_half(estimate.value, estimate.components[0], at, confidence)
    if estimate.design == "crossed":
        return _crossed_half(estimate.components, at, confidence)
    shares = [c.share(at) for c in estimate.components]
    variance = sum(shares)
    if variance <= 0:
        return 0.0
    if estimate.design == "normal":
        return float(stats.norm.ppf((1 + confidence) / 2) * np.sqrt(variance))
    freedom = [max(np.prod([at[name] for name in c.over]) - 1, 1) for c in estimate.components]
    welch = variance**2 / sum(share**2 / df for share, df in zip(shares, freedom, strict=True))
    return float(stats.t.ppf((1 + confidence) / 2, welch) * np.sqrt(variance))


def _fisher_half(
    value: float, component: VarianceComponent, at: Mapping[str, float], confidence: float
) -> float | None:
    """Half the width of tanh(atanh(r) +- z sqrt(variance / (pairs - 3)))."""
    (level,) = component.over
    if at[level] <= 3:
        return None
    half = stats.norm.ppf((1 + confidence) / 2) * np.sqrt(component.variance / (at[level] - 3))
    center = np.arctanh(np.clip(value, -0.999999, 0.999999))
    return float((np.tanh(center + half) - np.tanh(center - half)) / 2)


def _crossed_half(
    components: list[VarianceComponent], at: Mapping[str, float], confidence: float
) -> float:
    """The crossed t half-width at new sizes from the mean squares the components imply:
    E[MS seeds] = items x seed + residual, E[MS items] = seeds x item + residual, E[MS residual]
    = seed x item + episode / episodes."""
    replicate = components[0]
    (seeds_name,) = replicate.over
    seeds = at[seeds_name]
    if len(components) == 1:  # one item: a t on seed means
        return crossed_half((replicate.variance, None, None), round(seeds), 1, confidence)
    item, crossing, *episode = components[1:]
    (items_name,) = item.over
    items = at[items_name]
    residual = crossing.variance + sum(c.variance / at[c.level] for c in episode)
    squares = (items * replicate.variance + residual, seeds * item.variance + residual, residual)
    return crossed_half(squares, seeds, items, confidence)


def gap_to_threshold(estimate: Estimate, threshold: float) -> float | None:
    """How far the estimate lies from its threshold: the half-width that would decide it if
    the estimate held; None where it sits on the threshold."""
    if estimate.value is None or estimate.value == threshold:
        return None
    return abs(estimate.value - threshold)


def needed_scale(
    estimate: Estimate,
    wanted_half: float | None,
    confidence: float,
    levels: Collection[str] | None = None,
) -> float | None:
    """The smallest factor (1 to 1000, in 10% steps) by which the `levels` (every level where
    None) must grow for the predicted half-width to fall below `wanted_half`; None where no
    factor up to 1000 does."""
    if wanted_half is None:
        return None
    base = current_sizes(estimate)
    grown = base.keys() if levels is None else levels
    for scale in SCALES:
        sizes = {k: v * scale if k in grown else v for k, v in base.items()}
        half = predicted_half(estimate, sizes, confidence)
        if half is not None and half < wanted_half:
            return scale
    return None
