"""Phase 5: each method picks what it claims, every method trains on exactly K snapshots, and
a whole selection experiment on a tiny student trains, evaluates and summarizes every method."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from labeled_rows import labeled_rows

from teachable.measure.intervals import Estimate
from teachable.models.student import Student
from teachable.parameters import (
    SELECTION_METHODS,
    Parameters,
    Phase5Parameters,
    StudentParameters,
)
from teachable.phases.phase0_warmup import save_preparation
from teachable.phases.phase4_predictor import train_predictor
from teachable.phases.phase5_selection import (
    SelectionReport,
    SelectionSummary,
    labeled_pool,
    plan_selections,
    run_selection,
    select,
    selection_verdicts,
)
from teachable.records.labeled import CPT, LabeledSnapshot, Leverage, save_labeled
from teachable.records.quadrants import Thresholds, save_thresholds
from teachable.records.store import read_json, read_jsonl
from teachable.records.training_summary import BASE
from teachable.records.verdicts import Verdicts
from teachable.reports.verdicts import verdict_frame
from teachable.world.splits import save_split, split_by_task

TASKS = [("GoToLocal", seed) for seed in (2, 3, 4, 5, 6, 10)] + [("PickupLoc", 2), ("PickupLoc", 3)]
# Labels of eight snapshots, chosen so that every ranking method picks a different top 3, with
# ties that only the snapshot id can break.
U = [0.1, 0.9, 0.5, 0.9, 0.3, 0.7, 0.2, 0.6]
P_STUDENT = [0.5, 0.0, 1.0, 0.4, 0.9, 0.5, 0.2, 0.1]  # p(1 - p): .25 .0 .0 .24 .09 .25 .16 .09
ELP_NET = [0.0, 0.2, 0.4, -0.2, 0.6, 0.1, 0.5, 0.3]
PREDICTED = [0.9, 0.1, 0.0, 0.3, 0.2, 0.8, 0.5, 0.4]


def relabel(row: LabeledSnapshot, u: float, p_student: float, elp: float) -> LabeledSnapshot:
    """The row with the given U, student success rate and ELP_net (through its demo patch)."""
    cpt = CPT(
        p={"base": 0.0, "placebo": 0.0, "demo": elp, "hint": 0.0, "contrast": 0.0},
        ELP={"demo": elp, "hint": 0.0, "contrast": 0.0},
        ELP_net=elp,
        route_net="demo",
        n_per_condition=2,
    )
    leverage = Leverage(L_local=0.0, p_student=p_student, p_forced=p_student, n=2)
    return row.model_copy(update={"U": u, "leverage": leverage, "cpt": cpt})


@pytest.fixture(scope="module")
def student() -> Student:
    return Student.load(StudentParameters(model="tiny", batch_size=16))


@pytest.fixture(scope="module")
def rows(student) -> list[LabeledSnapshot]:
    """Two real snapshots of each of eight tasks, labeled by hand with a seeded draw."""
    rng = np.random.default_rng(7)
    rows = labeled_rows(student, TASKS, per_task=2)
    return [relabel(row, *np.round(rng.uniform([0, 0, -1], [1, 1, 1]), 3).tolist()) for row in rows]


@pytest.fixture(scope="module")
def eight(rows) -> list[LabeledSnapshot]:
    """Eight snapshots with the hand-set labels above."""
    labels = zip(U, P_STUDENT, ELP_NET, strict=True)
    return [relabel(row, *values) for row, values in zip(rows[:8], labels, strict=True)]


def expected(rows: list[LabeledSnapshot], indices: list[int]) -> list[str]:
    return [rows[index].id for index in indices]


def first_by_id(rows: list[LabeledSnapshot], a: int, b: int) -> list[int]:
    """Two tied rows in the order the tie-break puts them: the smaller id first."""
    return [a, b] if rows[a].id < rows[b].id else [b, a]


# --- what each method picks --------------------------------------------------------------------


def test_each_ranking_method_picks_the_top_k_of_its_own_score(eight):
    predictions = pd.DataFrame({"id": [row.id for row in eight], "ELP_net": PREDICTED})
    picks = {
        method: [row.id for row in select(method, eight, 3, predictions)]
        for method in ("entropy", "learnability", "oracle", "predictor")
    }
    assert picks["entropy"] == expected(eight, [*first_by_id(eight, 1, 3), 5])  # U .9 .9 .7
    assert picks["learnability"] == expected(eight, [*first_by_id(eight, 0, 5), 3])  # .25 .25 .24
    assert picks["oracle"] == expected(eight, [4, 6, 2])  # ELP_net .6 .5 .4
    assert picks["predictor"] == expected(eight, [0, 5, 6])  # predicted .9 .8 .5
    assert len({tuple(sorted(ids)) for ids in picks.values()}) == 4


def test_the_picks_do_not_depend_on_the_order_of_the_rows(eight):
    predictions = pd.DataFrame({"id": [row.id for row in eight], "ELP_net": PREDICTED})
    shuffled = [eight[index] for index in (5, 2, 7, 0, 3, 6, 1, 4)]
    for method in SELECTION_METHODS:
        forward = select(method, eight, 4, predictions, seed=3)
        assert select(method, shuffled, 4, predictions, seed=3) == forward


def test_random_picks_k_distinct_pool_snapshots_by_its_seed(rows):
    ids = {row.id for row in rows}
    draws = {seed: [row.id for row in select("random", rows, 5, seed=seed)] for seed in (0, 1)}
    for drawn in draws.values():
        assert len(drawn) == len(set(drawn)) == 5
        assert set(drawn) <= ids
    assert draws[0] != draws[1]
    assert [row.id for row in select("random", rows, 5, seed=0)] == draws[0]


def test_bad_selections_are_clear_errors(eight):
    with pytest.raises(ValueError, match="needs the predictor's scores"):
        select("predictor", eight, 2)
    partial = pd.DataFrame({"id": [eight[0].id], "ELP_net": [0.5]})
    with pytest.raises(ValueError, match=f"no score for snapshot.*{eight[1].id}"):
        select("predictor", eight, 2, partial)
    unlabeled = [eight[0].model_copy(update={"U": None}), *eight[1:]]
    with pytest.raises(ValueError, match=f"entropy method has no score.*{eight[0].id}"):
        select("entropy", unlabeled, 2)
    with pytest.raises(ValueError, match="cannot select 9 of 8"):
        select("oracle", eight, 9)


def test_every_method_gets_exactly_k_and_k_shrinks_to_a_small_pool(eight):
    predictions = pd.DataFrame({"id": [row.id for row in eight], "ELP_net": PREDICTED})
    unlabeled = eight[0].model_copy(update={"cpt": None})
    pool, left_out = labeled_pool([unlabeled, *eight[1:]])
    assert left_out == [unlabeled.id] and len(pool) == 7
    for budget, k in ((3, 3), (50, 7)):
        phase5 = Phase5Parameters(budget=budget, seeds=[0, 4])
        plans = plan_selections(phase5, pool, 0, predictions)
        assert list(plans) == list(SELECTION_METHODS)
        for method, runs in plans.items():
            assert [run.id for run in runs] == [f"{method}_seed0", f"{method}_seed4"]
            for run in runs:
                assert len(run.rows) == len({row.id for row in run.rows}) == k
                assert {row.id for row in run.rows} <= {row.id for row in pool}


# --- the summary's arithmetic ------------------------------------------------------------------


def interval(low: float, high: float) -> Estimate:
    return Estimate(value=(low + high) / 2, low=low, high=high, n=40)


def test_verdicts_read_the_intervals_of_differences_and_drops():
    methods = {
        "random": SimpleNamespace(retention_drop=interval(-0.05, 0.04)),
        "entropy": SimpleNamespace(retention_drop=interval(0.05, 0.2)),
        "predictor": SimpleNamespace(retention_drop=interval(0.15, 0.3)),
    }
    differences = {"predictor-entropy": interval(0.02, 0.2), "entropy-random": interval(-0.1, 0.1)}
    outcomes = {v.criterion: v.outcome for v in selection_verdicts(methods, differences)}
    assert outcomes == {
        "predictor_beats_entropy": "holds",
        "entropy_beats_random": "inconclusive",
        "retention_random": "holds",
        "retention_entropy": "inconclusive",
        "retention_predictor": "fails",
    }
    tie = {"predictor-entropy": interval(0.0, 0.0)}
    assert selection_verdicts({}, tie)[0].outcome == "fails"


# --- a whole experiment ------------------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    params: Parameters
    out_dir: Path
    pool_ids: list[str]
    first: SelectionReport


def tiny_parameters(root: Path) -> Parameters:
    return Parameters.model_validate(
        {
            "run": {"seed": 0, "output_root": str(root), "name": "selection"},
            "student": {"model": "tiny", "batch_size": 32},
            "env": {"levels": ["GoToLocal", "PickupLoc"]},
            "lora": {"r": 2, "alpha": 4, "steps": 3, "batch_size": 2},
            "phase3": {
                "n_tasks": 2,
                "n_snapshots_per_quadrant": 1,
                "max_steps": 3,
                "retention_tasks": 1,
                "retention_levels": ["GoToObj"],
            },
            "phase4": {"embedding_dim": 32, "hidden": 8, "epochs": 2, "k": [2]},
            "evaluation": {"episodes_per_item": 2, "bootstrap_resamples": 200},
            "phase5": {"budget": 3, "seeds": [0, 1], "steps": 1},
        }
    )


def select_all(params: Parameters, student: Student) -> SelectionReport:
    """Phase 5 on a prepared run folder, as the notebook runs it."""
    return run_selection(
        params.phase5,
        params.phase3,
        params.evaluation,
        params.lora,
        params.env.levels,
        params.run.seed,
        student,
        params.layout,
        progress=False,
    )


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, student, rows) -> Experiment:
    """Phases 0-2 and 4 written for the tiny student, then all of Phase 5."""
    params = tiny_parameters(tmp_path_factory.mktemp("runs"))
    run = params.layout
    save_preparation(run.phase0, params.student, {"skipped": "the tiny student is used as is"})
    save_thresholds(run.phase1.thresholds_auto, Thresholds(U=0.5, L=0.0, source="auto"))
    save_labeled(run.phase1, rows)
    split = split_by_task(rows, 0.25, seed=0)
    save_split(run.phase2.split, split, 0.25, 0)
    train_predictor(rows, params.phase4, run.phase4)
    report = select_all(params, student)
    return Experiment(
        params, run.phase5.folder, [row.id for row in labeled_pool(split.train)[0]], report
    )


def test_every_method_trains_exactly_k_train_snapshots_and_is_evaluated(experiment):
    k = experiment.params.phase5.budget
    for method in SELECTION_METHODS:
        folder = experiment.out_dir / method
        summary = read_json(folder / "training_summary.json")
        assert summary["lora"]["steps"] == 1 and summary["lora"]["r"] == 2
        assert (folder / summary["split"]).resolve() == (
            experiment.params.run_dir / "phase2" / "split.json"
        )
        runs = summary["runs"]
        assert [(run["cell"], run["seed"]) for run in runs] == [(method, 0), (method, 1)]
        for run in runs:
            assert run["quadrant"] == method and run["format"] == "demo"
            assert run["status"] == "trained" and len(run["losses"]) == 1
            assert run["n_train"] == len(run["snapshots"]) == len(set(run["snapshots"])) == k
            assert set(run["snapshots"]) <= set(experiment.pool_ids)
            assert (folder / run["adapter"] / "adapter_config.json").is_file()
        overall = pd.read_csv(folder / "eval" / "overall_task_results.csv")
        assert set(overall["model"]) >= {BASE, *(run["id"] for run in runs)}


def test_the_oracle_trains_on_the_pools_top_elp_net(experiment, rows):
    by_id = {row.id: row for row in rows}
    pool = sorted(experiment.pool_ids, key=lambda i: (-by_id[i].cpt.ELP_net, i))
    summary = read_json(experiment.out_dir / "oracle" / "training_summary.json")
    assert summary["runs"][0]["snapshots"] == pool[: experiment.params.phase5.budget]


def test_the_summary_holds_gains_retention_and_verdicts_from_the_evaluations(experiment):
    summary = SelectionSummary.load(experiment.out_dir / "selection_summary.json")
    params = experiment.params
    assert summary.k == 3 and summary.pool_size == len(experiment.pool_ids)
    assert not summary.k_reduced
    assert list(summary.methods) == list(SELECTION_METHODS)
    episodes = params.phase3.n_tasks * params.evaluation.episodes_per_item
    for method, result in summary.methods.items():
        assert result.runs == [f"{method}_seed0", f"{method}_seed1"]
        assert result.gain.n == len(params.phase5.seeds) * episodes
        assert result.gain.low <= result.gain.value <= result.gain.high
        assert result.gain.value == pytest.approx(np.mean(list(result.per_seed_gain.values())))
        assert result.retention_drop.low <= result.retention_drop.value
        assert result.success.n == len(params.phase5.seeds) * episodes
    assert set(summary.differences) == {"predictor-entropy", "entropy-random"}
    verdicts = {v.criterion: v for v in summary.verdicts}
    difference = summary.differences["predictor-entropy"]
    assert verdicts["predictor_beats_entropy"].estimate == difference
    assert verdicts["predictor_beats_entropy"].outcome == (
        "holds" if difference.low > 0 else "fails" if difference.high <= 0 else "inconclusive"
    )
    assert Verdicts.load(params.layout.verdicts).of("phase5") == summary.verdicts
    table = verdict_frame(summary.verdicts)
    assert table["criterion"].tolist() == list(verdicts)


def test_the_base_plays_once_and_a_rerun_trains_and_plays_nothing(experiment, student):
    played = {m: e.record["evaluated_now"] for m, e in experiment.first.evaluations.items()}
    assert played["random"] == [BASE, "random_seed0", "random_seed1"]
    for method in SELECTION_METHODS[1:]:
        assert played[method] == [f"{method}_seed0", f"{method}_seed1"]
    logs = [experiment.out_dir / m / "eval" / "model_episodes.jsonl" for m in SELECTION_METHODS]
    base_keys = {row["key"] for log in logs for row in read_jsonl(log) if row["model"] == BASE}
    assert len(base_keys) == 1
    adapters = sorted(experiment.out_dir.glob("*/*/adapter_model.safetensors"))
    assert len(adapters) == 2 * len(SELECTION_METHODS)
    stamps = [path.stat().st_mtime_ns for path in adapters]
    again = select_all(experiment.params, student)
    assert [path.stat().st_mtime_ns for path in adapters] == stamps
    assert all(not e.record["evaluated_now"] for e in again.evaluations.values())
