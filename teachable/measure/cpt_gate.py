"""The CPT gate's statistics on a micro-training panel: Spearman's rho of ELP_net with the real
change in success (delta), within each quadrant too, Q1's mean delta against Q2's, each judged
three-way on its interval, and the unjudged comparators (rho of every other cheap label)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from teachable.measure.intervals import difference_of_means, hierarchical_bootstrap, spearman
from teachable.measure.verdicts import combined, judge
from teachable.records.cpt_validation import (
    COMPARATORS,
    PHASE,
    SPEARMAN_TARGET,
    CPTGate,
    QuadrantPanel,
)
from teachable.records.estimate import Estimate
from teachable.vocabulary import QUADRANTS, Quadrant


def _deltas(frame: pd.DataFrame, quadrant: Quadrant) -> np.ndarray:
    return frame.loc[frame["quadrant"] == quadrant, "delta"].to_numpy(float)


def comparator_rho(frame: pd.DataFrame, label: str, seed: int, resamples: int) -> Estimate:
    """Spearman's rho of `label` and delta over the panel rows that carry the label."""
    pairs = frame[[label, "delta"]].astype(float).dropna()
    return spearman(pairs[label], pairs["delta"], resamples, seed)


def gate(frame: pd.DataFrame, seed: int, resamples: int = 1000) -> CPTGate:
    """The gate on a panel (columns quadrant, ELP_net, delta): Spearman's rho of ELP_net and
    delta must reach 0.3, and the mean delta of Q1 must exceed Q2's; each criterion is judged
    on its interval. Each comparator column the panel holds (L_local, U, delta_logp) gets its
    rho with delta, and delta_logp its mean, each with its interval; none is judged."""
    x, y = frame["ELP_net"].to_numpy(float), frame["delta"].to_numpy(float)
    rho = spearman(x, y, resamples, seed)
    per_quadrant = {
        quadrant: QuadrantPanel(
            spearman=spearman(
                frame.loc[frame["quadrant"] == quadrant, "ELP_net"].to_numpy(float),
                _deltas(frame, quadrant),
                resamples,
                seed,
            ),
            mean_delta=hierarchical_bootstrap(_deltas(frame, quadrant), resamples, seed),
        )
        for quadrant in QUADRANTS
    }
    q1_minus_q2 = difference_of_means(
        _deltas(frame, "Q1_highU_highL"), _deltas(frame, "Q2_highU_lowL"), resamples, seed
    )
    rho_claim = f"Spearman rho(ELP_net, delta) >= {SPEARMAN_TARGET}"
    verdicts = [
        judge(PHASE, "rho", rho_claim, rho, ">=", SPEARMAN_TARGET),
        judge(PHASE, "q1_minus_q2", "mean delta of Q1 - Q2 > 0", q1_minus_q2, ">", 0.0),
    ]
    comparators = {
        label: comparator_rho(frame, label, seed, resamples)
        for label in COMPARATORS
        if label in frame
    }
    mean_delta_logp = None
    if "delta_logp" in frame:
        changes = frame["delta_logp"].dropna().to_numpy(float)
        mean_delta_logp = hierarchical_bootstrap(changes, resamples, seed)
    return CPTGate(
        n=len(frame),
        spearman=rho,
        per_quadrant=per_quadrant,
        q1_minus_q2=q1_minus_q2,
        verdicts=verdicts,
        outcome=combined(verdicts),
        comparators=comparators,
        mean_delta_logp=mean_delta_logp,
    )
