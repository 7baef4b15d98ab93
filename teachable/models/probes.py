"""Drift and specificity of a trained adapter, from one batched scoring pass of each student.

The warmed student and the trained one (an adapter on its weights) score the probe states
(each with its expert action a*) and the trained states (each with its training target) in one
`action_logprobs` call each, no rollouts; `measure.specificity` turns the two policies into the
per-state changes and the figures with their intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy.special import log_softmax

from teachable.measure.specificity import PolicyChanges, drift_and_specificity
from teachable.models.lora import SFTExample
from teachable.models.student import Prompt, Student
from teachable.records.adapter_probe import AdapterProbe
from teachable.vocabulary import ACTIONS


def _log_policies(student: Student, prompts: Sequence[Prompt]) -> dict[Prompt, np.ndarray]:
    """log pi over the actions at each distinct prompt, scored in one batched call."""
    distinct = list(dict.fromkeys(prompts))
    return dict(zip(distinct, log_softmax(student.action_logprobs(distinct), axis=1), strict=True))


def unpatched(examples: Sequence[SFTExample]) -> list[SFTExample]:
    """The trained states as the student acts there: each example's prompt without the
    supervision text it was trained with, and its target."""
    return [replace(example, prompt=replace(example.prompt, patch=None)) for example in examples]


def policy_changes(
    warmed: Student,
    trained: Student,
    probes: Sequence[SFTExample],
    examples: Sequence[SFTExample],
) -> PolicyChanges:
    """Per-state changes from `warmed` to `trained` at the probe states (`target` is the
    expert action a*) and at the trained states, unpatched (`target` is the training target)."""
    examples = unpatched(examples)
    prompts = [example.prompt for example in [*probes, *examples]]
    before, after = _log_policies(warmed, prompts), _log_policies(trained, prompts)

    def stacked(policies: dict[Prompt, np.ndarray], states: Sequence[SFTExample]) -> np.ndarray:
        return np.array([policies[state.prompt] for state in states]).reshape(-1, len(ACTIONS))

    def actions(states: Sequence[SFTExample]) -> np.ndarray:
        return np.array([ACTIONS.index(state.target) for state in states], dtype=int)

    return PolicyChanges.of(
        stacked(before, probes),
        stacked(after, probes),
        actions(probes),
        stacked(before, examples),
        stacked(after, examples),
        actions(examples),
    )


def probe_adapter(
    warmed: Student,
    trained: Student,
    probes: Sequence[SFTExample],
    examples: Sequence[SFTExample],
) -> AdapterProbe:
    """Drift at the probe states and specificity of the change at the trained states, each
    with its interval and n (`measure.specificity`)."""
    return drift_and_specificity([[policy_changes(warmed, trained, probes, examples)]])
