"""The CPT gate's statistics on a micro-training panel: Spearman's rho of ELP_net with the
utility (`delta_vs_control`, the true micro-training's success after minus its wrong-target
control's), within each quadrant too, Q1's mean utility against Q2's, each judged three-way on
its interval; and, unjudged, the same figures on the raw delta and the comparators (rho of every
other cheap label with the utility). Rho has a Fisher-z interval and a permutation p-value, Q1
against Q2 a Welch t interval (the percentile bootstrap of two groups of 3 covered 0.77-0.86),
and each mean a t interval over its snapshots. Beside rho, its ceiling from the reliabilities of
ELP_net and of the utility, and rho disattenuated by it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from teachable.measure.intervals import hierarchical_mean, spearman
from teachable.measure.reliability import ceiling, disattenuated, split_half
from teachable.measure.specificity import welch_t
from teachable.measure.verdicts import combined, judge
from teachable.records.cpt_validation import (
    COMPARATORS,
    PHASE,
    RAW,
    SPEARMAN_TARGET,
    UTILITY,
    CPTGate,
    QuadrantPanel,
)
from teachable.records.estimate import Estimate
from teachable.vocabulary import QUADRANTS, Quadrant


def _within(frame: pd.DataFrame, quadrant: Quadrant, column: str) -> np.ndarray:
    return frame.loc[frame["quadrant"] == quadrant, column].to_numpy(float)


def q1_minus_q2(frame: pd.DataFrame, column: str) -> Estimate:
    """Q1's mean of `column` minus Q2's, with its Welch t interval (the two quadrants' snapshots
    are independent groups)."""
    q1, q2 = (_within(frame, q, column) for q in ("Q1_highU_highL", "Q2_highU_lowL"))
    value = q1.mean() - q2.mean() if len(q1) and len(q2) else float("nan")
    return welch_t(value, {"Q1 snapshots": q1, "Q2 snapshots": q2}, len(q1) + len(q2))


def comparator_rho(frame: pd.DataFrame, label: str, seed: int, resamples: int) -> Estimate:
    """Spearman's rho of `label` and the gate's utility over the panel rows that carry the
    label."""
    pairs = frame[[label, UTILITY]].astype(float).dropna()
    return spearman(pairs[label], pairs[UTILITY], resamples, seed)


def mean_change(frame: pd.DataFrame, column: str) -> Estimate | None:
    """The mean of `column` over the rows that carry it, with its interval; None when the
    panel lacks the column."""
    if column not in frame:
        return None
    return hierarchical_mean(frame[column].dropna().to_numpy(float))


def utility_reliability(frame: pd.DataFrame) -> Estimate | None:
    """The utility's split-half reliability over the panel rows that kept their halves."""
    halves = frame[["first_half", "second_half"]].dropna() if "first_half" in frame else None
    return None if halves is None or halves.empty else split_half(*halves.to_numpy(float).T)


def gate(
    frame: pd.DataFrame,
    seed: int,
    resamples: int = 1000,
    elp_reliability: Estimate | None = None,
) -> CPTGate:
    """The gate on a panel (columns quadrant, ELP_net, delta_vs_control, delta): Spearman's rho
    of ELP_net and the utility delta_vs_control must reach 0.3, and the mean utility of Q1 must
    exceed Q2's; each criterion is judged on its interval. The raw delta gets the same figures,
    reported beside them. Each comparator column the panel holds (L_local, U, delta_logp) gets
    its rho with the utility, and delta_logp and control_delta_logp their means, each with its
    interval; none is judged. With `elp_reliability` (Phase 1's test-retest r of ELP_net) and
    the halves of the utility, rho's ceiling and rho disattenuated, never judged."""
    elp = frame["ELP_net"].to_numpy(float)
    rho = spearman(elp, frame[UTILITY].to_numpy(float), resamples, seed)
    per_quadrant = {
        quadrant: QuadrantPanel(
            spearman=spearman(
                _within(frame, quadrant, "ELP_net"),
                _within(frame, quadrant, UTILITY),
                resamples,
                seed,
            ),
            mean_delta_vs_control=hierarchical_mean(_within(frame, quadrant, UTILITY)),
            mean_delta=hierarchical_mean(_within(frame, quadrant, RAW)),
        )
        for quadrant in QUADRANTS
    }
    gain = q1_minus_q2(frame, UTILITY)
    rho_claim = f"Spearman rho(ELP_net, {UTILITY}) >= {SPEARMAN_TARGET}"
    verdicts = [
        judge(PHASE, "rho", rho_claim, rho, ">=", SPEARMAN_TARGET),
        judge(PHASE, "q1_minus_q2", f"mean {UTILITY} of Q1 - Q2 > 0", gain, ">", 0.0),
    ]
    comparators = {
        label: comparator_rho(frame, label, seed, resamples)
        for label in COMPARATORS
        if label in frame
    }
    reliability = {"ELP_net": elp_reliability, UTILITY: utility_reliability(frame)}
    bound = ceiling(list(reliability.values()))
    return CPTGate(
        n=len(frame),
        spearman=rho,
        per_quadrant=per_quadrant,
        q1_minus_q2=gain,
        verdicts=verdicts,
        outcome=combined(verdicts),
        raw_spearman=spearman(elp, frame[RAW].to_numpy(float), resamples, seed),
        raw_q1_minus_q2=q1_minus_q2(frame, RAW),
        comparators=comparators,
        mean_delta_logp=mean_change(frame, "delta_logp"),
        mean_control_delta_logp=mean_change(frame, "control_delta_logp"),
        reliability=reliability,
        ceiling=bound,
        disattenuated=disattenuated(rho, bound),
    )
