"""Three-way verdicts: a criterion `holds` when its interval lies wholly on the right side of
its threshold, `fails` when wholly on the wrong side, and is `inconclusive` otherwise (or when
the figure could not be measured)."""

from __future__ import annotations

from collections.abc import Sequence

from teachable.records.estimate import Estimate
from teachable.records.verdicts import Outcome, Side, Verdict


def outcome(estimate: Estimate, side: Side, threshold: float) -> Outcome:
    """Where the interval of `estimate` lies against `side threshold`."""
    if not estimate.known:
        return "inconclusive"
    low, high = estimate.low, estimate.high
    if side == ">":
        right, wrong = low > threshold, high <= threshold
    elif side == ">=":
        right, wrong = low >= threshold, high < threshold
    elif side == "<":
        right, wrong = high < threshold, low >= threshold
    else:
        right, wrong = high <= threshold, low > threshold
    return "holds" if right else "fails" if wrong else "inconclusive"


def judge(
    phase: str,
    criterion: str,
    claim: str,
    estimate: Estimate,
    side: Side,
    threshold: float,
    note: str = "",
) -> Verdict:
    """The verdict on `claim`, read from the interval of `estimate`."""
    if not estimate.known and not note:
        note = "not measured" if estimate.value is None else "no interval"
    return Verdict(
        phase=phase,
        criterion=criterion,
        claim=claim,
        side=side,
        threshold=threshold,
        estimate=estimate,
        outcome=outcome(estimate, side, threshold),
        note=note,
    )


def combined(verdicts: Sequence[Verdict]) -> Outcome:
    """The outcome of several criteria together: `fails` when any fails, `holds` when every
    one holds, `inconclusive` otherwise (and when there is none)."""
    outcomes = {verdict.outcome for verdict in verdicts}
    if "fails" in outcomes:
        return "fails"
    return "holds" if outcomes == {"holds"} else "inconclusive"
