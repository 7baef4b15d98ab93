"""Label estimators: leverage and the contextual patch test (CPT) from the outcomes of paired
rollouts. Each label is a mean of paired differences (rollout i of a condition against rollout
i of its baseline, on the same stream), stored with its standard error. ELP_net is cross-fitted:
the format each stream is credited with is chosen on the other half of the streams, so picking
the best of three formats does not bias it upward."""

from __future__ import annotations

import numpy as np

from teachable.measure.intervals import mean_and_se
from teachable.records.labeled import CPT, Leverage
from teachable.vocabulary import FORMATS, Format

CPT_CONDITIONS = ("base", "placebo", *FORMATS)


def paired_difference(treated: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of `treated[i] - baseline[i]` over the streams both have."""
    n = min(len(treated), len(baseline))
    mean, se = mean_and_se(treated[:n] - baseline[:n])
    return round(mean, 6), round(se, 6)


def rate(successes: np.ndarray) -> float:
    """The success rate of the outcomes, rounded as the labels store it."""
    return round(float(successes.mean()), 6)


def leverage_from_outcomes(
    base: np.ndarray, forced: np.ndarray, l_upper: float | None = None
) -> Leverage:
    """`L_local` as the mean of paired differences forced_i - base_i over the forced rollouts,
    with its standard error; `p_student` is the base rate over the same streams."""
    n = len(forced)
    l_local, se = paired_difference(forced, base)
    return Leverage(
        L_local=l_local,
        se=se,
        p_student=rate(base[:n]),
        p_forced=rate(forced),
        n=n,
        L_upper=l_upper,
    )


def best_format(net: dict[Format, np.ndarray]) -> Format:
    """The format with the highest mean paired difference over the placebo (the first of demo,
    hint, contrast on a tie)."""
    return max(FORMATS, key=lambda f: float(net[f].mean()))


def cross_fitted_net(net: dict[Format, np.ndarray]) -> tuple[float, float]:
    """ELP_net routed on independent streams: each stream of the first half is credited with
    the format best on the second half, and the reverse; the mean of those paired differences
    and its standard error. Under a null where no format beats the placebo it is unbiased,
    where the best format's own mean is not."""
    n = len(next(iter(net.values())))
    half = n // 2
    first, second = slice(0, half), slice(half, n)
    routed_first = best_format({f: values[second] for f, values in net.items()})
    routed_second = best_format({f: values[first] for f, values in net.items()})
    credited = np.concatenate([net[routed_first][first], net[routed_second][second]])
    mean, se = mean_and_se(credited)
    return round(mean, 6), round(se, 6)


def cpt_from_outcomes(by_condition: dict[str, np.ndarray]) -> CPT:
    """ELP per format (paired with base), `route_net` the best format over the placebo on all
    streams (what a snapshot trains on), and ELP_net cross-fitted over the placebo (what it is
    credited with), each with its standard error. Rates are over the `n_per_condition` streams
    every condition has, at least two so that the streams split in halves."""
    missing = [c for c in CPT_CONDITIONS if c not in by_condition]
    if missing:
        raise ValueError(f"CPT outcomes lack condition(s) {missing}")
    n = len(by_condition["placebo"])
    if n < 2:
        raise ValueError(f"CPT needs at least 2 rollouts per condition to cross-fit, got {n}")
    elp = {f: paired_difference(by_condition[f], by_condition["base"]) for f in FORMATS}
    net = {f: by_condition[f][:n] - by_condition["placebo"] for f in FORMATS}
    elp_net, elp_net_se = cross_fitted_net(net)
    return CPT(
        p={c: rate(by_condition[c][:n]) for c in CPT_CONDITIONS},
        ELP={f: mean for f, (mean, _) in elp.items()},
        ELP_se={f: se for f, (_, se) in elp.items()},
        ELP_net=elp_net,
        ELP_net_se=elp_net_se,
        route_net=best_format(net),
        n_per_condition=n,
    )
