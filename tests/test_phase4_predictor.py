"""The teachability predictor learns what the text determines, nothing from noise, splits by
task, reloads exactly, computes its metrics as defined (sklearn's where sklearn has them), and
judges the plan's targets on their intervals."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, ndcg_score, r2_score

from teachable.parameters import Phase4Parameters
from teachable.phases.phase4_predictor import (
    REGRESSION_TARGETS,
    Predictor,
    PredictorResult,
    macro_f1,
    ndcg_at_k,
    precision_at_k,
    r_squared,
    random_ndcg_at_k,
    random_precision,
    split_by_task,
    train_predictor,
)
from teachable.records.labeled import CPT, LabeledSnapshot, Leverage
from teachable.records.layout import Phase4Layout, RunLayout
from teachable.records.quadrants import QUADRANTS, quadrant_of
from teachable.records.verdicts import Verdicts

COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECTS = ("ball", "box", "key")
VALID_ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]
PARAMS = Phase4Parameters(embedding_dim=256, hidden=64, epochs=60, learning_rate=3e-3, k=[5, 10])
RESAMPLES = 500

Planted = tuple[PredictorResult, Path, list[LabeledSnapshot]]


def leverage(value: float) -> Leverage:
    return Leverage(L_local=value, p_student=0.0, p_forced=max(value, 0.0), n=4)


def cpt(elp_net: float) -> CPT:
    elp = {"demo": elp_net, "hint": 0.0, "contrast": 0.0}
    return CPT(p={}, ELP=elp, ELP_net=elp_net, route_net="demo", n_per_condition=2)


def synthetic_rows(n_tasks: int = 60, per_task: int = 5, seed: int = 0) -> list[LabeledSnapshot]:
    """Labeled rows in BabyAI-Text shape whose targets are planted functions of the text:
    U of the object seen, L_local of its distance, ELP_net of its color."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in range(n_tasks):
        env_id = ("BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0")[task % 2]
        mission = f"go to the {rng.choice(COLORS)} {rng.choice(OBJECTS)}"
        for step in range(per_task):
            color, obj = rng.choice(COLORS), rng.choice(OBJECTS)
            distance = int(rng.integers(1, 5))
            steps = "step" if distance == 1 else "steps"
            u = 0.15 + 0.3 * OBJECTS.index(obj)
            gain = 0.3 - 0.2 * (distance - 1)
            rows.append(
                LabeledSnapshot(
                    id=f"t{task}-s{step}",
                    source="student",
                    env_state={"env_id": env_id, "seed": 1000 + task, "actions": []},
                    level=env_id.split("-")[1],
                    mission=mission,
                    observation=f"You see a {color} {obj} {distance} {steps} forward.",
                    valid_actions=VALID_ACTIONS,
                    student_action=str(rng.choice(VALID_ACTIONS)),
                    student_distribution=dict.fromkeys(VALID_ACTIONS, 1 / 6),
                    expert_action="go forward",
                    step=step,
                    episode_success=False,
                    U=u,
                    leverage=leverage(gain),
                    cpt=cpt(0.1 * COLORS.index(color) - 0.2),
                    quadrant=quadrant_of(u, gain, u_threshold=0.5, l_threshold=0.0),
                )
            )
    return rows


def shuffled_labels(rows: list[LabeledSnapshot], seed: int) -> list[LabeledSnapshot]:
    """The same texts with the label sets permuted across rows: no signal left to learn."""
    order = np.random.default_rng(seed).permutation(len(rows))
    labels = ("U", "leverage", "cpt", "quadrant")
    return [
        row.model_copy(update={key: getattr(rows[j], key) for key in labels})
        for row, j in zip(rows, order, strict=True)
    ]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These models are tiny: one thread is faster than two contending ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Planted:
    rows = synthetic_rows()
    out = tmp_path_factory.mktemp("planted")
    run = RunLayout(out)
    result = train_predictor(rows, PARAMS, run.phase4, run.verdicts, resamples=RESAMPLES)
    return result, run.phase4.folder, rows


def test_recovers_a_planted_signal_and_every_target_holds(planted: Planted) -> None:
    result, out, _ = planted
    metrics = result.metrics
    for name in ("U_r2", "L_local_r2", "ELP_net_r2", "quadrant_accuracy"):
        assert metrics[name].value > 0.9 and metrics[name].n == 60
        assert metrics[name].low <= metrics[name].value <= metrics[name].high
    assert metrics["quadrant_accuracy"].method == "wilson"
    # ELP_net depends on color only, so ranking by U (entropy) cannot match the predictor.
    assert [(v.criterion, v.outcome) for v in result.verdicts] == [
        ("U_r2", "holds"),
        ("L_local_r2", "holds"),
        ("quadrant_accuracy", "holds"),
        ("ndcg@5_predictor_minus_entropy", "holds"),
        ("ndcg@10_predictor_minus_entropy", "holds"),
    ]
    gain = result.ranking.by_k["5"]["ndcg"]
    difference = gain["predictor"].value - gain["entropy"].value
    assert gain["predictor_minus_entropy"].value == pytest.approx(difference, abs=1e-5)
    assert PredictorResult.load(Phase4Layout(out).training_result) == result
    assert Verdicts.load(RunLayout(out.parent).verdicts).of("phase4") == result.verdicts


def test_best_epoch_is_the_lowest_validation_loss(
    planted: Planted,
) -> None:
    result, _, _ = planted
    losses = [epoch["validation_loss"] for epoch in result.history]
    assert len(losses) == PARAMS.epochs
    assert result.best_epoch == 1 + int(np.argmin(losses))
    assert result.best_validation_loss == min(losses)


def test_same_seed_same_training(tmp_path: Path) -> None:
    rows = synthetic_rows(n_tasks=12)
    params = PARAMS.model_copy(update={"epochs": 3})
    first = train_predictor(rows, params, Phase4Layout(tmp_path / "first"), resamples=RESAMPLES)
    again = train_predictor(rows, params, Phase4Layout(tmp_path / "second"), resamples=RESAMPLES)
    assert again == first, "seeded training and seeded intervals"
    other = train_predictor(
        rows, params.model_copy(update={"seed": 1}), Phase4Layout(tmp_path / "other"), resamples=10
    )
    assert other.history != first.history


def test_shuffled_labels_score_no_better_than_chance(tmp_path: Path) -> None:
    rows = shuffled_labels(synthetic_rows(), seed=1)
    result = train_predictor(rows, PARAMS, Phase4Layout(tmp_path), resamples=RESAMPLES)
    metrics = result.metrics
    for name in REGRESSION_TARGETS:
        assert metrics[f"{name}_r2"].value <= 0.05
    test_ids = set(pd.read_csv(Phase4Layout(tmp_path).test_predictions)["id"])
    test_quadrants = pd.Series([row.quadrant for row in rows if row.id in test_ids])
    majority_rate = test_quadrants.value_counts(normalize=True).max()
    # 60 test snapshots: one standard error of an accuracy near 0.3 is about 0.06.
    assert metrics["quadrant_accuracy"].value <= majority_rate + 0.1
    outcomes = {verdict.criterion: verdict.outcome for verdict in result.verdicts}
    assert outcomes["U_r2"] == outcomes["L_local_r2"] == outcomes["quadrant_accuracy"] == "fails"
    assert "holds" not in outcomes.values()


def test_saved_predictor_reloads_with_identical_predictions(
    planted: Planted,
) -> None:
    _, out, rows = planted
    written = pd.read_csv(Phase4Layout(out).test_predictions)
    test_rows = [row for row in rows if row.id in set(written["id"])]
    first = Predictor.load(Phase4Layout(out).predictor_model).predict(test_rows)
    assert list(first["id"]) == list(written["id"])
    for name in REGRESSION_TARGETS:
        assert np.array_equal(first[name].to_numpy(np.float32), written[name].to_numpy(np.float32))
    assert list(first["quadrant"]) == list(written["quadrant"])
    probabilities = first[[f"p_{quadrant}" for quadrant in QUADRANTS]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_no_task_appears_in_two_splits(
    planted: Planted,
) -> None:
    rows = synthetic_rows(n_tasks=40, per_task=3)
    splits = split_by_task(rows, validation_fraction=0.15, test_fraction=0.2, seed=3)
    tasks = {name: {rows[i].task for i in ix} for name, ix in splits.items()}
    assert sorted(i for ix in splits.values() for i in ix) == list(range(len(rows)))
    assert not tasks["train"] & tasks["validation"]
    assert not tasks["train"] & tasks["test"]
    assert not tasks["validation"] & tasks["test"]
    assert (len(tasks["test"]), len(tasks["validation"])) == (8, 6)
    recorded = planted[0].tasks
    recorded_sets = [{tuple(task) for task in recorded[name]} for name in recorded]
    assert sum(len(s) for s in recorded_sets) == len(set().union(*recorded_sets)) == 60
    assert sum(planted[0].counts[name]["snapshots"] for name in recorded) == 300


def test_too_few_tasks_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 3 tasks"):
        split_by_task(synthetic_rows(n_tasks=2), 0.2, 0.2, seed=0)


def test_ranking_metrics_match_hand_computed_values() -> None:
    true_elp = np.array([0.5, -0.1, 0.2, 0.0, 0.3])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
    # Order by score: rows 0, 1, 3, 4, 2; relevant (ELP_net > 0): rows 0, 2, 4.
    assert precision_at_k(true_elp, scores, 2) == pytest.approx(1 / 2)
    assert precision_at_k(true_elp, scores, 3) == pytest.approx(1 / 3)
    assert precision_at_k(true_elp, scores, 4) == pytest.approx(2 / 4)
    assert random_precision(true_elp) == pytest.approx(3 / 5)
    ideal_at_2 = 0.5 + 0.3 / math.log2(3)
    assert ndcg_at_k(true_elp, scores, 2) == pytest.approx(0.5 / ideal_at_2)
    expected_random_dcg = 0.2 * (1 + 1 / math.log2(3))
    assert random_ndcg_at_k(true_elp, 2) == pytest.approx(expected_random_dcg / ideal_at_2)
    assert ndcg_at_k(true_elp, true_elp, 2) == pytest.approx(1.0)


def test_fast_metrics_agree_with_sklearn_ties_included() -> None:
    """The bootstrap needs NDCG, macro F1 and R² fast; they must be sklearn's figures, with
    tied scores (rounded to one decimal) and labels missing from either side."""
    rng = np.random.default_rng(3)
    for _ in range(100):
        n = int(rng.integers(2, 30))
        elp, scores = np.round(rng.uniform(-1, 1, n), 1), np.round(rng.uniform(0, 1, n), 1)
        for k in (1, 3, 50):
            expected = ndcg_score(np.clip(elp, 0, None)[None], scores[None], k=k)
            assert ndcg_at_k(elp, scores, k) == pytest.approx(expected, abs=1e-12)
        truth, guess = rng.integers(0, 4, n), rng.integers(0, 3, n)
        expected = f1_score(truth, guess, average="macro", zero_division=0)
        assert macro_f1(truth, guess) == pytest.approx(expected, abs=1e-12)
        x, y = rng.normal(size=n), rng.normal(size=n)
        assert r_squared(x, y) == pytest.approx(r2_score(x, y), abs=1e-12)
    assert math.isnan(r_squared(np.ones(4), np.zeros(4))), "R² of a constant truth is undefined"


def test_random_ndcg_is_the_mean_over_all_orders() -> None:
    true_elp = np.array([0.5, -0.1, 0.2, 0.0, 0.3, 0.05])
    orders = [np.array(order, dtype=float) for order in itertools.permutations(range(6))]
    mean = np.mean([ndcg_at_k(true_elp, order, 3) for order in orders])
    assert random_ndcg_at_k(true_elp, 3) == pytest.approx(mean, rel=1e-9)


def test_rows_without_leverage_or_cpt_still_train_the_U_head(tmp_path: Path) -> None:
    rows = synthetic_rows()
    for index, row in enumerate(rows):
        if index % 5:
            rows[index] = row.model_copy(update={"leverage": None, "cpt": None, "quadrant": None})
    result = train_predictor(rows, PARAMS, Phase4Layout(tmp_path), resamples=RESAMPLES)
    assert result.metrics["U_r2"].value > 0.9
    # Scored on the 12 test rows that carry leverage; nulls read as zeros would drag it down.
    assert result.metrics["L_local_r2"].n == 12
    assert result.metrics["L_local_r2"].value > 0.7
    assert all(math.isfinite(epoch["train_loss"]) for epoch in result.history)
    counts = result.counts
    assert sum(counts[name]["U"] for name in counts) == 300
    assert sum(counts[name]["L_local"] for name in counts) == 60
    assert sum(counts[name]["quadrant"] for name in counts) == 60


def test_a_head_without_targets_is_not_measured_and_inconclusive(tmp_path: Path) -> None:
    rows = [row.model_copy(update={"leverage": None}) for row in synthetic_rows(n_tasks=20)]
    params = PARAMS.model_copy(update={"epochs": 3})
    result = train_predictor(rows, params, Phase4Layout(tmp_path), resamples=RESAMPLES)
    r2 = result.metrics["L_local_r2"]
    assert (r2.value, r2.low, r2.high, r2.n) == (None, None, None, 0)
    [verdict] = [v for v in result.verdicts if v.criterion == "L_local_r2"]
    assert (verdict.outcome, verdict.note) == ("inconclusive", "not measured")


def test_minilm_embedder_trains_and_reloads_from_its_package(tmp_path: Path) -> None:
    rows = synthetic_rows(n_tasks=10)
    params = PARAMS.model_copy(update={"embedder": "minilm", "epochs": 2})
    result = train_predictor(rows, params, Phase4Layout(tmp_path), resamples=RESAMPLES)
    assert result.embedder == {"kind": "minilm", "dim": 4 * 384}
    predictor = Predictor.load(Phase4Layout(tmp_path).predictor_model)
    features = predictor.features(rows).numpy()
    assert features.shape == (50, 4 * 384)
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    written = pd.read_csv(Phase4Layout(tmp_path).test_predictions)
    again = predictor.predict([row for row in rows if row.id in set(written["id"])])
    assert np.array_equal(again["U"].to_numpy(np.float32), written["U"].to_numpy(np.float32))
