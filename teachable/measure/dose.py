"""Choosing a dose from the calibration's curve, and the verdicts on the choice.

The chosen dose of a kind and format is the grid's point with the largest specificity among
those whose drift stays within the budget (the least drifting point when none does, which then
fails do-no-harm). The verdicts read the chosen dose trained anew on other snapshots and probed
on the check half, never the figures it was chosen on: a specific dose exists when that
specificity's interval lies above 0; the dose does no harm when its drift's interval lies
within the budget and the change of log pi(a*) at retention states stays above minus the
tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence

from teachable.measure.verdicts import combined, judge
from teachable.records.adapter_probe import AdapterProbe
from teachable.records.dose import PHASE, DosePoint, Kind
from teachable.records.verdicts import Outcome, Verdict
from teachable.vocabulary import Format


def within_budget(probe: AdapterProbe, budget: float) -> bool:
    """Whether a dose's mean drift per probe state stays within `budget`."""
    return probe.drift.value is not None and probe.drift.value <= budget


def choose(points: Sequence[DosePoint]) -> DosePoint:
    """The point with the largest specificity within the budget, else the least drifting."""
    if not points:
        raise ValueError("no dose was measured: the grid is empty")
    kept = [point for point in points if point.within_budget]
    if kept:
        return max(kept, key=lambda point: point.probe.specificity.value)
    return min(points, key=lambda point: point.probe.drift.value)


def specificity_verdict(kind: Kind, format: Format, check: AdapterProbe) -> Verdict:
    """Does the chosen dose teach its states more than it pushes their actions everywhere?"""
    return judge(
        PHASE,
        f"{kind} {format} specificity",
        f"the {kind} dose in {format} is specific: log pi(target) rises more at the trained "
        "states than the same actions rise at the check probes",
        check.specificity,
        ">",
        0.0,
    )


def harm_verdicts(
    check: AdapterProbe, retention: AdapterProbe, budget: float, tolerance: float
) -> list[Verdict]:
    """Do no harm: the chosen cell dose's drift and its change of log pi(a*) at retention."""
    return [
        judge(
            PHASE,
            "do-no-harm drift",
            "the chosen cell dose moves the policy at check probes within the drift budget",
            check.drift,
            "<=",
            budget,
        ),
        judge(
            PHASE,
            "do-no-harm retention",
            "the chosen cell dose keeps log pi(a*) at retention-level states",
            retention.expert_change,
            ">=",
            -tolerance,
        ),
    ]


def gate_outcome(specific: Sequence[Verdict], harm: Sequence[Verdict]) -> Outcome:
    """`fails` when a kind has no dose shown specific or the dose does harm; else do-no-harm's
    outcome (inconclusive goes on, loudly)."""
    if any(verdict.outcome != "holds" for verdict in specific):
        return "fails"
    return combined(harm)
