"""The Phase 4 report: metrics against the plan's targets with the right verdicts, the ranking
curves, predicted-vs-true and confusion data built from the predictions, and charts that
render offline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from teachable.phases.phase4_predictor import (
    REGRESSION_TARGETS,
    head_metrics,
    labeled_rows,
    random_ndcg_at_k,
    ranking_report,
)
from teachable.records.layout import Phase1Layout
from teachable.records.quadrants import QUADRANTS
from teachable.reports.charts import chart_png
from teachable.reports.phase4 import (
    confusion_chart,
    confusion_frame,
    metrics_table,
    prediction_chart,
    prediction_frame,
    ranking_chart,
    ranking_frame,
)

Q1, Q2, Q3, Q4 = QUADRANTS
NAN = np.nan


def sample_predictions() -> pd.DataFrame:
    """Five test snapshots as `test_predictions.csv` holds them: U predicted exactly, L_local
    with its sign flipped, one row without CPT and one without a quadrant."""
    truth = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(5)],
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
    """A training result's metrics and ranking, computed by the predictor's own functions."""
    truth = predictions[[f"true_{name}" for name in REGRESSION_TARGETS]].to_numpy(np.float32)
    quadrants = np.array(
        [QUADRANTS.index(q) if q in QUADRANTS else -1 for q in predictions["true_quadrant"]]
    )
    ranked = ~np.isnan(truth[:, 2])
    ranking = ranking_report(
        truth[ranked, 2],
        predictions["ELP_net"].to_numpy()[ranked],
        truth[ranked, 0],
        ks,
    )
    return SimpleNamespace(metrics=head_metrics(truth, quadrants, predictions), ranking=ranking)


def test_metrics_table_gives_each_target_its_verdict() -> None:
    predictions = sample_predictions()
    result = result_of(predictions, ks=[2, 3])
    table = metrics_table(result).set_index("metric")
    assert table.loc["U R²", "value"] == pytest.approx(1.0)
    assert table.loc["L_local R²", "value"] < 0
    # 3 of the 4 rows with a true quadrant are predicted right: 0.75 > 0.7.
    assert table.loc["quadrant accuracy", "value"] == pytest.approx(0.75)
    assert table.loc["quadrant accuracy", "n"] == 4
    # Ranked (with ELP_net): s0 0.5, s1 -0.1, s2 0.2, s4 0.3. The predictor orders them s0, s4,
    # s2, s1 (ideal); entropy (U) s4, s2, s1, s0. At K=2 both tops are all relevant: a tie.
    assert table["verdict"].to_dict() == {
        "U R²": "pass",
        "L_local R²": "fail",
        "ELP_net R²": "no target",
        "quadrant accuracy": "pass",
        "quadrant macro F1": "no target",
        "NDCG@2": "pass",
        "Precision@2": "fail",
        "NDCG@3": "pass",
        "Precision@3": "pass",
    }
    assert table.loc["NDCG@2", "value"] == pytest.approx(1.0)
    entropy = result.ranking["by_k"]["2"]["ndcg"]["entropy"]
    assert table.loc["NDCG@2", "required"] == f"> entropy ({entropy:.3f})"


def test_a_metric_without_rows_is_not_measured() -> None:
    predictions = sample_predictions().iloc[:1]
    table = metrics_table(result_of(predictions, ks=[2])).set_index("metric")
    assert table.loc["U R²", "verdict"] == "not measured"
    assert table.loc["ranking", "verdict"] == "not measured"


def test_ranking_frame_holds_every_k_metric_and_ranking() -> None:
    predictions = sample_predictions()
    result = result_of(predictions, ks=[1, 2, 4])
    frame = ranking_frame(result)
    assert len(frame) == 3 * 2 * 3
    true_elp = predictions["true_ELP_net"].dropna().to_numpy()
    random_at_2 = frame.query("K == 2 and metric == 'NDCG@K' and ranking == 'random'")
    assert random_at_2["value"].item() == pytest.approx(random_ndcg_at_k(true_elp, 2))
    predictor_at_4 = frame.query("K == 4 and metric == 'Precision@K' and ranking == 'predictor'")
    assert predictor_at_4["value"].item() == result.ranking["by_k"]["4"]["precision"]["predictor"]


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
