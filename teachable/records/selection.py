"""Phase 5's records: a label a selection method bought for one pool snapshot (a line of
`candidate_labels.jsonl`), what the labels cost, what each method picked, and the selection
summary (`selection_summary.json`) with every method's result and the plan's verdicts."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from teachable.records.estimate import Estimate
from teachable.records.labeled import CPT
from teachable.records.store import read_json
from teachable.records.verdicts import Verdict


class CandidateLabel(BaseModel):
    """A label a method bought for one pool snapshot, the score it ranks by, and its cost:
    the rollouts, teacher answers and seconds (its share of its group's) it took."""

    model_config = ConfigDict(extra="forbid")

    id: str
    key: str
    score: float
    cpt: CPT | None = None
    p_student: float | None = None
    rollouts: int
    teacher_answers: int
    seconds: float


class LabelingCost(BaseModel):
    """What a label-buying method's labels cost: over all its candidates (`rollouts`,
    `teacher_answers`, `seconds`, whenever they were bought), and how many were bought now."""

    candidates: int
    bought_now: int
    rollouts: int
    teacher_answers: int
    seconds: float


class PickedLabels(BaseModel):
    """What a method picked, over its runs: mean U, the mean bought ELP_net and p(1 - p) over
    the picks that were candidates (`n_measured` of them), and the share of its picks the
    oracle also picked (None without the oracle)."""

    mean_U: float | None
    mean_ELP_net: float | None
    mean_learnability: float | None
    n_measured: int
    oracle_overlap: float | None


class MethodResult(BaseModel):
    """One method: its runs (one per seed), its success on the held-out tasks (Wilson over
    episodes), its gains over the base student and its retention drop (hierarchical bootstrap
    over seeds, items and episodes)."""

    runs: list[str]
    seeds: list[int]
    k: int
    success: Estimate
    gain: Estimate
    snapshot_gain: Estimate
    retention_drop: Estimate
    per_seed_gain: dict[str, float | None]
    picked: PickedLabels


class SelectionSummary(BaseModel):
    """`selection_summary.json`: K, the pool and the candidates, what the bought labels cost,
    each method's result, the paired differences between methods (`first-second`, seed by
    seed), and the verdicts."""

    budget: int
    k: int
    k_reduced: bool
    pool_size: int
    candidates: int
    labeling_cost: dict[str, LabelingCost]
    format: str
    lora: dict
    seeds: list[int]
    evaluation: dict
    methods: dict[str, MethodResult]
    differences: dict[str, Estimate]
    verdicts: list[Verdict]

    @classmethod
    def load(cls, path: Path) -> SelectionSummary:
        return cls.model_validate(read_json(path))
