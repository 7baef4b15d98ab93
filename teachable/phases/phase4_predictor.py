"""Teachability predictor (Phase 4, the plan's Phase 1C): U, L_local, ELP_net and the quadrant
of a snapshot from cheap observables only, so that unlabeled snapshots are scored without a
single rollout.

The observables are free at snapshot time: the text (mission, observation, valid actions and
the student's action) as an embedding, the student's recorded distribution (U, top-1
probability, margin), the level and the step. Training is a grouped K-fold by task
`(env_id, seed)` over the labeled snapshots: each fold's model trains on the other folds' tasks
(an inner split of those tasks picks its epoch) and predicts its own, so every labeled snapshot
gets an out-of-fold prediction, and every reported metric comes from those. The saved predictor
is a final fit on all labeled snapshots for the median of the folds' picked epochs. A row whose
`leverage` or `cpt` is null still trains the heads it has targets for.

This module runs the phase and judges its verdicts; the features, the network and its fitting
are `models.predictor`, the metrics and rankings `measure.ranking`, and the training result it
writes `records.predictor`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from teachable.measure.intervals import RESAMPLES
from teachable.measure.ranking import head_metrics, ranking_report
from teachable.measure.verdicts import judge
from teachable.models.predictor import (
    SCALAR_FEATURES,
    TEXT_FIELDS,
    LabeledSet,
    build_embedder,
    fit_predictor,
    out_of_fold,
    targets_of,
    text_of,
)
from teachable.parameters import Phase4Parameters
from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot, load_labeled
from teachable.records.layout import Phase1Layout, Phase4Layout
from teachable.records.predictor import (
    GAIN,
    REGRESSION_TARGETS,
    PredictorResult,
    Ranking,
    ndcg_criterion,
)
from teachable.records.verdicts import Verdict, save_phase_verdicts
from teachable.vocabulary import QUADRANTS

PHASE = "phase4"  # the verdicts' phase in the run's verdicts.json


TARGETS = {
    "U_r2": ("R² of U", 0.6),
    "L_local_r2": ("R² of L_local", 0.5),
    "quadrant_accuracy": ("quadrant accuracy", 0.7),
}


NOTES = {"U_r2": "met by construction: U is a function of the student's distribution, an input"}


def predictor_verdicts(metrics: Mapping[str, Estimate], ranking: Ranking) -> list[Verdict]:
    """The plan's targets: R² of U > 0.6, R² of L_local > 0.5, quadrant accuracy > 0.7, each
    on its interval; and at each K, the predictor's NDCG@K minus the entropy ranking's > 0 on
    the interval of the paired difference (one verdict per K). A measured U verdict notes
    that it is met by construction."""
    verdicts = [
        judge(
            PHASE,
            name,
            f"{figure} > {threshold}",
            metrics[name],
            ">",
            threshold,
            NOTES.get(name, "") if metrics[name].known else "",
        )
        for name, (figure, threshold) in TARGETS.items()
    ]
    for k, entry in ranking.by_k.items():
        claim = f"NDCG@{k} of the predictor - NDCG@{k} of entropy > 0"
        verdicts.append(judge(PHASE, ndcg_criterion(k), claim, entry["ndcg"][GAIN], ">", 0.0))
    return verdicts


def _counts(data: LabeledSet) -> dict[str, int]:
    """Labeled snapshots and tasks, and how many snapshots carry each target."""
    counts = {"snapshots": len(data.rows), "tasks": len({row.task for row in data.rows})}
    for column, name in enumerate(REGRESSION_TARGETS):
        counts[name] = int((~np.isnan(data.values[:, column])).sum())
    counts["quadrant"] = int((data.quadrants >= 0).sum())
    return counts


def train_predictor(
    rows: Sequence[LabeledSnapshot],
    params: Phase4Parameters,
    out: Phase4Layout,
    verdicts: Path | None = None,
    resamples: int = RESAMPLES,
) -> PredictorResult:
    """Out-of-fold predictions of every labeled row by grouped K-fold over its tasks give every
    metric (with `resamples` bootstrap resamples of the tasks behind each interval); then a
    final fit on all rows, for the folds' median picked epoch, is the saved predictor.

    Writes the training result, the out-of-fold predictions (`out.test_predictions`) and the
    predictor into `out`, and the verdicts into `verdicts`, the run's verdicts file, when
    given; returns the training result.
    """
    values, quadrants = targets_of(rows)
    if np.isnan(values).all() and (quadrants < 0).all():
        raise ValueError("no row carries U, leverage.L_local, cpt.ELP_net or quadrant")
    embedder = build_embedder(params.embedder, params.embedding_dim)
    data = LabeledSet(rows, embedder.embed([text_of(row) for row in rows]), values, quadrants)
    predicted, folds = out_of_fold(embedder, data, params)
    epochs = round(float(np.median([fold.fit.best_epoch for fold in folds])))
    predictor, final = fit_predictor(embedder, data, range(len(rows)), None, epochs, params)
    predictor.save(out.predictor_model)
    _prediction_frame(rows, values, quadrants, predicted).to_csv(out.test_predictions, index=False)
    tasks = [row.task for row in rows]
    true_u = values[:, REGRESSION_TARGETS.index("U")]
    true_elp = values[:, REGRESSION_TARGETS.index("ELP_net")]
    ranked = ~np.isnan(true_elp) & ~np.isnan(true_u)
    metrics = head_metrics(values, quadrants, predicted, tasks, resamples, params.seed)
    ranking = ranking_report(
        true_elp[ranked],
        predicted["ELP_net"].to_numpy()[ranked],
        true_u[ranked],
        [task for task, keep in zip(tasks, ranked, strict=True) if keep],
        params.k,
        resamples,
        params.seed,
    )
    result = PredictorResult(
        parameters=params.model_dump(mode="json"),
        embedder=embedder.config,
        features=[*TEXT_FIELDS, *SCALAR_FEATURES, "level"],
        counts=_counts(data),
        folds=folds,
        tasks=sorted(set(tasks)),
        final=final,
        metrics=metrics,
        ranking=ranking,
        verdicts=predictor_verdicts(metrics, ranking),
    )
    result.save(out.training_result)
    if verdicts is not None:
        save_phase_verdicts(verdicts, PHASE, result.verdicts)
    return result


def _prediction_frame(
    rows: Sequence[LabeledSnapshot],
    truth: np.ndarray,
    quadrants: np.ndarray,
    predicted: pd.DataFrame,
) -> pd.DataFrame:
    """Out-of-fold predictions next to the true values of every labeled snapshot, with its
    task and fold (for plots and later phases)."""
    frame = pd.DataFrame(
        {
            "id": [row.id for row in rows],
            "env_id": [row.task[0] for row in rows],
            "seed": [row.task[1] for row in rows],
        }
    )
    for column, name in enumerate(REGRESSION_TARGETS):
        frame[f"true_{name}"] = truth[:, column]
    frame["true_quadrant"] = [QUADRANTS[q] if q >= 0 else None for q in quadrants]
    return pd.concat([frame, predicted.drop(columns="id")], axis=1)


def labeled_rows(phase1: Phase1Layout) -> list[LabeledSnapshot]:
    """Phase 1's labeled snapshots in the chosen (else automatic) quadrants; a clear error when
    Phase 1 has not run."""
    if not phase1.labeled_json.is_file():
        raise FileNotFoundError(
            f"{phase1.labeled_json} does not exist: the predictor trains on Phase 1's labels, "
            "run phase 1 first (python -m teachable run PARAMS --phases 1)"
        )
    return load_labeled(phase1)
