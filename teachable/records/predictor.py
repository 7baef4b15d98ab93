"""The predictor's record: Phase 4's `training_result.json` (the folds and their fits, every
out-of-fold metric with its interval, the rankings and the verdicts) and the names its reports
read (the regression heads, the rankers, the ranking metrics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from teachable.records.estimate import Estimate
from teachable.records.store import read_json, write_json
from teachable.records.verdicts import Verdict

REGRESSION_TARGETS = ("U", "L_local", "ELP_net")


RANKING_METRICS = ("ndcg", "precision")


RANKERS = ("predictor", "entropy", "random")


GAIN = "predictor_minus_entropy"  # the predictor's figure minus the entropy ranking's


def ndcg_criterion(k: str) -> str:
    """The name of the verdict on the predictor's NDCG@k over the entropy ranking's."""
    return f"ndcg@{k}_{GAIN}"


class Ranking(BaseModel):
    """Precision@K and NDCG@K of the predictor, the entropy ranking and random, and the
    predictor's gain over entropy, each with its interval over the tasks of the ranked
    snapshots: `by_k[K][metric][ranker or GAIN]`."""

    definition: str
    n: int
    n_relevant: int
    by_k: dict[str, dict[str, dict[str, Estimate]]]


class Fit(BaseModel):
    """One model's training: the kept epoch, its validation loss (None when no validation
    tasks picked it) and the loss per epoch."""

    best_epoch: int
    best_validation_loss: float | None
    history: list[dict[str, Any]]


class Fold(BaseModel):
    """One fold of the grouped K-fold: the tasks `(env_id, seed)` its model trained on, picked
    its epoch on and predicted (held out: in neither of the other two), its held-out snapshots
    and its fit."""

    train: list[tuple[str, int]]
    validation: list[tuple[str, int]]
    test: list[tuple[str, int]]
    snapshots: int
    fit: Fit


class PredictorResult(BaseModel):
    """Phase 4's `training_result.json`: the `phase4` parameters, what the predictor reads, the
    labeled counts, each fold's tasks and fit, the tasks and fit of the saved predictor (all
    labeled tasks), every out-of-fold metric with its interval and n, the rankings, and the
    verdicts on the plan's targets."""

    parameters: dict[str, Any]
    embedder: dict[str, Any]
    features: list[str]
    counts: dict[str, int]
    folds: list[Fold]
    tasks: list[tuple[str, int]]
    final: Fit
    metrics: dict[str, Estimate]
    ranking: Ranking
    verdicts: list[Verdict]

    @classmethod
    def load(cls, path: Path) -> PredictorResult:
        return cls.model_validate(read_json(path))

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))
