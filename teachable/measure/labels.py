"""Label estimators: leverage and the contextual patch test (CPT) from the outcomes of paired
rollouts. Each label is a mean of paired differences (rollout i of a condition against rollout
i of its baseline, on the same stream), stored with its standard error."""

from __future__ import annotations

import numpy as np

from teachable.measure.intervals import mean_and_se
from teachable.records.labeled import CPT, Leverage
from teachable.vocabulary import FORMATS

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


def cpt_from_outcomes(by_condition: dict[str, np.ndarray]) -> CPT:
    """ELP per format (paired with base) and the best format over the placebo (paired with
    it; the first of demo, hint, contrast on a tie), each with its standard error. Rates are
    over the `n_per_condition` streams every condition has."""
    missing = [c for c in CPT_CONDITIONS if c not in by_condition]
    if missing:
        raise ValueError(f"CPT outcomes lack condition(s) {missing}")
    n = len(by_condition["placebo"])
    elp = {f: paired_difference(by_condition[f], by_condition["base"]) for f in FORMATS}
    net = {f: paired_difference(by_condition[f], by_condition["placebo"]) for f in FORMATS}
    route = max(FORMATS, key=lambda f: net[f][0])
    return CPT(
        p={c: rate(by_condition[c][:n]) for c in CPT_CONDITIONS},
        ELP={f: mean for f, (mean, _) in elp.items()},
        ELP_se={f: se for f, (_, se) in elp.items()},
        ELP_net=net[route][0],
        ELP_net_se=net[route][1],
        route_net=route,
        n_per_condition=n,
    )
