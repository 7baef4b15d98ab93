"""Phase 3 evaluation: held-out tasks stay unseen, the stuckness measures read scripted
episodes right, the tables compute what they claim, and a whole evaluation of real tiny LoRA
runs writes its five CSVs, fails early on a missing adapter, and resumes per model."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from teachable.models.lora import train_lora
from teachable.models.student import Student
from teachable.models.supervision import sft_examples
from teachable.parameters import LoraParameters, Parameters
from teachable.phases.phase0_snapshots import (
    ExpertTrajectory,
    expert_snapshots,
    sample_expert_states,
)
from teachable.phases.phase0_warmup import save_preparation
from teachable.phases.phase2_matrix import save_summary
from teachable.phases.phase3_evaluation import (
    AgentState,
    Evaluation,
    agent_trace,
    check_unseen,
    evaluate_runs,
    evaluation_items,
    has_loop,
    model_table,
    pareto_mask,
    per_quadrant_table,
    retention_table,
    steps_without_progress,
    transfer_matrix,
    transfer_summary,
)
from teachable.records.labeled import LabeledSnapshot, Leverage, load_labeled, save_labeled
from teachable.records.layout import EvaluationLayout, Phase2Layout, RunLayout
from teachable.records.quadrants import QUADRANTS, Thresholds, save_thresholds
from teachable.records.store import read_jsonl, write_jsonl
from teachable.records.training_summary import BASE, RunEntry
from teachable.world.splits import TaskSplit, load_split, save_split, split_by_task
from teachable.world.tasks import task_suite
from teachable.world.text_world import expert_trajectory

# U and L per quadrant, with thresholds U = 0.5 and L = 0: the labels are set by hand so that
# every task holds snapshots of every quadrant.
QUADRANT_LABELS = {
    "Q1_highU_highL": (0.9, 0.5),
    "Q2_highU_lowL": (0.9, -0.5),
    "Q3_lowU_lowL": (0.1, -0.5),
    "Q4_lowU_highL": (0.1, 0.5),
}
TRAINED = ("Q1_highU_highL_demo", "Q2_highU_lowL_demo", "baseline_all_demo")


def tiny_parameters(root: Path) -> Parameters:
    return Parameters.model_validate(
        {
            "run": {"seed": 3, "output_root": str(root), "name": "eval"},
            "student": {"model": "tiny", "batch_size": 32},
            "env": {"levels": ["GoToLocal", "PickupLoc"]},
            "phase3": {
                "n_tasks": 4,
                "n_snapshots_per_quadrant": 1,
                "max_steps": 4,
                "retention_tasks": 2,
                "retention_levels": ["GoToObj"],
            },
        }
    )


def labeled_rows(student: Student, params: Parameters) -> list[LabeledSnapshot]:
    """Real snapshots along bot trajectories of the expert tasks, labeled by hand."""
    trajectories = []
    for task in task_suite("expert", 6, params.env.levels, params.run.seed).tasks:
        actions, success = expert_trajectory(task, 64)
        trajectories.append(ExpertTrajectory(task, tuple(actions), success))
    rows = []
    for snapshot in expert_snapshots(student, sample_expert_states(trajectories, 1.0, seed=0)):
        u, leverage = QUADRANT_LABELS[QUADRANTS[snapshot.step % 4]]
        lever = Leverage(L_local=leverage, p_student=0.5, p_forced=0.5 + leverage, n=2)
        rows.append(
            LabeledSnapshot.of(snapshot).model_copy(
                update={"U": u, "U_method": "entropy", "leverage": lever}
            )
        )
    return rows


@dataclass(frozen=True)
class TinyRun:
    """A run folder with phases 0-2 done on the tiny student: labels, split, three real
    one-step LoRA adapters (two quadrant runs and a baseline) and one skipped run."""

    params: Parameters
    summary: Path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> TinyRun:
    params = tiny_parameters(tmp_path_factory.mktemp("runs"))
    run_dir = params.run_dir
    save_preparation(
        RunLayout(run_dir).phase0, params.student, {"skipped": "the tiny student is used as is"}
    )
    student = Student.load(params.student)
    save_labeled(RunLayout(run_dir).phase1, labeled_rows(student, params))
    save_thresholds(
        RunLayout(run_dir).phase1.thresholds_auto, Thresholds(U=0.5, L=0.0, source="auto")
    )
    phase2 = run_dir / "phase2"
    split = split_by_task(load_labeled(RunLayout(run_dir).phase1), 0.5, seed=0)
    save_split(phase2 / "split.json", split, 0.5, 0)
    lora = LoraParameters(r=2, alpha=4, steps=1, batch_size=2)
    entries = []
    for run_id in TRAINED:
        quadrant = "all" if run_id.startswith("baseline") else run_id.removesuffix("_demo")
        rows = [row for row in split.train if quadrant in ("all", row.quadrant)]
        trained = train_lora(student, sft_examples(rows, "demo"), lora, phase2 / run_id)
        entries.append(
            RunEntry(
                id=run_id,
                quadrant=quadrant,
                format="demo",
                n_train=len(rows),
                status="trained",
                adapter=run_id,
                losses=trained.losses,
            )
        )
    entries.append(
        RunEntry(
            id="Q3_lowU_lowL_hint",
            quadrant="Q3_lowU_lowL",
            format="hint",
            n_train=0,
            status="skipped",
            reason="too few train snapshots",
        )
    )
    save_summary(Phase2Layout(phase2), lora, phase2 / "split.json", entries)
    return TinyRun(params, phase2 / "training_summary.json")


def evaluate(tiny_run: TinyRun, trained: Phase2Layout, out_dir: Path) -> Evaluation:
    """Phase 3 over a training folder, as the notebook runs it."""
    params = tiny_run.params
    return evaluate_runs(
        trained,
        load_labeled(params.layout.phase1),
        params.phase3,
        params.env.levels,
        params.run.seed,
        Student.load(params.student),
        EvaluationLayout(out_dir),
        progress=False,
    )


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("phase3") / "v8"
    return evaluate(tiny_run, Phase2Layout(tiny_run.summary.parent), out_dir), out_dir


# --- held-out tasks ----------------------------------------------------------------------------


def test_heldout_tasks_never_overlap_training_tasks(tiny_run):
    params = tiny_run.params
    labeled = load_labeled(params.layout.phase1)
    split = load_split(tiny_run.summary.parent / "split.json", labeled)
    items = evaluation_items(params.phase3, params.env.levels, params.run.seed, split, labeled)
    heldout = {item.start.task for item in items if item.suite == "tasks"}
    retention = {item.start.task for item in items if item.suite == "retention"}
    assert len(heldout) == params.phase3.n_tasks
    trained = set(split.train_tasks) | set(split.test_tasks) | {row.task for row in labeled}
    others = {
        task.task
        for purpose, n in [("warmup", 20), ("warmup_eval", 10), ("rollouts", 20), ("expert", 20)]
        for task in task_suite(purpose, n, params.env.levels, params.run.seed).tasks
    }
    assert not heldout & (trained | others)
    assert not retention & (trained | others | heldout)


def test_a_heldout_task_found_in_training_is_an_error(tiny_run):
    params = tiny_run.params
    labeled = load_labeled(params.layout.phase1)
    split = load_split(tiny_run.summary.parent / "split.json", labeled)
    heldout = task_suite("heldout", 2, params.env.levels, params.run.seed).tasks
    task = {"env_id": heldout[1].env_id, "seed": heldout[1].seed}
    leaked = split.train[0].model_copy(
        update={"env_state": split.train[0].env_state.model_copy(update=task)}
    )
    leaky = TaskSplit(train=[*split.train, leaked], test=split.test)
    with pytest.raises(ValueError, match=f"{heldout[1].seed}.*Phase 2 split"):
        check_unseen(heldout, "heldout", leaky, labeled)
    rollout_task = task_suite("rollouts", 1, params.env.levels, params.run.seed).tasks
    with pytest.raises(ValueError, match="drawn for rollouts"):
        check_unseen(rollout_task, "heldout", split, labeled)


# --- stuckness ---------------------------------------------------------------------------------


def test_turning_back_and_forth_is_a_loop_and_a_full_turn_is_not(tiny_run):
    task = task_suite("heldout", 1, tiny_run.params.env.levels, tiny_run.params.run.seed).tasks[0]
    wobble, ended = agent_trace(task, ["turn left", "turn right"] * 2)
    assert has_loop(wobble)  # the start state is visited three times
    assert steps_without_progress(wobble) == 3
    assert not ended
    circle, _ = agent_trace(task, ["turn left"] * 4)
    assert not has_loop(circle)  # each heading twice at most
    assert steps_without_progress(circle) == 1
    assert has_loop(circle + circle[1:])


def test_a_straight_walk_is_no_loop():
    walk = [AgentState((x, 1), 0, None, None) for x in range(1, 6)]
    assert not has_loop(walk)
    assert steps_without_progress(walk) == 0
    bumping = [AgentState((5, 1), 0, None, (2, 5, 0))] * 3
    assert has_loop(bumping)
    assert steps_without_progress(bumping) == 2


def test_the_bots_trajectories_make_progress_at_every_step(tiny_run):
    for task in task_suite(
        "heldout", 4, tiny_run.params.env.levels, tiny_run.params.run.seed
    ).tasks:
        actions, success = expert_trajectory(task, 64)
        states, ended = agent_trace(task, actions)
        assert success and ended
        assert not has_loop(states)
        assert steps_without_progress(states) == 0


# --- tables on synthetic results ---------------------------------------------------------------


def synthetic_episodes(successes: dict[str, dict[str, list[bool]]], suite: str) -> pd.DataFrame:
    """Episode rows of `suite`: per model, per quadrant (or level), the listed outcomes."""
    rows = []
    for model, groups in successes.items():
        for group, outcomes in groups.items():
            for index, success in enumerate(outcomes):
                rows.append(
                    {
                        "model": model,
                        "suite": suite,
                        "key": f"{group}-{index}",
                        "level": group,
                        "quadrant": group if group in QUADRANTS else None,
                        "success": success,
                        "steps": 3,
                    }
                )
    return pd.DataFrame(rows)


def synthetic_models() -> pd.DataFrame:
    runs = [
        RunEntry(
            id="Q1_demo", quadrant="Q1_highU_highL", format="demo", n_train=4, status="trained"
        ),
        RunEntry(
            id="Q2_demo", quadrant="Q2_highU_lowL", format="demo", n_train=4, status="trained"
        ),
        RunEntry(
            id="Q1_hint", quadrant="Q1_highU_highL", format="hint", n_train=4, status="trained"
        ),
        RunEntry(id="all_demo", quadrant="all", format="demo", n_train=8, status="trained"),
    ]
    return model_table(runs)


def test_transfer_matrix_gains_and_diagonal_summary():
    q1, q2 = "Q1_highU_highL", "Q2_highU_lowL"
    outcomes = {  # success rates on Q1 and Q2 test snapshots
        BASE: {q1: [True, False, False, False], q2: [True, True, False, False]},  # .25, .5
        "Q1_demo": {q1: [True, True, True, False], q2: [True, True, False, False]},  # .75, .5
        "Q2_demo": {q1: [False, False, False, False], q2: [True, True, True, True]},  # 0, 1
        "Q1_hint": {q1: [True, True, False, False], q2: [False, False, False, False]},  # .5, 0
        "all_demo": {q1: [True, True, True, True], q2: [True, True, True, True]},
    }
    per_quadrant = per_quadrant_table(synthetic_episodes(outcomes, "snapshots"), synthetic_models())
    matrix = transfer_matrix(per_quadrant).dropna(subset=["gain"])
    gain = matrix.set_index(["format", "train_quadrant", "eval_quadrant"])["gain"]
    expected = {
        ("demo", q1, q1): 0.5,
        ("demo", q1, q2): 0.0,
        ("demo", q2, q1): -0.25,
        ("demo", q2, q2): 0.5,
        ("hint", q1, q1): 0.25,
        ("hint", q1, q2): -0.5,
        ("mean", q1, q1): 0.375,
        ("mean", q1, q2): -0.25,
        ("mean", q2, q1): -0.25,
        ("mean", q2, q2): 0.5,
    }
    assert gain.to_dict() == pytest.approx(expected)
    assert "all_demo" not in set(matrix["model"])
    assert matrix["diagonal"].tolist() == [train == evaluated for _, train, evaluated in gain.index]
    summary = transfer_summary(matrix).set_index("format")
    assert summary.loc["demo", "diagonal_gain"] == pytest.approx(0.5)
    assert summary.loc["demo", "off_diagonal_gain"] == pytest.approx(-0.125)
    assert summary.loc["hint", "difference"] == pytest.approx(0.75)
    assert summary.loc["mean", "diagonal_gain"] == pytest.approx(0.4375)
    assert summary["diagonal_ahead"].all()


def test_retention_keeps_the_base_solved_tasks_and_flags_drops():
    outcomes = {
        BASE: {"GoToLocal": [True, True, False], "GoToObj": [True, True]},
        "Q1_demo": {"GoToLocal": [True, False, True], "GoToObj": [True, True]},
        "Q2_demo": {"GoToLocal": [True, True, True], "GoToObj": [True, True]},
    }
    models = synthetic_models()
    models = models[models["model"].isin(outcomes)]
    table = retention_table(synthetic_episodes(outcomes, "retention"), models, ["GoToLocal"])
    row = table.set_index(["model", "level"])
    assert row.loc[("Q1_demo", "GoToLocal"), "n_candidates"] == 3
    assert row.loc[("Q1_demo", "GoToLocal"), "n_tasks"] == 2  # the task the base failed is out
    assert row.loc[("Q1_demo", "GoToLocal"), "after"] == pytest.approx(0.5)
    assert row.loc[("Q1_demo", "all"), "drop"] == pytest.approx(0.25)
    assert row.loc[("Q1_demo", "all"), "drop_flag"]
    assert not row.loc[("Q1_demo", "GoToObj"), "drop_flag"]
    assert row.loc[("Q2_demo", "all"), "drop"] == pytest.approx(0.0)
    assert not row.loc[("Q1_demo", "GoToObj"), "training_level"]


def test_pareto_front_keeps_the_undominated_runs():
    gain = np.array([0.3, 0.2, 0.3, 0.1, np.nan])
    drop = np.array([0.05, 0.0, 0.10, 0.0, 0.0])
    assert pareto_mask(gain, drop).tolist() == [True, True, False, False, False]


# --- a whole evaluation ------------------------------------------------------------------------


def test_a_missing_adapter_fails_before_any_work(tiny_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run.summary.parent, run_dir)
    shutil.rmtree(run_dir / "Q2_highU_lowL_demo")
    out_dir = tmp_path / "v8"
    with pytest.raises(FileNotFoundError, match="Q2_highU_lowL_demo") as error:
        evaluate(tiny_run, Phase2Layout(run_dir), out_dir)
    assert str(run_dir / "Q2_highU_lowL_demo") in str(error.value)
    assert not out_dir.exists()


def test_the_csvs_hold_the_claimed_columns_and_rows(evaluated, tiny_run):
    evaluation, out_dir = evaluated
    n_models = 1 + len(TRAINED)
    overall = pd.read_csv(out_dir / "overall_task_results.csv")
    assert {"model", "success_rate", "ci_low", "ci_high", "mean_steps", "gain_over_base"} <= set(
        overall.columns
    )
    assert overall["model"].tolist() == [BASE, *TRAINED, "Q3_lowU_lowL_hint"]
    assert overall["status"].tolist() == ["base", *["evaluated"] * 3, "skipped"]
    measured = overall[overall["status"] != "skipped"]
    assert (measured["n_tasks"] == 4).all()
    assert (measured["ci_low"] <= measured["success_rate"]).all()
    assert (measured["success_rate"] <= measured["ci_high"]).all()
    assert measured["gain_over_base"].iloc[0] == 0

    per_quadrant = pd.read_csv(out_dir / "per_quadrant_results.csv")
    assert len(per_quadrant) == n_models * 4
    assert (per_quadrant["n_snapshots"] == 1).all()

    transfer = pd.read_csv(out_dir / "transfer_matrix.csv")
    assert {"format", "train_quadrant", "eval_quadrant", "gain", "diagonal"} <= set(
        transfer.columns
    )
    assert len(transfer) == 2 * 4 * 2  # two quadrant runs (demo) and their mean, 4 eval quadrants
    assert set(transfer["format"]) == {"demo", "mean"}

    retention = pd.read_csv(out_dir / "retention_results.csv")
    levels = 1 + len(set(evaluation.episodes.query("suite == 'retention'")["level"]))
    assert len(retention) == n_models * levels
    assert {"before", "after", "drop", "drop_flag"} <= set(retention.columns)

    stuckness = pd.read_csv(out_dir / "stuckness_results.csv")
    assert len(stuckness) == n_models * 2
    assert stuckness[["loop_rate", "timeout_rate"]].stack().between(0, 1).all()
    max_steps = tiny_run.params.phase3.max_steps
    assert (stuckness["mean_steps_without_progress"] <= max_steps).all()


def test_a_rerun_evaluates_only_the_models_not_logged(evaluated, tiny_run):
    evaluation, out_dir = evaluated
    before = pd.read_csv(out_dir / "overall_task_results.csv")
    log = out_dir / "model_episodes.jsonl"
    write_jsonl(log, read_jsonl(log)[:-1])
    again = evaluate(tiny_run, Phase2Layout(tiny_run.summary.parent), out_dir)
    assert again.record["evaluated_now"] == [TRAINED[-1]]
    pd.testing.assert_frame_equal(pd.read_csv(out_dir / "overall_task_results.csv"), before)
    assert (
        evaluate(tiny_run, Phase2Layout(tiny_run.summary.parent), out_dir).record["evaluated_now"]
        == []
    )
