"""Selection methods: which pool snapshots a fixed budget buys the teacher's supervision for.

Each method is a `Selector` registered under its name (`SELECTION_METHODS` of the vocabulary):
it scores the pool (or draws from it) and declares whether it buys labels first. A method that
buys labels (`LabelBuyer`) plans the rollouts of each candidate, turns their outcomes into its
label and score, and says how many teacher answers a label costs; its labels are measured on
the streams Phase 1 uses, so they equal what Phase 1 would measure. A ranking method picks the
K best scores, ties broken by snapshot id.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from teachable.measure.intervals import number
from teachable.measure.labels import cpt_from_outcomes, rate
from teachable.models.conditions import (
    RolloutCondition,
    outcomes,
    rollout_plan,
    run_conditions,
    teacher_request,
)
from teachable.models.labeling import labeling_parameters, snapshot_uncertainty
from teachable.models.predictor import Predictor
from teachable.models.student import Student
from teachable.models.teachers import Teacher
from teachable.models.training_runs import MatrixRun
from teachable.parameters import Phase1Parameters, StudentParameters
from teachable.records.selection import CandidateLabel, PickedLabels
from teachable.records.snapshot import Snapshot
from teachable.vocabulary import SelectionMethod, UMethod

Scores = Mapping[str, float]  # a score per snapshot id


Seed = int | tuple[int, ...]  # the seed of a method that draws


@dataclass(frozen=True)
class Pool:
    """The unlabeled snapshots the methods pick from, and what a method may rank them by: the
    U method that reads their recorded distributions and the Phase 4 predictor's file."""

    snapshots: Sequence[Snapshot]
    U_method: UMethod
    predictor: Path


class Selector(ABC):
    """A selection method: scores the pool and picks the K best, ties broken by id."""

    name: ClassVar[SelectionMethod]
    buys_labels: ClassVar[bool] = False

    @abstractmethod
    def scores(self, pool: Pool, labels: Mapping[str, CandidateLabel]) -> Scores | None:
        """A score per snapshot (None for a method that ranks nothing); `labels` are the
        labels the method bought, by id."""

    def pick(
        self, ordered: Sequence[Snapshot], k: int, scores: Scores | None, seed: Seed
    ) -> list[Snapshot]:
        """The `k` of the id-ordered rows with the highest scores, best first."""
        if scores is None:
            raise ValueError(f"the {self.name} method needs its scores")
        missing = [row.id for row in ordered if row.id not in scores]
        if missing:
            raise ValueError(f"the {self.name} method has no score for snapshot(s) {missing[:3]}")
        return sorted(ordered, key=lambda row: -scores[row.id])[:k]


SELECTORS: dict[str, Selector] = {}


def register(kind: type[Selector]) -> type[Selector]:
    """Make the selection method `kind` known by its name to Phase 5."""
    SELECTORS[kind.name] = kind()
    return kind


def selector(name: str) -> Selector:
    """The registered selection method called `name`."""
    if name not in SELECTORS:
        raise ValueError(f"unknown selection method {name!r}; known: {', '.join(SELECTORS)}")
    return SELECTORS[name]


def select(
    method: str,
    rows: Sequence[Snapshot],
    k: int,
    scores: Scores | None = None,
    seed: Seed = 0,
) -> list[Snapshot]:
    """The `k` rows a method picks from `rows` (taken in id order), with its `scores` (a score
    per row id) or its `seed`."""
    if not 1 <= k <= len(rows):
        raise ValueError(f"cannot select {k} of {len(rows)} snapshots")
    ordered = sorted(rows, key=lambda row: row.id)
    return selector(method).pick(ordered, k, scores, seed)


@register
class RandomDraw(Selector):
    """`random`: a seeded uniform draw without replacement, anew for every seed."""

    name = "random"

    def scores(self, pool: Pool, labels: Mapping[str, CandidateLabel]) -> None:
        return None

    def pick(
        self, ordered: Sequence[Snapshot], k: int, scores: Scores | None, seed: Seed
    ) -> list[Snapshot]:
        drawn = np.random.default_rng(seed).choice(len(ordered), k, replace=False)
        return [ordered[index] for index in drawn]


@register
class Uncertainty(Selector):
    """`entropy`: the highest U, read from the student's distribution recorded at the snapshot;
    no rollout."""

    name = "entropy"

    def scores(self, pool: Pool, labels: Mapping[str, CandidateLabel]) -> Scores:
        return {row.id: snapshot_uncertainty(row, pool.U_method) for row in pool.snapshots}


@register
class PredictedLeverage(Selector):
    """`predictor`: the highest ELP_net the Phase 4 predictor predicts from cheap observables;
    no rollout."""

    name = "predictor"

    def scores(self, pool: Pool, labels: Mapping[str, CandidateLabel]) -> Scores:
        predictions = Predictor.load(pool.predictor).predict(pool.snapshots)
        return dict(zip(predictions["id"], predictions["ELP_net"].astype(float), strict=True))


class LabelBuyer(Selector):
    """A method that measures a label for each of its candidates and ranks by it; a label
    costs its rollouts and `teacher_answers` teacher answers."""

    buys_labels = True
    teacher_answers: ClassVar[int]

    @abstractmethod
    def plans(
        self, group: Sequence[Snapshot], phase1: Phase1Parameters, teacher: Teacher
    ) -> list[list[RolloutCondition]]:
        """Each candidate's rollout conditions."""

    @abstractmethod
    def label(
        self, snapshot: Snapshot, by_condition: dict[str, np.ndarray], **fields: object
    ) -> CandidateLabel:
        """The candidate's label from its outcomes per condition, with `fields` (its key and
        cost) in it."""

    def scores(self, pool: Pool, labels: Mapping[str, CandidateLabel]) -> Scores:
        return {snapshot_id: label.score for snapshot_id, label in labels.items()}

    def labels(
        self,
        plans: Sequence[Sequence[RolloutCondition]],
        results: dict[tuple[str, str], np.ndarray],
        seconds: float,
        key: str,
    ) -> list[CandidateLabel]:
        """One group's labels from its outcomes, each with its share of the group's cost."""
        labels = []
        for plan in plans:
            snapshot = plan[0].snapshot
            by_condition = {c.name: results[(snapshot.id, c.name)] for c in plan}
            cost = {
                "rollouts": sum(c.n for c in plan),
                "teacher_answers": self.teacher_answers,
                "seconds": round(seconds / len(plans), 3),
            }
            labels.append(self.label(snapshot, by_condition, key=key, **cost))
        return labels


def learnability(p_student: float) -> float:
    """p(1 - p): largest for states the student solves half of the time."""
    return p_student * (1.0 - p_student)


@register
class Oracle(LabelBuyer):
    """`oracle`: the highest measured ELP_net (an upper bound); buys the CPT (the teacher's
    answer and Phase 1's CPT rollouts) for its candidates."""

    name = "oracle"
    teacher_answers = 1

    def plans(
        self, group: Sequence[Snapshot], phase1: Phase1Parameters, teacher: Teacher
    ) -> list[list[RolloutCondition]]:
        answers = teacher.advise([teacher_request(snapshot) for snapshot in group])
        pairs = zip(group, answers, strict=True)
        return [rollout_plan(snapshot, answer, phase1, False, True) for snapshot, answer in pairs]

    def label(
        self, snapshot: Snapshot, by_condition: dict[str, np.ndarray], **fields: object
    ) -> CandidateLabel:
        cpt = cpt_from_outcomes(by_condition)
        return CandidateLabel(id=snapshot.id, score=cpt.ELP_net, cpt=cpt, **fields)


@register
class Learnability(LabelBuyer):
    """`learnability`: the highest p(1 - p), p the student's own success rate from the snapshot
    (Phase 1's `n_rollouts` base rollouts), a baseline from curriculum learning."""

    name = "learnability"
    teacher_answers = 0

    def plans(
        self, group: Sequence[Snapshot], phase1: Phase1Parameters, teacher: Teacher
    ) -> list[list[RolloutCondition]]:
        return [[RolloutCondition(snapshot, "base", phase1.n_rollouts)] for snapshot in group]

    def label(
        self, snapshot: Snapshot, by_condition: dict[str, np.ndarray], **fields: object
    ) -> CandidateLabel:
        p = rate(by_condition["base"])
        return CandidateLabel(id=snapshot.id, score=learnability(p), p_student=p, **fields)


def label_buyer(name: str) -> LabelBuyer:
    """The registered method called `name`, which must buy labels."""
    method = selector(name)
    if not isinstance(method, LabelBuyer):
        buyers = [n for n, s in SELECTORS.items() if s.buys_labels]
        raise ValueError(f"{name!r} buys no label; the methods that do: {', '.join(buyers)}")
    return method


def labeling_key(
    phase1: Phase1Parameters, seed: int, student: StudentParameters, teacher: Teacher
) -> str:
    """Everything that shapes a bought label, hashed: a logged label with another key is
    bought again."""
    made_with = labeling_parameters(phase1, seed, student, teacher.params)
    return hashlib.sha256(json.dumps(made_with, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CandidateRollouts:
    """A unit of Phase 5's label buying: the rollouts of one group of candidates."""

    conditions: tuple[RolloutCondition, ...]
    phase1: Phase1Parameters
    seed: int


def candidate_outcomes(
    student: Student, unit: CandidateRollouts
) -> tuple[dict[tuple[str, str], np.ndarray], float]:
    """The work of a label-buying unit: each (snapshot, condition)'s outcomes, from one batched
    rollout run, and the seconds it took."""
    started = time.perf_counter()
    episodes = run_conditions(student, unit.conditions, unit.phase1, unit.seed)
    results = {name: outcomes(runs) for name, runs in episodes.items()}
    return results, time.perf_counter() - started


def mean_of(values: Sequence[float]) -> float | None:
    return number(np.mean(values)) if len(values) else None


def picked_labels(
    runs: Sequence[MatrixRun],
    labels: Mapping[SelectionMethod, Mapping[str, CandidateLabel]],
    oracle_ids: set[str] | None,
) -> PickedLabels:
    """What a method's runs picked, averaged over the runs; the bought labels where known."""
    rows = [row for run in runs for row in run.rows]
    oracle = labels.get("oracle", {})
    learn = labels.get("learnability", {})
    return PickedLabels(
        mean_U=mean_of([row.U for row in rows]),
        mean_ELP_net=mean_of([oracle[row.id].score for row in rows if row.id in oracle]),
        mean_learnability=mean_of([learn[row.id].score for row in rows if row.id in learn]),
        n_measured=sum(row.id in oracle or row.id in learn for row in rows),
        oracle_overlap=None
        if oracle_ids is None
        else number(np.mean([row.id in oracle_ids for row in rows])),
    )
