"""Drift and specificity of an adapter from per-state changes of its policy over the actions.

At each probe state (with its expert action a*): KL(warmed || trained) and the change of
log pi(a*); at each trained state: the change of log pi(its target); and, at each probe state,
the change of log pi of every trained state's target. Specificity is the mean change at the
trained states minus the mean change of the same target actions at the probe states, which is
what a push of the labels' action mix alone gives everywhere, so such a push scores 0.

Intervals: t intervals over states at one training seed; over several seeds (the same states
trained anew at each), seeds and states are crossed random effects (`crossed_terms`), so a
seed's luck shared by all its states widens the interval instead of passing for many states.
Specificity crosses the two sets (probe states x trained targets), so its standard error adds
the trained states' part (each trained state's change minus its target's mean change at the
probes, per seed: the seeds' spread of specificity lies here) and the probe states' part (the
spread of each probe state's change of the trained mix, averaged over seeds), with
Welch-Satterthwaite degrees of freedom; a set of one state is taken as fixed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from teachable.measure.intervals import (
    crossed_t,
    crossed_terms,
    level_components,
    mean_squares,
    number,
)
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


SEEDS = "training seeds"  # the level of the seeds a dose is trained anew at


def over_seeds(part: np.ndarray) -> bool:
    """Whether a part is a (seeds, states) table of several seeds, whose levels cross."""
    return part.ndim == 2 and len(part) > 1


def part_terms(part: np.ndarray) -> list[tuple[float, float]]:
    """The squared standard error of a part's mean, split in terms with their degrees of
    freedom: a (seeds, states) table over several seeds by its crossed mean squares, else the
    states' variance over their number (nothing for a single value, which is fixed)."""
    if over_seeds(part):
        seeds, states = part.shape
        squares = crossed_terms(mean_squares(part), seeds, states)
        return [(square / (seeds * states), df) for square, df in squares]
    flat = part.reshape(-1)
    return [(float(flat.var(ddof=1)) / len(flat), len(flat) - 1)] if len(flat) > 1 else []


def part_components(name: str, part: np.ndarray) -> list[VarianceComponent]:
    """The variance components of a part's mean: the states' variance, or over several seeds
    the seeds', the states' and their crossing's."""
    if over_seeds(part):
        return level_components(part[:, :, None], (SEEDS, name, "episodes"))
    flat = part.reshape(-1)
    if len(flat) < 2:
        return []
    return [VarianceComponent(level=name, variance=float(flat.var(ddof=1)), over={name: len(flat)})]


def part_size(name: str, part: np.ndarray) -> str:
    """`4 probe states`, or `3 training seeds x 4 probe states` over several seeds."""
    if over_seeds(part):
        return f"{len(part)} {SEEDS} x {part.shape[1]} {name}"
    return f"{part.size} {name}"


def welch_t(
    value: float, parts: Mapping[str, np.ndarray], n: int, confidence: float = CONFIDENCE
) -> Estimate:
    """`value` (a sum or difference of the means of independent named `parts`) with a t
    interval: the squared standard errors of the parts add, the degrees of freedom are
    Welch-Satterthwaite's, and a part of one value adds nothing (it is fixed). A part is a
    vector of states, or a (seeds, states) table whose seeds and states are crossed."""
    terms = [term for part in parts.values() for term in part_terms(part)]
    sizes = " + ".join(part_size(name, part) for name, part in parts.items())
    method = f"Welch t interval over {sizes}"
    if not terms:
        return Estimate(value=number(value), n=n, confidence=confidence, method=method)
    variance = sum(term for term, _ in terms)
    half = 0.0
    if variance > 0:
        freedom = variance**2 / sum(term**2 / df for term, df in terms)
        half = float(stats.t.ppf((1 + confidence) / 2, freedom) * np.sqrt(variance))
    return Estimate(
        value=number(value),
        low=number(value - half),
        high=number(value + half),
        n=n,
        confidence=confidence,
        method=method,
        components=[c for name, part in parts.items() for c in part_components(name, part)],
        design="welch",
    )


def state_mean(table: np.ndarray, level: str, confidence: float = CONFIDENCE) -> Estimate:
    """The mean of a (seeds, states) table: a t interval over states at one seed, else the
    crossed seeds x states t interval (the estimator the planner mirrors)."""
    if len(table) == 1:
        return welch_t(table.mean(), {level: table[0]}, table.size, confidence)
    value, low, high, _ = crossed_t(table, confidence, SEEDS)
    seeds, states = table.shape
    return Estimate(
        value=number(value),
        low=number(low),
        high=number(high),
        n=table.size,
        confidence=confidence,
        method=f"crossed t interval over {seeds} {SEEDS} x {states} {level} (Satterthwaite)",
        parts={SEEDS: seeds, level: states},
        components=part_components(level, table),
        design="crossed",
    )


def drift_and_specificity(
    by_seed: Sequence[Sequence[PolicyChanges]], confidence: float = CONFIDENCE
) -> AdapterProbe:
    """The mean of each per-state change and specificity, each with its interval and n, pooled
    over trainings probed at the same probe states and grouped by training seed (each seed
    training the same states): within a seed a probe state's figures are averaged over its
    trainings and every trained state of every training counts once; over several seeds the
    intervals cross seeds with states."""
    trainings = [t for seed in by_seed for t in seed]
    if not trainings or any(not t.probe_target_change.size for t in trainings):
        raise ValueError("drift and specificity need at least one probe and one trained state")
    if len({sum(len(t.target_change) for t in seed) for seed in by_seed}) > 1:
        raise ValueError("every seed must train the same states")
    drift = np.array([np.mean([t.drift for t in seed], axis=0) for seed in by_seed])
    expert = np.array([np.mean([t.expert_change for t in seed], axis=0) for seed in by_seed])
    targets = np.array([np.concatenate([t.target_change for t in seed]) for seed in by_seed])
    trained_part = np.array(
        [
            np.concatenate([t.target_change - t.probe_target_change.mean(axis=0) for t in seed])
            for seed in by_seed
        ]
    )
    probe_part = np.mean([t.probe_target_change.mean(axis=1) for t in trainings], axis=0)
    probes = "probe states"
    return AdapterProbe(
        drift=state_mean(drift, probes, confidence),
        expert_change=state_mean(expert, probes, confidence),
        target_change=state_mean(targets, "trained states", confidence),
        specificity=welch_t(
            trained_part.mean(),
            {"trained states": trained_part, probes: probe_part},
            drift.shape[1] + targets.size,
            confidence,
        ),
        n_probes=drift.shape[1],
        n_trained=targets.shape[1],
    )
