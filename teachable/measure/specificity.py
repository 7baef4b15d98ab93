"""Drift and specificity of an adapter from per-state changes of its policy over the actions.

At each probe state (with its expert action a*): KL(warmed || trained) and the change of
log pi(a*); at each trained state: the change of log pi(its target); and, at each probe state,
the change of log pi of every trained state's target. Specificity is the mean change at the
trained states minus the mean change of the same target actions at the probe states, which is
what a push of the labels' action mix alone gives everywhere, so such a push scores 0.

Intervals: t intervals over states. Specificity crosses the two sets (probe states x trained
targets), so its standard error adds the trained states' part (the spread of each trained
state's change minus its target's mean change at the probes) and the probe states' part (the
spread of each probe state's change of the trained mix), with Welch-Satterthwaite degrees of
freedom; a set of one state is taken as fixed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from teachable.measure.intervals import number
from teachable.records.adapter_probe import AdapterProbe
from teachable.records.estimate import CONFIDENCE, Estimate, VarianceComponent


@dataclass(frozen=True)
class PolicyChanges:
    """Per-state changes of a trained policy from the warmed one: `drift` and `expert_change`
    per probe state, `target_change` per trained state, and `probe_target_change[i, j]`, the
    change at probe state i of log pi of trained state j's target."""

    drift: np.ndarray
    expert_change: np.ndarray
    target_change: np.ndarray
    probe_target_change: np.ndarray

    @classmethod
    def of(
        cls,
        warmed_probes: np.ndarray,
        trained_probes: np.ndarray,
        experts: np.ndarray,
        warmed_states: np.ndarray,
        trained_states: np.ndarray,
        targets: np.ndarray,
    ) -> PolicyChanges:
        """From log-policies (states, actions) of both students at the probe states and at the
        trained states, and the action indices of the experts and the targets."""
        change = trained_probes - warmed_probes
        drift = (np.exp(warmed_probes) * -change).sum(axis=1)
        at_targets = (trained_states - warmed_states)[np.arange(len(targets)), targets]
        expert_change = change[np.arange(len(experts)), experts]
        return cls(drift, expert_change, at_targets, change[:, targets])

    def lists(self) -> dict[str, list]:
        """The changes as plain lists, a JSON line of the calibration log."""
        return {name: getattr(self, name).tolist() for name in self.__dataclass_fields__}

    @classmethod
    def from_lists(cls, lists: Mapping[str, list]) -> PolicyChanges:
        """The changes `lists` wrote."""
        return cls(
            **{name: np.array(lists[name], dtype=float) for name in cls.__dataclass_fields__}
        )


def welch_t(
    value: float, parts: Mapping[str, np.ndarray], n: int, confidence: float = CONFIDENCE
) -> Estimate:
    """`value` (a sum or difference of the means of independent named `parts`) with a t
    interval: the squared standard errors of the parts add, the degrees of freedom are
    Welch-Satterthwaite's, and a part of one value adds nothing (it is fixed)."""
    samples = parts.values()
    terms = [(part.var(ddof=1) / len(part), len(part) - 1) for part in samples if len(part) > 1]
    sizes = " + ".join(f"{len(part)} {name}" for name, part in parts.items())
    method = f"Welch t interval over {sizes}"
    if not terms:
        return Estimate(value=number(value), n=n, confidence=confidence, method=method)
    variance = sum(term for term, _ in terms)
    half = 0.0
    if variance > 0:
        freedom = variance**2 / sum(term**2 / df for term, df in terms)
        half = float(stats.t.ppf((1 + confidence) / 2, freedom) * np.sqrt(variance))
    components = [
        VarianceComponent(level=name, variance=float(part.var(ddof=1)), over={name: len(part)})
        for name, part in parts.items()
        if len(part) > 1
    ]
    return Estimate(
        value=number(value),
        low=number(value - half),
        high=number(value + half),
        n=n,
        confidence=confidence,
        method=method,
        components=components,
        design="welch",
    )


def drift_and_specificity(
    trainings: Sequence[PolicyChanges], confidence: float = CONFIDENCE
) -> AdapterProbe:
    """The mean of each per-state change and specificity, each with its t interval and n,
    pooled over `trainings` probed at the same probe states: a probe state's figures are
    averaged over the trainings, and every trained state of every training counts once."""
    if not trainings or any(not t.probe_target_change.size for t in trainings):
        raise ValueError("drift and specificity need at least one probe and one trained state")
    drift = np.mean([t.drift for t in trainings], axis=0)
    expert = np.mean([t.expert_change for t in trainings], axis=0)
    targets = np.concatenate([t.target_change for t in trainings])
    trained_part = np.concatenate(
        [t.target_change - t.probe_target_change.mean(axis=0) for t in trainings]
    )
    probe_part = np.mean([t.probe_target_change.mean(axis=1) for t in trainings], axis=0)
    n_probes, n_trained = len(drift), len(targets)
    probes = "probe states"
    return AdapterProbe(
        drift=welch_t(drift.mean(), {probes: drift}, n_probes, confidence),
        expert_change=welch_t(expert.mean(), {probes: expert}, n_probes, confidence),
        target_change=welch_t(targets.mean(), {"trained states": targets}, n_trained, confidence),
        specificity=welch_t(
            trained_part.mean(),
            {"trained states": trained_part, probes: probe_part},
            n_probes + n_trained,
            confidence,
        ),
        n_probes=n_probes,
        n_trained=n_trained,
    )
