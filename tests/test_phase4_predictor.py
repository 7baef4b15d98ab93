"""The teachability predictor learns what its cheap observables determine (the text, the
student's distribution, the level and the step) and nothing from noise, reports only
out-of-fold predictions (no metric scores a task its model trained on), scores snapshots that
carry no label, reloads exactly, computes its metrics as defined (sklearn's where sklearn has
them), and judges the plan's targets on their intervals."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from labeled_rows import bot_states, labeled_rows
from sklearn.metrics import f1_score, ndcg_score, r2_score

from teachable.measure.ranking import (
    macro_f1,
    ndcg_at_k,
    precision_at_k,
    r_squared,
    random_ndcg_at_k,
    random_precision,
)
from teachable.models.labeling import snapshot_uncertainty
from teachable.models.predictor import (
    SCALAR_FEATURES,
    LabeledSet,
    Predictor,
    build_embedder,
    fit_predictor,
    scalar_features,
    targets_of,
    task_folds,
    text_of,
)
from teachable.models.student import Student
from teachable.parameters import Phase4Parameters
from teachable.phases.phase0_snapshots import expert_snapshots
from teachable.phases.phase4_predictor import train_predictor
from teachable.records.labeled import CPT, LabeledSnapshot, Leverage
from teachable.records.layout import Phase4Layout, RunLayout
from teachable.records.predictor import REGRESSION_TARGETS, PredictorResult
from teachable.records.quadrants import quadrant_of
from teachable.records.snapshot import Snapshot
from teachable.records.verdicts import Verdicts
from teachable.vocabulary import QUADRANTS

COLORS = ("red", "green", "blue", "purple", "yellow", "grey")
OBJECTS = ("ball", "box", "key")
VALID_ACTIONS = ["turn left", "turn right", "go forward", "pick up", "drop", "toggle"]
LEVELS = ("GoToLocal", "PickupLoc")
PARAMS = Phase4Parameters(
    embedding_dim=256, hidden=64, epochs=60, learning_rate=3e-3, folds=5, k=[5, 10]
)
RESAMPLES = 500

Planted = tuple[PredictorResult, Path, list[LabeledSnapshot]]


def leverage(value: float) -> Leverage:
    return Leverage(L_local=value, p_student=0.0, p_forced=max(value, 0.0), n=4)


def cpt(elp_net: float) -> CPT:
    elp = {"demo": elp_net, "hint": 0.0, "contrast": 0.0}
    return CPT(p={}, ELP=elp, ELP_net=elp_net, route_net="demo", n_per_condition=2)


def distribution(rng: np.random.Generator) -> dict[str, float]:
    """A student distribution over the valid actions, from nearly one-hot to nearly uniform."""
    logits = rng.normal(size=len(VALID_ACTIONS)) * rng.uniform(0.2, 4.0)
    weights = np.exp(logits - logits.max())
    return dict(zip(VALID_ACTIONS, (weights / weights.sum()).tolist(), strict=True))


Labels = Callable[[Snapshot, int, str], tuple[float, float]]  # (row, distance, color) -> L, ELP


def from_text(row: Snapshot, distance: int, color: str) -> tuple[float, float]:
    """L_local of the distance seen, ELP_net of the color seen: signals only the text holds."""
    return 0.3 - 0.2 * (distance - 1), 0.1 * COLORS.index(color) - 0.2


def from_distribution_level_and_step(
    row: Snapshot, distance: int, color: str
) -> tuple[float, float]:
    """ELP_net a non-monotone function of the student's U (so ranking by U cannot match it),
    L_local of the level and the step: signals the text does not hold."""
    u = snapshot_uncertainty(row, "entropy")
    return 0.2 * (row.level == "GoToLocal") - 0.05 * row.step, 0.3 * math.sin(6 * u)


def synthetic_rows(
    n_tasks: int = 60, per_task: int = 5, seed: int = 0, labels: Labels = from_text
) -> list[LabeledSnapshot]:
    """Labeled rows in BabyAI-Text shape: U is the normalized entropy of the recorded
    distribution (as Phase 1 measures it) and L_local and ELP_net are planted by `labels`."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in range(n_tasks):
        level = LEVELS[task % 2]
        mission = f"go to the {rng.choice(COLORS)} {rng.choice(OBJECTS)}"
        for step in range(per_task):
            color, obj = str(rng.choice(COLORS)), str(rng.choice(OBJECTS))
            distance = int(rng.integers(1, 5))
            steps = "step" if distance == 1 else "steps"
            probabilities = distribution(rng)
            snapshot = Snapshot(
                id=f"t{task}-s{step}",
                source="student",
                env_state={"env_id": f"BabyAI-{level}-v0", "seed": 1000 + task, "actions": []},
                level=level,
                mission=mission,
                observation=f"You see a {color} {obj} {distance} {steps} forward.",
                valid_actions=VALID_ACTIONS,
                student_action=str(rng.choice(VALID_ACTIONS)),
                student_distribution=probabilities,
                expert_action="go forward",
                step=step,
                episode_success=False,
            )
            u = snapshot_uncertainty(snapshot, "entropy")
            gain, elp = labels(snapshot, distance, color)
            rows.append(
                LabeledSnapshot.of(snapshot).model_copy(
                    update={
                        "U": u,
                        "U_method": "entropy",
                        "leverage": leverage(gain),
                        "cpt": cpt(elp),
                        "quadrant": quadrant_of(u, gain, u_threshold=0.6, l_threshold=0.0),
                    }
                )
            )
    return rows


def shuffled_labels(rows: list[LabeledSnapshot], seed: int) -> list[LabeledSnapshot]:
    """The same snapshots with the label sets permuted across rows: no signal left to learn."""
    order = np.random.default_rng(seed).permutation(len(rows))
    labels = ("U", "leverage", "cpt", "quadrant")
    return [
        row.model_copy(update={key: getattr(rows[j], key) for key in labels})
        for row, j in zip(rows, order, strict=True)
    ]


def unlabeled(row: LabeledSnapshot) -> Snapshot:
    """The snapshot alone, as Phase 0 writes it: no label field at all."""
    return Snapshot.model_validate(row.model_dump(include=set(Snapshot.model_fields)))


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These models are tiny: one thread is faster than two contending ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    rows = synthetic_rows()
    out = tmp_path_factory.mktemp("planted")
    run = RunLayout(out)
    result = train_predictor(rows, PARAMS, run.phase4, run.verdicts, resamples=RESAMPLES)
    return result, run.phase4.folder, rows


def test_recovers_a_planted_text_signal_and_every_target_holds(planted: Planted) -> None:
    result, out, _ = planted
    metrics = result.metrics
    for name in ("U_r2", "L_local_r2", "ELP_net_r2", "quadrant_accuracy"):
        assert metrics[name].value > 0.9 and metrics[name].n == 300
        assert metrics[name].low <= metrics[name].value <= metrics[name].high
    assert metrics["quadrant_accuracy"].method == "wilson"
    assert metrics["L_local_r2"].method == "percentile bootstrap over 60 clusters (300 rows)"
    # ELP_net depends on color only, so ranking by U (entropy) cannot match the predictor.
    assert [(v.criterion, v.outcome) for v in result.verdicts] == [
        ("U_r2", "holds"),
        ("L_local_r2", "holds"),
        ("quadrant_accuracy", "holds"),
        ("ndcg@5_predictor_minus_entropy", "holds"),
        ("ndcg@10_predictor_minus_entropy", "holds"),
    ]
    assert result.verdicts[0].note.startswith("met by construction")
    gain = result.ranking.by_k["5"]["ndcg"]
    difference = gain["predictor"].value - gain["entropy"].value
    assert gain["predictor_minus_entropy"].value == pytest.approx(difference, abs=1e-5)
    assert PredictorResult.load(Phase4Layout(out).training_result) == result
    assert Verdicts.load(RunLayout(out.parent).verdicts).of("phase4") == result.verdicts


def test_learns_elp_net_from_the_students_distribution_and_l_from_level_and_step(
    tmp_path: Path,
) -> None:
    """The text carries nothing here: ELP_net is a non-monotone function of U, L_local of the
    level and the step. Only the cheap scalars and the level can explain them."""
    rows = synthetic_rows(labels=from_distribution_level_and_step)
    result = train_predictor(rows, PARAMS, Phase4Layout(tmp_path), resamples=RESAMPLES)
    elp, gain = result.metrics["ELP_net_r2"], result.metrics["L_local_r2"]
    assert elp.n == gain.n == 300
    assert elp.low > 0.6, elp
    assert gain.low > 0.6, gain
    outcomes = {verdict.criterion: verdict.outcome for verdict in result.verdicts}
    assert outcomes["ndcg@10_predictor_minus_entropy"] == "holds"


def test_every_reported_prediction_is_out_of_fold(planted: Planted) -> None:
    """Each fold's model trained and picked its epoch on tasks disjoint from the tasks it
    predicted; the folds hold every task out exactly once, and every labeled snapshot's
    reported prediction comes from the fold that held its task out."""
    result, out, rows = planted
    every_task = {row.task for row in rows}
    assert len(result.folds) == PARAMS.folds
    held_out = [set(fold.test) for fold in result.folds]
    assert sum(len(tasks) for tasks in held_out) == len(every_task) == 60
    assert set().union(*held_out) == every_task
    for fold in result.folds:
        train, validation, test = set(fold.train), set(fold.validation), set(fold.test)
        assert not train & test and not validation & test and not train & validation
        assert train | validation | test == every_task
        assert validation and len(test) == 12
        assert fold.snapshots == 5 * len(test)
    predictions = pd.read_csv(Phase4Layout(out).test_predictions)
    assert list(predictions["id"]) == [row.id for row in rows]
    for _, line in predictions.iterrows():
        task = (line["env_id"], int(line["seed"]))
        fold = result.folds[int(line["fold"])]
        assert task in set(fold.test) and task not in set(fold.train) | set(fold.validation)
    assert set(result.tasks) == every_task, "the saved predictor trains on every labeled task"


def test_labels_that_only_a_task_identity_explains_do_not_leak(tmp_path: Path) -> None:
    """Each task gets a random L_local and ELP_net and a word of its own in the mission. A
    model that saw the task memorizes it (in-sample R² high); out of fold, no model has seen
    it, so R² stays near zero or below."""
    rng = np.random.default_rng(5)
    rows = []
    for task, group in itertools.groupby(synthetic_rows(), key=lambda row: row.task):
        gain, elp = rng.uniform(-0.5, 0.5, 2).round(3)
        for row in group:
            rows.append(
                row.model_copy(
                    update={
                        "mission": f"go to task{task[1]}",
                        "leverage": leverage(float(gain)),
                        "cpt": cpt(float(elp)),
                    }
                )
            )
    result = train_predictor(rows, PARAMS, Phase4Layout(tmp_path), resamples=RESAMPLES)
    for name in ("L_local_r2", "ELP_net_r2"):
        assert result.metrics[name].value < 0.1, result.metrics[name]
    embedder = build_embedder(PARAMS.embedder, PARAMS.embedding_dim)
    values, quadrants = targets_of(rows)
    data = LabeledSet(rows, embedder.embed([text_of(row) for row in rows]), values, quadrants)
    everything = list(range(len(rows)))
    memorizer, _ = fit_predictor(embedder, data, everything, None, PARAMS.epochs, PARAMS)
    in_sample = memorizer.predict(rows)
    for column, name in enumerate(REGRESSION_TARGETS[1:], start=1):
        assert r_squared(values[:, column], in_sample[name].to_numpy()) > 0.8


def test_unlabeled_snapshots_are_scored_from_their_cheap_fields(planted: Planted) -> None:
    _, out, rows = planted
    predictor = Predictor.load(Phase4Layout(out).predictor_model)
    plain = [unlabeled(row) for row in rows[:20]]
    assert not any(isinstance(snapshot, LabeledSnapshot) for snapshot in plain)
    scored = predictor.predict(plain)
    assert list(scored["id"]) == [row.id for row in rows[:20]]
    pd.testing.assert_frame_equal(scored, predictor.predict(rows[:20]))
    other_level = plain[0].model_copy(update={"level": "OpenDoor", "step": 40})
    assert np.isfinite(predictor.predict([other_level])[list(REGRESSION_TARGETS)]).all(axis=None)


def test_cheap_features_read_the_recorded_distribution_level_and_step() -> None:
    row = synthetic_rows(n_tasks=1, per_task=1)[0]
    probabilities = sorted(row.student_distribution.values(), reverse=True)
    u, top1, margin, step = scalar_features(row)
    assert u == pytest.approx(snapshot_uncertainty(row, "entropy"), abs=1e-6)
    assert (top1, margin) == pytest.approx((probabilities[0], probabilities[0] - probabilities[1]))
    assert step == pytest.approx(math.log1p(row.step))
    assert len(SCALAR_FEATURES) == 4


def test_saved_predictor_is_the_final_fit_on_every_labeled_row(planted: Planted) -> None:
    """Reloading gives the same predictions as refitting on all rows for the folds' median
    epoch with the same seed; its quadrant probabilities sum to one."""
    result, out, rows = planted
    epochs = round(float(np.median([fold.fit.best_epoch for fold in result.folds])))
    assert result.final.best_epoch == epochs and len(result.final.history) == epochs
    assert result.final.best_validation_loss is None
    embedder = build_embedder(PARAMS.embedder, PARAMS.embedding_dim)
    values, quadrants = targets_of(rows)
    data = LabeledSet(rows, embedder.embed([text_of(row) for row in rows]), values, quadrants)
    refit, _ = fit_predictor(embedder, data, range(len(rows)), None, epochs, PARAMS)
    loaded = Predictor.load(Phase4Layout(out).predictor_model).predict(rows)
    pd.testing.assert_frame_equal(loaded, refit.predict(rows))
    probabilities = loaded[[f"p_{quadrant}" for quadrant in QUADRANTS]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_each_fold_keeps_its_lowest_validation_loss(planted: Planted) -> None:
    result, _, _ = planted
    for fold in result.folds:
        losses = [epoch["validation_loss"] for epoch in fold.fit.history]
        assert len(losses) == PARAMS.epochs
        assert fold.fit.best_epoch == 1 + int(np.argmin(losses))
        assert fold.fit.best_validation_loss == min(losses)


def test_same_seed_same_training(tmp_path: Path) -> None:
    rows = synthetic_rows(n_tasks=12)
    params = PARAMS.model_copy(update={"epochs": 3})
    first = train_predictor(rows, params, Phase4Layout(tmp_path / "first"), resamples=RESAMPLES)
    again = train_predictor(rows, params, Phase4Layout(tmp_path / "second"), resamples=RESAMPLES)
    assert again == first, "seeded folds, training and intervals"
    other = train_predictor(
        rows, params.model_copy(update={"seed": 1}), Phase4Layout(tmp_path / "other"), resamples=10
    )
    assert [fold.test for fold in other.folds] != [fold.test for fold in first.folds]


def test_shuffled_labels_score_no_better_than_chance(tmp_path: Path) -> None:
    rows = shuffled_labels(synthetic_rows(), seed=1)
    result = train_predictor(rows, PARAMS, Phase4Layout(tmp_path), resamples=RESAMPLES)
    metrics = result.metrics
    for name in REGRESSION_TARGETS:
        assert metrics[f"{name}_r2"].value <= 0.05
    majority_rate = pd.Series([row.quadrant for row in rows]).value_counts(normalize=True).max()
    # 300 snapshots: one standard error of an accuracy near 0.3 is about 0.03.
    assert metrics["quadrant_accuracy"].value <= majority_rate + 0.06
    outcomes = {verdict.criterion: verdict.outcome for verdict in result.verdicts}
    assert outcomes["U_r2"] == outcomes["L_local_r2"] == outcomes["quadrant_accuracy"] == "fails"
    assert "holds" not in outcomes.values()


def test_folds_deal_every_task_once_in_near_equal_folds() -> None:
    tasks = [("BabyAI-GoToLocal-v0", seed) for seed in range(23)] * 2  # repeats count once
    folds = task_folds(tasks, folds=5, seed=3)
    assert sorted(len(fold) for fold in folds) == [4, 4, 5, 5, 5]
    assert sorted(task for fold in folds for task in fold) == sorted(set(tasks))
    assert task_folds(tasks, folds=5, seed=3) == folds
    assert task_folds(tasks, folds=5, seed=4) != folds
    assert [len(fold) for fold in task_folds(tasks[:4], folds=10, seed=0)] == [1, 1, 1, 1]


def test_too_few_tasks_is_a_clear_error() -> None:
    tasks = [("BabyAI-GoToLocal-v0", seed) for seed in range(3)]
    with pytest.raises(ValueError, match="at least 3 tasks"):
        task_folds(tasks[:2], folds=5, seed=0)
    with pytest.raises(ValueError, match="raise phase4.folds"):
        task_folds(tasks, folds=2, seed=0)
    assert len(task_folds(tasks, folds=3, seed=0)) == 3


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
    # Scored on the 60 rows that carry leverage; nulls read as zeros would drag it down.
    assert result.metrics["L_local_r2"].n == 60
    assert result.metrics["L_local_r2"].value > 0.6
    assert all(
        math.isfinite(epoch["train_loss"]) for fold in result.folds for epoch in fold.fit.history
    )
    assert result.counts == {
        "snapshots": 300,
        "tasks": 60,
        "U": 300,
        "L_local": 60,
        "ELP_net": 60,
        "quadrant": 60,
    }


def test_a_head_without_targets_is_not_measured_and_inconclusive(tmp_path: Path) -> None:
    rows = [row.model_copy(update={"leverage": None}) for row in synthetic_rows(n_tasks=20)]
    params = PARAMS.model_copy(update={"epochs": 3})
    result = train_predictor(rows, params, Phase4Layout(tmp_path), resamples=RESAMPLES)
    r2 = result.metrics["L_local_r2"]
    assert (r2.value, r2.low, r2.high, r2.n) == (None, None, None, 0)
    [verdict] = [v for v in result.verdicts if v.criterion == "L_local_r2"]
    assert (verdict.outcome, verdict.note) == ("inconclusive", "not measured")


def test_real_babyai_snapshots_train_and_unlabeled_ones_of_a_new_level_score(
    student: Student, tmp_path: Path
) -> None:
    """Real states and distributions of the tiny student: the predictor trains on labeled
    ones and scores plain snapshots of a level it never saw."""
    tasks = [("GoToLocal", seed) for seed in (2, 3, 4, 5, 6, 10)] + [
        ("PickupLoc", 2),
        ("PickupLoc", 3),
    ]
    rows = labeled_rows(student, tasks, per_task=2)
    params = PARAMS.model_copy(update={"epochs": 3, "folds": 4})
    result = train_predictor(rows, params, Phase4Layout(tmp_path), resamples=50)
    assert result.counts["snapshots"] == 16 and result.counts["tasks"] == 8
    assert len(result.folds) == 4
    fresh = expert_snapshots(student, bot_states("GoToObj", 0, 2))
    scored = Predictor.load(Phase4Layout(tmp_path).predictor_model).predict(fresh)
    assert list(scored["id"]) == [snapshot.id for snapshot in fresh]
    assert np.isfinite(scored[list(REGRESSION_TARGETS)].to_numpy()).all()
    assert set(scored["quadrant"]) <= set(QUADRANTS)


def test_minilm_embedder_trains_and_reloads_from_its_package(tmp_path: Path) -> None:
    rows = synthetic_rows(n_tasks=10)
    params = PARAMS.model_copy(update={"embedder": "minilm", "epochs": 2})
    result = train_predictor(rows, params, Phase4Layout(tmp_path), resamples=RESAMPLES)
    assert result.embedder == {"kind": "minilm", "dim": 4 * 384}
    predictor = Predictor.load(Phase4Layout(tmp_path).predictor_model)
    features = predictor.features(rows).numpy()
    assert features.shape == (50, 4 * 384 + len(SCALAR_FEATURES) + len(LEVELS))
    assert np.allclose(np.linalg.norm(features[:, : 4 * 384], axis=1), 1.0, atol=1e-5)
    again = predictor.predict([unlabeled(row) for row in rows])
    assert np.array_equal(again["U"].to_numpy(), predictor.predict(rows)["U"].to_numpy())
