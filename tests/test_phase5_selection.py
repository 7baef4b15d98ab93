"""Phase 5: each method picks what it claims from an unlabeled pool, the label-buying methods
buy exactly their candidates' labels and count the cost, every method trains on exactly K
snapshots, and a whole selection experiment on a tiny student, from a run folder whose pool
snapshots carry no label field, trains, evaluates and summarizes every method."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from labeled_rows import labeled_rows

from teachable.measure.verdicts import uninformative
from teachable.models.conditions import teacher_request
from teachable.models.instrument import Instrument
from teachable.models.labeling import measure, snapshot_uncertainty
from teachable.models.selection import SELECTORS, Pool, Selector, learnability, select, selector
from teachable.models.student import Student
from teachable.models.teachers import BotTeacher
from teachable.models.workers import LocalWorkers
from teachable.parameters import Parameters, Phase1Parameters, Phase5Parameters
from teachable.phases.phase0_warmup import save_preparation
from teachable.phases.phase4_predictor import train_predictor
from teachable.phases.phase5_selection import (
    SelectionReport,
    buy_labels,
    candidate_draw,
    plan_selections,
    run_selection,
    selection_verdicts,
)
from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot, save_labeled
from teachable.records.quadrants import Thresholds, save_thresholds
from teachable.records.selection import SelectionSummary
from teachable.records.snapshot import Snapshot, save_snapshots
from teachable.records.store import read_json, read_jsonl, write_jsonl
from teachable.records.training_summary import BASE
from teachable.records.verdicts import Verdicts
from teachable.reports.verdicts import verdict_frame
from teachable.vocabulary import SELECTION_METHODS
from teachable.world.splits import split_snapshots

TASKS = [("GoToLocal", seed) for seed in (2, 3, 4, 5, 6, 10)] + [("PickupLoc", 2), ("PickupLoc", 3)]
# Scores of eight snapshots, chosen so that every ranking method picks a different top 3, with
# ties that only the snapshot id can break.
U = [0.1, 0.9, 0.5, 0.9, 0.3, 0.7, 0.2, 0.6]
LEARNABILITY = [0.25, 0.0, 0.0, 0.24, 0.09, 0.25, 0.16, 0.09]
ELP_NET = [0.0, 0.2, 0.4, -0.2, 0.6, 0.1, 0.5, 0.3]
PREDICTED = [0.9, 0.1, 0.0, 0.3, 0.2, 0.8, 0.5, 0.4]
PHASE1 = {"n_rollouts": 2, "n_per_condition": 2, "max_steps": 3, "batch_snapshots": 4}


def unlabeled(row: LabeledSnapshot) -> Snapshot:
    """The snapshot as Phase 0 recorded it: no label field at all."""
    return Snapshot.model_validate(row.model_dump(include=set(Snapshot.model_fields)))


@pytest.fixture(scope="module")
def rows(student) -> list[LabeledSnapshot]:
    """Two real snapshots of each of eight tasks, labeled by hand."""
    return labeled_rows(student, TASKS, per_task=2)


@pytest.fixture(scope="module")
def eight(rows) -> list[Snapshot]:
    """Eight unlabeled snapshots, scored by the lists above."""
    return [unlabeled(row) for row in rows[:8]]


def scores_of(rows: list[Snapshot], values: list[float]) -> dict[str, float]:
    return {row.id: value for row, value in zip(rows, values, strict=True)}


def expected(rows: list[Snapshot], indices: list[int]) -> list[str]:
    return [rows[index].id for index in indices]


def first_by_id(rows: list[Snapshot], a: int, b: int) -> list[int]:
    """Two tied rows in the order the tie-break puts them: the smaller id first."""
    return [a, b] if rows[a].id < rows[b].id else [b, a]


# --- what each method picks --------------------------------------------------------------------


def test_each_ranking_method_picks_the_top_k_of_its_own_score(eight):
    lists = {"entropy": U, "learnability": LEARNABILITY, "oracle": ELP_NET, "predictor": PREDICTED}
    picks = {
        method: [row.id for row in select(method, eight, 3, scores_of(eight, values))]
        for method, values in lists.items()
    }
    assert picks["entropy"] == expected(eight, [*first_by_id(eight, 1, 3), 5])  # U .9 .9 .7
    assert picks["learnability"] == expected(eight, [*first_by_id(eight, 0, 5), 3])  # .25 .25 .24
    assert picks["oracle"] == expected(eight, [4, 6, 2])  # ELP_net .6 .5 .4
    assert picks["predictor"] == expected(eight, [0, 5, 6])  # predicted .9 .8 .5
    assert len({tuple(sorted(ids)) for ids in picks.values()}) == 4


def test_entropy_reads_u_from_the_recorded_distribution(eight):
    scores = selector("entropy").scores(Pool(eight, "margin", Path("no predictor")), {})
    assert scores == {row.id: snapshot_uncertainty(row, "margin") for row in eight}
    assert len(set(scores.values())) > 1


def test_the_picks_do_not_depend_on_the_order_of_the_rows(eight):
    scores = scores_of(eight, PREDICTED)
    shuffled = [eight[index] for index in (5, 2, 7, 0, 3, 6, 1, 4)]
    for method in SELECTION_METHODS:
        forward = select(method, eight, 4, scores, seed=3)
        assert select(method, shuffled, 4, scores, seed=3) == forward


def test_random_picks_k_distinct_pool_snapshots_by_its_seed(rows):
    pool = [unlabeled(row) for row in rows]
    ids = {row.id for row in pool}
    draws = {seed: [row.id for row in select("random", pool, 5, seed=seed)] for seed in (0, 1)}
    for drawn in draws.values():
        assert len(drawn) == len(set(drawn)) == 5
        assert set(drawn) <= ids
    assert draws[0] != draws[1]
    assert [row.id for row in select("random", pool, 5, seed=0)] == draws[0]


def test_bad_selections_are_clear_errors(eight):
    with pytest.raises(ValueError, match="predictor method needs its scores"):
        select("predictor", eight, 2)
    partial = {eight[0].id: 0.5}
    with pytest.raises(ValueError, match="no score for snapshot"):
        select("predictor", eight, 2, partial)
    with pytest.raises(ValueError, match="cannot select 9 of 8"):
        select("oracle", eight, 9, scores_of(eight, ELP_NET))


def test_every_method_gets_exactly_k_and_k_shrinks_to_a_small_pool_or_candidate_set(rows):
    pool = [unlabeled(row) for row in rows[:7]]
    candidates = candidate_draw(pool, 5, seed=0)
    assert len(candidates) == 5 and {row.id for row in candidates} <= {row.id for row in pool}
    assert candidate_draw(pool, 5, seed=0) == candidates
    assert candidate_draw(pool, None, seed=0) == sorted(pool, key=lambda row: row.id)
    scores = {
        "entropy": scores_of(pool, U[:7]),
        "predictor": scores_of(pool, PREDICTED[:7]),
        "oracle": scores_of(candidates, ELP_NET[:5]),
        "learnability": scores_of(candidates, LEARNABILITY[:5]),
    }
    for budget, methods, k in (
        (3, list(SELECTION_METHODS), 3),
        (6, list(SELECTION_METHODS), 5),  # the candidates bound K for every method
        (6, ["random", "entropy", "predictor"], 6),
        (50, ["random", "entropy"], 7),
    ):
        phase5 = Phase5Parameters(budget=budget, methods=methods, seeds=[0, 4])
        plans = plan_selections(phase5, pool, candidates, scores, 0)
        assert list(plans) == methods
        for method, seeds in plans.items():
            assert len(seeds) == 2
            allowed = candidates if method in ("oracle", "learnability") else pool
            for picked in seeds:
                assert len(picked) == len({row.id for row in picked}) == k
                assert {row.id for row in picked} <= {row.id for row in allowed}


def test_every_selection_method_of_the_vocabulary_is_registered():
    assert list(SELECTORS) == list(SELECTION_METHODS)
    assert all(selector(name).name == name for name in SELECTION_METHODS)
    buyers = [name for name in SELECTION_METHODS if selector(name).buys_labels]
    assert buyers == ["oracle", "learnability"]
    with pytest.raises(ValueError, match="unknown selection method 'gut'"):
        selector("gut")


class Lowest(Selector):
    """A method registered by the test alone: the K with the lowest U."""

    name = "lowest"

    def scores(self, pool, labels):
        return {row.id: -snapshot_uncertainty(row, pool.U_method) for row in pool.snapshots}


def test_a_newly_registered_method_is_picked_up_by_phase5(eight, monkeypatch):
    monkeypatch.setitem(SELECTORS, Lowest.name, Lowest())
    pool = Pool(eight, "entropy", Path("no predictor"))
    scores = {name: selector(name).scores(pool, {}) for name in ("entropy", "lowest")}
    phase5 = Phase5Parameters(budget=3, methods=["entropy"], seeds=[0])
    phase5 = phase5.model_copy(update={"methods": ["entropy", "lowest"]})
    picks = plan_selections(phase5, eight, eight, scores, 0)
    by_u = sorted(eight, key=lambda row: (-snapshot_uncertainty(row, "entropy"), row.id))
    assert picks["entropy"] == [by_u[:3]]
    lowest = sorted(eight, key=lambda row: (snapshot_uncertainty(row, "entropy"), row.id))
    assert picks["lowest"] == [lowest[:3]]


def test_picks_stay_in_the_pool_for_any_training_seeds(rows):
    split = split_snapshots([unlabeled(row) for row in rows], 0.25, 0.5, 0, ["expert"])
    pool = split.rows("pool", [unlabeled(row) for row in rows])
    scores = {"entropy": scores_of(pool, [0.5] * len(pool))}
    for seeds in ([0, 1, 2], [7, 11], [123]):
        phase5 = Phase5Parameters(budget=3, methods=["random", "entropy"], seeds=seeds)
        for method, picks in plan_selections(phase5, pool, pool, scores, 5).items():
            for picked in picks:
                split.check_within("pool", picked, method)


# --- buying labels -----------------------------------------------------------------------------


def test_the_oracle_buys_phase1s_cpt_for_its_candidates_and_counts_the_cost(
    rows, student, tmp_path
):
    phase1 = Phase1Parameters(**PHASE1, temperature=5.0)
    candidates = [unlabeled(row) for row in rows[:3]]
    teacher = BotTeacher()
    log = tmp_path / "oracle" / "candidate_labels.jsonl"
    workers = LocalWorkers(student)
    labels, cost = buy_labels("oracle", candidates, phase1, 1, workers, teacher, log)
    answers = teacher.advise([teacher_request(row) for row in candidates])
    reference = measure(student, candidates, answers, phase1, 1, leverage=False, cpt=True)
    for row, measured in zip(candidates, reference, strict=True):
        assert labels[row.id].cpt == measured.cpt  # Phase 1's streams: the same label
        assert labels[row.id].score == measured.cpt.ELP_net
        assert labels[row.id].rollouts == 5 * phase1.n_per_condition  # base, placebo, 3 formats
    assert (cost.candidates, cost.bought_now, cost.teacher_answers) == (3, 3, 3)
    assert cost.rollouts == 3 * 5 * phase1.n_per_condition and cost.seconds > 0
    again, cost_again = buy_labels("oracle", candidates, phase1, 1, workers, teacher, log)
    assert again == labels and cost_again.bought_now == 0
    assert cost_again.rollouts == cost.rollouts, "the cost of labels bought earlier still counts"
    other = phase1.model_copy(update={"n_per_condition": 3})
    _, fresh = buy_labels("oracle", candidates[:1], other, 1, workers, teacher, log)
    assert (fresh.bought_now, fresh.rollouts) == (1, 15), "other parameters buy anew"


def test_learnability_buys_only_the_students_own_rollouts(rows, student, tmp_path):
    phase1 = Phase1Parameters(**PHASE1, temperature=5.0)
    candidates = [unlabeled(row) for row in rows[3:5]]
    log = tmp_path / "candidate_labels.jsonl"
    workers = LocalWorkers(student)
    labels, cost = buy_labels("learnability", candidates, phase1, 1, workers, BotTeacher(), log)
    for label in labels.values():
        assert label.cpt is None and 0.0 <= label.p_student <= 1.0
        assert label.score == learnability(label.p_student)
        assert (label.rollouts, label.teacher_answers) == (phase1.n_rollouts, 0)
    assert (cost.rollouts, cost.teacher_answers) == (2 * phase1.n_rollouts, 0)
    assert [row["id"] for row in read_jsonl(log)] == [row.id for row in candidates]


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
    tie = {"predictor-entropy": interval(0.0, 0.0)}  # zero width: no information, no result
    assert selection_verdicts({}, tie)[0].outcome == "inconclusive"


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
            "phase1": {**PHASE1, "snapshots": "expert"},
            "phase3": {
                "n_tasks": 2,
                "n_snapshots_per_quadrant": 1,
                "max_steps": 3,
                "retention_tasks": 1,
                "retention_levels": ["GoToObj"],
            },
            "phase4": {"embedding_dim": 32, "hidden": 8, "epochs": 2, "k": [2]},
            "evaluation": {"episodes_per_item": 2, "bootstrap_resamples": 200},
            "phase5": {
                "budget": 3,
                "candidates": 4,
                "seeds": [0, 1],
                "dose": {"learning_rate": 5e-4, "steps": 1, "anchor_weight": 5.0},
            },
        }
    )


def select_all(params: Parameters, student: Student, instrument: Instrument) -> SelectionReport:
    """Phase 5 on a prepared run folder, as the notebook runs it, with the shared instrument
    under Phase 5's pinned dose."""
    return run_selection(
        phase5=params.phase5,
        phase1=params.phase1,
        phase3=params.phase3,
        evaluation=params.evaluation,
        lora=params.lora,
        instrument=replace(instrument, doses={params.phase5.format: params.phase5.dose}),
        levels=params.env.levels,
        seed=params.run.seed,
        workers=LocalWorkers(student),
        teacher=BotTeacher(params.teacher),
        run=params.layout,
        progress=False,
    )


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, student, rows, instrument) -> Experiment:
    """Phase 0's snapshots (no labels), the split, the labeled and test parts as Phase 1
    leaves them, a predictor trained on the labeled part, then all of Phase 5."""
    params = tiny_parameters(tmp_path_factory.mktemp("runs"))
    run = params.layout
    save_preparation(run.phase0, params.student, {"skipped": "the tiny student is used as is"})
    snapshots = [unlabeled(row) for row in rows]
    save_snapshots(run.phase0.expert_snapshots, snapshots)
    split = split_snapshots(snapshots, 0.25, 0.375, params.run.seed, ["expert"])
    split.save(run.split)
    labeled = split.rows("labeled", rows)
    save_labeled(run.phase1, labeled)
    write_jsonl(
        run.phase1.test_labels, [r.model_dump(mode="json") for r in split.rows("test", rows)]
    )
    save_thresholds(run.phase1.thresholds_auto, Thresholds(U=0.5, L=0.0, source="auto"))
    train_predictor(labeled, params.phase4, run.phase4)
    report = select_all(params, student, instrument)
    return Experiment(params, run.phase5.folder, split.parts["pool"].snapshots, report)


@pytest.mark.slow
def test_the_pool_holds_no_label_and_nothing_labeled_before_phase5(experiment):
    run = experiment.params.layout
    for row in read_json(run.phase0.expert_snapshots):
        assert not {"U", "leverage", "cpt", "teacher", "quadrant"} & set(row)
    labeled = {row["id"] for row in read_json(run.phase1.labeled_json)}
    tested = {row["id"] for row in read_jsonl(run.phase1.test_labels)}
    assert experiment.pool_ids and not set(experiment.pool_ids) & (labeled | tested)


@pytest.mark.slow
def test_every_method_trains_exactly_k_pool_snapshots_and_is_evaluated(experiment):
    k = experiment.params.phase5.budget
    for method in SELECTION_METHODS:
        folder = experiment.out_dir / method
        summary = read_json(folder / "training_summary.json")
        assert summary["lora"]["r"] == 2 and summary["lora"]["batch_size"] == 2
        assert (folder / summary["split"]).resolve() == experiment.params.layout.split
        runs = summary["runs"]
        assert [(run["cell"], run["seed"]) for run in runs] == [(method, 0), (method, 1)]
        for run in runs:
            assert run["quadrant"] == method and run["format"] == "demo"
            assert run["status"] == "trained" and len(run["losses"]) == run["steps"] == 1
            assert run["dose"] == experiment.params.phase5.dose.model_dump(mode="json")
            assert run["probe"]["n_probes"] > 0 and run["probe"]["n_trained"] == k
            assert run["n_train"] == len(run["snapshots"]) == len(set(run["snapshots"])) == k
            assert set(run["snapshots"]) <= set(experiment.pool_ids)
            assert (folder / run["adapter"] / "adapter_config.json").is_file()
        overall = pd.read_csv(folder / "eval" / "overall_task_results.csv")
        assert set(overall["model"]) >= {BASE, *(run["id"] for run in runs)}


@pytest.mark.slow
def test_the_oracle_trains_on_its_candidates_top_bought_elp_net(experiment):
    phase5, phase1 = experiment.params.phase5, experiment.params.phase1
    bought = read_jsonl(experiment.out_dir / "oracle" / "candidate_labels.jsonl")
    assert len(bought) == phase5.candidates and {r["id"] for r in bought} <= set(
        experiment.pool_ids
    )
    best = sorted(bought, key=lambda r: (-r["score"], r["id"]))[: phase5.budget]
    summary = read_json(experiment.out_dir / "oracle" / "training_summary.json")
    assert summary["runs"][0]["snapshots"] == [r["id"] for r in best]
    cost = SelectionSummary.load(experiment.out_dir / "selection_summary.json").labeling_cost
    assert cost["oracle"].rollouts == phase5.candidates * 5 * phase1.n_per_condition
    assert cost["oracle"].teacher_answers == phase5.candidates
    assert cost["learnability"].rollouts == phase5.candidates * phase1.n_rollouts
    assert set(cost) == {"oracle", "learnability"}, "the other methods buy no label"


@pytest.mark.slow
def test_the_summary_holds_gains_retention_and_verdicts_from_the_evaluations(experiment):
    summary = SelectionSummary.load(experiment.out_dir / "selection_summary.json")
    params = experiment.params
    assert summary.k == 3 and summary.pool_size == len(experiment.pool_ids)
    assert summary.candidates == params.phase5.candidates and not summary.k_reduced
    assert list(summary.methods) == list(SELECTION_METHODS)
    episodes = params.phase3.n_tasks * params.evaluation.episodes_per_item
    for method, result in summary.methods.items():
        assert result.runs == [f"{method}_seed0", f"{method}_seed1"]
        assert result.gain.n == len(params.phase5.seeds) * episodes
        assert result.gain.low <= result.gain.value <= result.gain.high
        assert result.gain.value == pytest.approx(np.mean(list(result.per_seed_gain.values())))
        assert result.retention_drop.low <= result.retention_drop.value
        assert result.success.n == len(params.phase5.seeds) * episodes
    assert summary.methods["oracle"].picked.oracle_overlap == 1.0
    assert summary.methods["oracle"].picked.n_measured == 2 * params.phase5.budget
    assert set(summary.differences) == {"predictor-entropy", "entropy-random"}
    verdicts = {v.criterion: v for v in summary.verdicts}
    difference = summary.differences["predictor-entropy"]
    assert verdicts["predictor_beats_entropy"].estimate == difference
    assert verdicts["predictor_beats_entropy"].outcome == (
        "inconclusive"
        if uninformative(difference)  # zero width, or too few discordant pairs
        else "holds"
        if difference.low > 0
        else "fails"
        if difference.high <= 0
        else "inconclusive"
    )
    assert Verdicts.load(params.layout.verdicts).of("phase5") == summary.verdicts
    table = verdict_frame(summary.verdicts)
    assert table["criterion"].tolist() == list(verdicts)


@pytest.mark.slow
def test_the_base_plays_once_and_a_rerun_trains_plays_and_buys_nothing(
    experiment, student, instrument
):
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
    again = select_all(experiment.params, student, instrument)
    assert [path.stat().st_mtime_ns for path in adapters] == stamps
    assert all(not e.record["evaluated_now"] for e in again.evaluations.values())
    assert {cost.bought_now for cost in again.summary.labeling_cost.values()} == {0}
