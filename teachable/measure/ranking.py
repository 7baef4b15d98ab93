"""How well scores rank snapshots and predictions fit their labels: Precision@K and NDCG@K
curves with their random baselines, the predictor against the entropy ranking with paired
intervals over tasks, and R², quadrant accuracy and macro F1 of the predictor's heads.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import pandas as pd

from teachable.measure.intervals import RESAMPLES, bootstrap_clusters, wilson
from teachable.records.estimate import Estimate
from teachable.records.predictor import GAIN, RANKERS, RANKING_METRICS, REGRESSION_TARGETS, Ranking
from teachable.vocabulary import QUADRANTS

RANKING_DEFINITION = (
    "Labeled snapshots with a true ELP_net and U are ranked by a score, ties broken by row "
    "order. A snapshot is relevant when its true ELP_net > 0 (the best patch beats the "
    "placebo). precision = share of relevant snapshots among the top K; ndcg = NDCG@K as "
    "sklearn's ndcg_score defines it (tied scores share their mean gain), with gains "
    "max(ELP_net, 0). predictor ranks by the out-of-fold predicted ELP_net, entropy by the "
    "student's measured U, random is the expected value under a uniformly random order. K is "
    "capped at the number of ranked snapshots. Intervals resample the tasks of the ranked "
    "snapshots, the same draws for every ranking, so the predictor's gain over entropy is a "
    "paired difference."
)


def precision_curve(true_elp: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Precision@1..n: the share of the top k by `scores` (ties in row order) whose true
    ELP_net > 0."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    hits = np.cumsum(np.asarray(true_elp)[order] > 0)
    return hits / np.arange(1, len(hits) + 1)


def _dcg_curve(gains: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """DCG@1..n of `scores` with `gains`; tied scores share their mean gain, as sklearn's
    `ndcg_score` counts them."""
    order = np.argsort(-scores, kind="stable")
    ranked = gains[order]
    starts = np.flatnonzero(np.diff(scores[order], prepend=np.inf))
    if len(starts) < len(ranked):  # ties: each run of equal scores shares its mean gain
        counts = np.diff(starts, append=len(ranked))
        ranked = np.repeat(np.add.reduceat(ranked, starts) / counts, counts)
    return np.cumsum(ranked / np.log2(np.arange(2, len(ranked) + 2)))


def _gains(true_elp: np.ndarray) -> np.ndarray:
    """NDCG's gains: max(ELP_net, 0), as NDCG needs gains >= 0."""
    return np.clip(np.asarray(true_elp, dtype=float), 0.0, None)


def ndcg_curve(true_elp: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """NDCG@1..n of `scores` with gains max(ELP_net, 0), as sklearn's `ndcg_score` defines it
    (0 where no gain is positive), in one sort: fast enough to bootstrap."""
    gains = _gains(true_elp)
    ideal = _dcg_curve(gains, gains)
    dcg = _dcg_curve(gains, np.asarray(scores, dtype=float))
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def random_ndcg_curve(true_elp: np.ndarray) -> np.ndarray:
    """Expected NDCG@1..n of a uniformly random order: every position expects the mean gain."""
    gains = _gains(true_elp)
    ideal = _dcg_curve(gains, gains)
    expected = gains.mean() * np.cumsum(1.0 / np.log2(np.arange(2, len(gains) + 2)))
    return np.divide(expected, ideal, out=np.zeros_like(expected), where=ideal > 0)


def at_k(curve: np.ndarray, k: int) -> float:
    """A curve's value at K, with K capped at the number of ranked snapshots."""
    return float(curve[min(k, len(curve)) - 1])


def precision_at_k(true_elp: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of the top-k by `scores` whose true ELP_net > 0."""
    return at_k(precision_curve(true_elp, scores), k)


def ndcg_at_k(true_elp: np.ndarray, scores: np.ndarray, k: int) -> float:
    """NDCG@k of `scores` with gains max(ELP_net, 0)."""
    return at_k(ndcg_curve(true_elp, scores), k)


def random_precision(true_elp: np.ndarray) -> float:
    """Expected Precision@K of a uniformly random order, at any K: the share of relevant
    snapshots."""
    return float(np.mean(np.asarray(true_elp) > 0))


def random_ndcg_at_k(true_elp: np.ndarray, k: int) -> float:
    """Expected NDCG@k of a uniformly random order."""
    return at_k(random_ndcg_curve(true_elp), k)


def _ranking_figures(
    true_elp: np.ndarray, predicted_elp: np.ndarray, entropy: np.ndarray, ks: Sequence[int]
) -> Callable[[np.ndarray], dict[str, float]]:
    """The ranking figures of the rows at some indices, named `K/metric/ranker`."""

    def figures(rows: np.ndarray) -> dict[str, float]:
        truth = true_elp[rows]
        scored = {"predictor": predicted_elp[rows], "entropy": entropy[rows]}
        curves = {
            "ndcg": {name: ndcg_curve(truth, scores) for name, scores in scored.items()},
            "precision": {name: precision_curve(truth, scores) for name, scores in scored.items()},
        }
        curves["ndcg"]["random"] = random_ndcg_curve(truth)
        curves["precision"]["random"] = np.full(len(truth), random_precision(truth))
        named = {}
        for k in ks:
            for metric, by_ranker in curves.items():
                values = {ranker: at_k(curve, k) for ranker, curve in by_ranker.items()}
                values[GAIN] = values["predictor"] - values["entropy"]
                named |= {f"{k}/{metric}/{name}": value for name, value in values.items()}
        return named

    return figures


def ranking_report(
    true_elp: np.ndarray,
    predicted_elp: np.ndarray,
    entropy: np.ndarray,
    tasks: Sequence[Hashable],
    ks: Sequence[int],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Ranking:
    """Precision@K and NDCG@K of the predictor next to the entropy ranking and random, with
    intervals from resampling the ranked rows' `tasks` (paired: the rankings score the same
    rows)."""
    n = len(true_elp)
    names = [
        f"{k}/{metric}/{name}"
        for k in ks
        for metric in RANKING_METRICS
        for name in (*RANKERS, GAIN)
    ]
    if n < 2:
        estimates = {
            name: Estimate(value=None, n=n, method="fewer than 2 ranked rows") for name in names
        }
    else:
        figures = _ranking_figures(
            np.asarray(true_elp, float),
            np.asarray(predicted_elp, float),
            np.asarray(entropy, float),
            ks,
        )
        estimates = bootstrap_clusters(tasks, figures, resamples, seed)
    by_k: dict[str, dict[str, dict[str, Estimate]]] = {}
    for name in names:
        k, metric, ranker = name.split("/")
        by_k.setdefault(k, {}).setdefault(metric, {})[ranker] = estimates[name]
    relevant = int(np.sum(np.asarray(true_elp) > 0))
    return Ranking(definition=RANKING_DEFINITION, n=n, n_relevant=relevant, by_k=by_k)


def r_squared(truth: np.ndarray, predicted: np.ndarray) -> float:
    """The coefficient of determination; NaN on fewer than 2 rows or a constant truth."""
    total = float(np.sum((truth - truth.mean()) ** 2)) if len(truth) >= 2 else 0.0
    if total == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((truth - predicted) ** 2)) / total


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean F1 over the labels in `truth` or `predicted`, as sklearn's macro F1 counts it."""
    labels = np.union1d(truth, predicted)
    if not len(labels):
        return float("nan")
    scores = []
    for label in labels:
        hits = np.sum((truth == label) & (predicted == label))
        scores.append(2 * hits / (np.sum(truth == label) + np.sum(predicted == label)))
    return float(np.mean(scores))


def head_metrics(
    truth: np.ndarray,
    quadrants: np.ndarray,
    predicted: pd.DataFrame,
    tasks: Sequence[Hashable],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Estimate]:
    """R² per regression head and quadrant macro F1 (bootstraps over the `tasks` of the rows,
    since a task's snapshots are not independent) and quadrant accuracy (Wilson), each over
    the rows that carry its target."""
    metrics = {}
    for column, name in enumerate(REGRESSION_TARGETS):
        known = ~np.isnan(truth[:, column])
        true, guess = truth[known, column].astype(float), predicted[name].to_numpy(float)[known]
        metrics[f"{name}_r2"] = bootstrap_clusters(
            [task for task, keep in zip(tasks, known, strict=True) if keep],
            lambda rows, t=true, g=guess: {"r2": r_squared(t[rows], g[rows])},
            resamples,
            seed,
        )["r2"]
    known = quadrants >= 0
    true_labels = quadrants[known]
    predicted_labels = np.array([QUADRANTS.index(q) for q in predicted["quadrant"]])[known]
    metrics["quadrant_accuracy"] = wilson(
        int(np.sum(true_labels == predicted_labels)), len(true_labels)
    )
    metrics["quadrant_macro_f1"] = bootstrap_clusters(
        [task for task, keep in zip(tasks, known, strict=True) if keep],
        lambda rows: {"f1": macro_f1(true_labels[rows], predicted_labels[rows])},
        resamples,
        seed,
    )["f1"]
    return metrics
