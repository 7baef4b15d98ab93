"""Three-way verdicts: a criterion `holds` when its interval lies wholly on the right side of
its threshold, `fails` when wholly on the wrong side, and is `inconclusive` otherwise, when the
figure could not be measured, or when its interval carries no information (zero width, or too
few discordant pairs): absence of information is not a result."""

from __future__ import annotations

from collections.abc import Sequence

from teachable.measure.intervals import DISCORDANT
from teachable.records.estimate import Estimate
from teachable.records.verdicts import Outcome, Side, Verdict

# the fewest discordant pairs with which an exact two-sided McNemar test can reach 95%:
# 2 x 0.5^6 = 0.031, while 2 x 0.5^5 = 0.0625
MIN_DISCORDANT = 6


def uninformative(estimate: Estimate) -> str:
    """Why a measured interval cannot be read as a result, or "" when it can: a zero-width
    interval saw no variation, and one resting on fewer than `MIN_DISCORDANT` discordant pairs
    has too little to say either way."""
    if not estimate.known:
        return ""
    if estimate.low == estimate.high:
        return "zero-width interval: no variation seen, which is absence of information"
    discordant = estimate.counts.get(DISCORDANT)
    if discordant is not None and discordant < MIN_DISCORDANT:
        return f"rests on {discordant} discordant pairs, fewer than {MIN_DISCORDANT}"
    return ""


def outcome(estimate: Estimate, side: Side, threshold: float) -> Outcome:
    """Where the interval of `estimate` lies against `side threshold`; inconclusive where it
    is unknown or uninformative."""
    if not estimate.known or uninformative(estimate):
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
    """The verdict on `claim`, read from the interval of `estimate`; the note says why where
    the interval is missing or uninformative."""
    if not estimate.known and not note:
        note = "not measured" if estimate.value is None else "no interval"
    note = "; ".join(part for part in (note, uninformative(estimate)) if part)
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
