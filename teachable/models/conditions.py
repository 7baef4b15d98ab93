"""Rollout conditions: the student played from a snapshot plainly, with a patch in its first
prompt, or with a forced first action, on paired random streams.

Common random numbers: rollout i's stream is seeded from (run seed, snapshot id, stream family,
i), never from the condition, so rollout i of `base`, `forced`, `placebo` and every format draws
the same uniforms and the conditions differ only by their intervention. A stream family keeps
independent measurements apart (the labels, their retest, Phase 1B's validation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from teachable.models.rollouts import Episode, EpisodeSpec, run_episodes
from teachable.models.student import Student
from teachable.models.supervision import PLACEBO, patch_text
from teachable.models.teachers import TeacherRequest
from teachable.parameters import Phase1Parameters
from teachable.records.labeled import TeacherAnswer
from teachable.records.snapshot import Snapshot
from teachable.vocabulary import FORMATS


def stable_int(text: str) -> int:
    """A 64-bit integer from `text`, the same on every machine and run (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


LABELS = "labels"  # the stream family of the labels


RETEST = "retest"  # the stream family of the reliability panel's second labeling


STREAMS = (
    "paired: rollout i of every condition of a snapshot shares the stream (run seed, snapshot, "
    "family, i); inverse-CDF sampling; base serves leverage and CPT"
)


def rollout_seed(run_seed: int, snapshot_id: str, index: int, family: str) -> tuple[int, ...]:
    """The seed of one rollout's random stream: common to rollout `index` of every condition
    at the snapshot, so conditions differ by their intervention alone; `family` keeps
    independent measurements (the labels, their retest, Phase 1B's validation) apart."""
    return (run_seed, stable_int(snapshot_id), stable_int(family), index)


@dataclass(frozen=True)
class RolloutCondition:
    """`n` rollouts from one snapshot, all started the same way: plain, with a patch in the
    first prompt, or with a forced first action."""

    snapshot: Snapshot
    name: str
    n: int
    patch: str | None = None
    forced_action: str | None = None

    def specs(self, run_seed: int, family: str) -> list[EpisodeSpec]:
        """The condition's rollouts, each on its stream of `family`."""
        return [
            EpisodeSpec(
                self.snapshot.state,
                rollout_seed(run_seed, self.snapshot.id, index, family),
                self.patch,
                self.forced_action,
            )
            for index in range(self.n)
        ]


def rollout_plan(
    snapshot: Snapshot,
    answer: TeacherAnswer | None,
    phase1: Phase1Parameters,
    leverage: bool,
    cpt: bool,
) -> list[RolloutCondition]:
    """The snapshot's conditions: `base` (the student on its own, the baseline of both leverage
    and CPT, with as many rollouts as either needs), `forced` (the expert's first action) for
    leverage, and the placebo and each format's patch for CPT."""
    if cpt and answer is None:
        raise ValueError(f"snapshot {snapshot.id}: CPT needs the teacher's answer")
    n_base = max(phase1.n_rollouts if leverage else 0, phase1.n_per_condition if cpt else 0)
    plan = [RolloutCondition(snapshot, "base", n_base)]
    if leverage:
        plan.append(
            RolloutCondition(
                snapshot, "forced", phase1.n_rollouts, forced_action=snapshot.expert_action
            )
        )
    if cpt:
        n = phase1.n_per_condition
        plan.append(RolloutCondition(snapshot, "placebo", n, patch=PLACEBO))
        plan += [RolloutCondition(snapshot, f, n, patch=patch_text(f, answer)) for f in FORMATS]
    return plan


def run_conditions(
    student: Student,
    conditions: Sequence[RolloutCondition],
    phase1: Phase1Parameters,
    seed: int,
    family: str = LABELS,
    progress: bool = False,
    share_scores: bool = True,
) -> dict[tuple[str, str], list[Episode]]:
    """The episodes of each (snapshot id, condition), every rollout in one `run_episodes`
    call (`share_scores=False`: every prompt scored on its own, the reference)."""
    specs = [spec for condition in conditions for spec in condition.specs(seed, family)]
    episodes = run_episodes(
        student,
        specs,
        phase1.max_steps,
        phase1.temperature,
        student.params.history,
        progress=progress,
        share_scores=share_scores,
    )
    by_condition, start = {}, 0
    for condition in conditions:
        by_condition[(condition.snapshot.id, condition.name)] = episodes[
            start : start + condition.n
        ]
        start += condition.n
    return by_condition


def outcomes(episodes: Sequence[Episode]) -> np.ndarray:
    """Success (1) or not (0) of each rollout, in stream order."""
    return np.array([float(episode.success) for episode in episodes])


def teacher_request(snapshot: Snapshot) -> TeacherRequest:
    """The teacher's question about a snapshot, with what the student did there."""
    return TeacherRequest(
        snapshot.state,
        snapshot.mission,
        snapshot.observation,
        tuple(snapshot.valid_actions),
        snapshot.student_action,
    )
