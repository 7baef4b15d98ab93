"""The Phase 4 report: the folds, every metric with its interval and n against the plan's
targets, with the outcome its interval gives, the ranking curves, predicted-vs-true and
confusion data built from the out-of-fold predictions, and charts that render offline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from teachable.measure.ranking import head_metrics, random_ndcg_at_k, ranking_report
from teachable.phases.phase4_predictor import labeled_rows, predictor_verdicts
from teachable.records.estimate import Estimate
from teachable.records.layout import Phase1Layout
from teachable.records.predictor import REGRESSION_TARGETS, Fit, Fold
from teachable.reports.charts import chart_png
from teachable.reports.phase4 import (
    confusion_chart,
    confusion_frame,
    fold_frame,
    metrics_table,
    prediction_chart,
    prediction_frame,
    ranking_chart,
    ranking_frame,
)
from teachable.vocabulary import QUADRANTS

Q1, Q2, Q3, Q4 = QUADRANTS
NAN = np.nan


def sample_predictions() -> pd.DataFrame:
    """Five snapshots, each of its own task, as `test_predictions.csv` holds them: U predicted
    exactly, L_local with its sign flipped, one row without CPT and one without a quadrant."""
    truth = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(5)],
            "env_id": "BabyAI-GoToLocal-v0",
            "seed": range(5),
            "true_U": [0.1, 0.3, 0.5, 0.7, 0.9],
            "true_L_local": [0.4, -0.2, 0.1, -0.3, 0.0],
            "true_ELP_net": [0.5, -0.1, 0.2, NAN, 0.3],
            "true_quadrant": [Q1, Q1, Q2, Q3, None],
        }
    )
    predicted = pd.DataFrame(
        {
            "U": truth["true_U"],
            "L_local": -truth["true_L_local"],
            "ELP_net": [0.4, 0.0, 0.1, 0.2, 0.3],
            "quadrant": [Q1, Q2, Q2, Q3, Q4],
        }
    )
    return pd.concat([truth, predicted], axis=1)


def result_of(predictions: pd.DataFrame, ks: list[int]) -> SimpleNamespace:
    """A training result's metrics, ranking and verdicts, computed by the predictor's own
    functions."""
    truth = predictions[[f"true_{name}" for name in REGRESSION_TARGETS]].to_numpy(np.float32)
    quadrants = np.array(
        [QUADRANTS.index(q) if q in QUADRANTS else -1 for q in predictions["true_quadrant"]]
    )
    tasks = list(zip(predictions["env_id"], predictions["seed"], strict=True))
    ranked = ~np.isnan(truth[:, 2])
    ranking = ranking_report(
        truth[ranked, 2],
        predictions["ELP_net"].to_numpy()[ranked],
        truth[ranked, 0],
        [task for task, keep in zip(tasks, ranked, strict=True) if keep],
        ks,
        resamples=500,
    )
    metrics = head_metrics(truth, quadrants, predictions, tasks, resamples=500)
    verdicts = predictor_verdicts(metrics, ranking)
    return SimpleNamespace(metrics=metrics, ranking=ranking, verdicts=verdicts)


def test_metrics_table_gives_each_target_the_outcome_of_its_interval() -> None:
    predictions = sample_predictions()
    result = result_of(predictions, ks=[2, 3])
    table = metrics_table(result).set_index("metric")
    # U is predicted exactly: R² is 1 on every resample that defines it, a zero-width interval
    # (inconclusive: it shows no spread, not a known one).
    assert tuple(table.loc["U R²", ["value", "low", "high", "n"]]) == (1.0, 1.0, 1.0, 5)
    # L_local is predicted with its sign flipped: R² <= -3 on every resample.
    assert table.loc["L_local R²", "high"] <= -3
    # 3 of the 4 rows with a true quadrant are predicted right: 0.75, but Wilson's interval on
    # 4 rows reaches below 0.7.
    assert table.loc["quadrant accuracy", "value"] == pytest.approx(0.75)
    assert table.loc["quadrant accuracy", "n"] == 4
    assert table.loc["quadrant accuracy", "low"] < 0.7 < table.loc["quadrant accuracy", "high"]
    # Ranked (with ELP_net): s0 0.5, s1 -0.1, s2 0.2, s4 0.3. The predictor orders them s0, s4,
    # s2, s1 (ideal, on any resample); entropy (U) s4, s2, s1, s0, which is ideal too on the
    # resamples without s0 (about a third): the gain's interval starts at 0.
    assert table["outcome"].to_dict() == {
        "U R²": "inconclusive",
        "L_local R²": "fails",
        "ELP_net R²": "no target",
        "quadrant accuracy": "inconclusive",
        "quadrant macro F1": "no target",
        "NDCG@2 - entropy": "inconclusive",
        "Precision@2 - entropy": "no target",
        "NDCG@3 - entropy": "inconclusive",
        "Precision@3 - entropy": "no target",
    }
    assert table.loc["NDCG@2 - entropy", "low"] == 0.0 < table.loc["NDCG@2 - entropy", "value"]
    assert table.loc["U R²", "target"] == "> 0.6"
    assert table.loc["NDCG@2 - entropy", "target"] == "> 0"
    assert (table["n"] > 0).all()


def test_r2_rows_carry_the_labels_test_retest_ceiling() -> None:
    result = result_of(sample_predictions(), ks=[2])
    reliability = {"L_local": Estimate(value=0.42, low=0.2, high=0.6, n=30)}
    table = metrics_table(result, reliability).set_index("metric")
    assert table.loc["L_local R²", "ceiling"] == "0.42 [0.20, 0.60], n=30"
    assert table.loc["U R²", "ceiling"] == "—" and table.loc["quadrant accuracy", "ceiling"] == "—"
    assert set(metrics_table(result)["ceiling"]) == {"—"}


def test_a_metric_without_rows_is_not_measured() -> None:
    predictions = sample_predictions().iloc[:1]
    result = result_of(predictions, ks=[2])
    table = metrics_table(result).set_index("metric")
    assert np.isnan(table.loc["U R²", "value"]) and table.loc["U R²", "outcome"] == "inconclusive"
    assert table.loc["NDCG@2 - entropy", "outcome"] == "inconclusive"
    notes = {verdict.criterion: verdict.note for verdict in result.verdicts}
    assert notes["U_r2"] == "not measured"


def test_fold_frame_has_a_line_per_fold_and_one_for_the_saved_predictor() -> None:
    tasks = [("BabyAI-GoToLocal-v0", seed) for seed in range(6)]
    history = [{"epoch": 1, "train_loss": 1.0, "validation_loss": 0.5}]
    fit = Fit(best_epoch=1, best_validation_loss=0.5, history=history)
    folds = [
        Fold(train=tasks[2:5], validation=tasks[5:], test=tasks[:2], snapshots=4, fit=fit),
        Fold(train=tasks[:3], validation=tasks[5:], test=tasks[3:5], snapshots=3, fit=fit),
    ]
    final = Fit(best_epoch=1, best_validation_loss=None, history=history[:1])
    frame = fold_frame(SimpleNamespace(folds=folds, tasks=tasks, final=final)).set_index("model")
    assert list(frame.index) == ["fold 0", "fold 1", "saved (all labeled)"]
    assert list(frame["held-out tasks"]) == [2, 2, 0]
    assert list(frame["held-out snapshots"]) == [4, 3, 0]
    assert list(frame["train tasks"]) == [3, 3, 6]
    assert frame.loc["fold 1", "validation loss"] == 0.5
    assert pd.isna(frame.loc["saved (all labeled)", "validation loss"])


def test_ranking_frame_holds_every_k_metric_and_ranking() -> None:
    predictions = sample_predictions()
    result = result_of(predictions, ks=[1, 2, 4])
    frame = ranking_frame(result)
    assert len(frame) == 3 * 2 * 3
    true_elp = predictions["true_ELP_net"].dropna().to_numpy()
    random_at_2 = frame.query("K == 2 and metric == 'NDCG@K' and ranking == 'random'")
    assert random_at_2["value"].item() == pytest.approx(random_ndcg_at_k(true_elp, 2))
    predictor_at_4 = frame.query("K == 4 and metric == 'Precision@K' and ranking == 'predictor'")
    expected = result.ranking.by_k["4"]["precision"]["predictor"]
    assert predictor_at_4["value"].item() == expected.value
    assert (predictor_at_4["low"].item(), predictor_at_4["high"].item()) == (
        expected.low,
        expected.high,
    )


def test_prediction_frame_drops_missing_truths_per_head() -> None:
    frame = prediction_frame(sample_predictions())
    assert frame.groupby("head").size().to_dict() == {"U": 5, "L_local": 5, "ELP_net": 4}
    elp = frame[frame["head"] == "ELP_net"]
    assert list(elp["true"]) == [0.5, -0.1, 0.2, 0.3]
    assert list(elp["predicted"]) == [0.4, 0.0, 0.1, 0.3]


def test_confusion_frame_counts_true_against_predicted() -> None:
    frame = confusion_frame(sample_predictions()).set_index(["true", "predicted"])["count"]
    assert len(frame) == len(QUADRANTS) ** 2
    assert frame.sum() == 4  # the row without a true quadrant is left out
    assert (frame[(Q1, Q1)], frame[(Q1, Q2)], frame[(Q2, Q2)], frame[(Q3, Q3)]) == (1, 1, 1, 1)


def test_charts_render_offline_with_the_diagonal_over_every_point() -> None:
    predictions = sample_predictions()
    frame = prediction_frame(predictions)
    scatter = prediction_chart(frame)
    for panel, head in zip(scatter.to_dict()["hconcat"], REGRESSION_TARGETS, strict=True):
        low, high = panel["layer"][1]["encoding"]["x"]["scale"]["domain"]
        values = frame.loc[frame["head"] == head, ["true", "predicted"]].to_numpy()
        assert low < values.min() and values.max() < high
    charts = [
        scatter,
        confusion_chart(confusion_frame(predictions)),
        ranking_chart(ranking_frame(result_of(predictions, ks=[1, 2]))),
    ]
    for chart in charts:
        assert chart_png(chart, scale=1).startswith(b"\x89PNG")


def test_missing_phase1_labels_say_to_run_phase_1(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run phase 1 first") as error:
        labeled_rows(Phase1Layout(tmp_path / "phase1"))
    assert str(tmp_path / "phase1" / "labeled_snapshots.json") in str(error.value)
