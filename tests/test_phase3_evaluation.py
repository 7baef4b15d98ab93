"""Phase 3 evaluation: held-out tasks stay unseen, the stuckness measures read scripted
episodes right, the paired tables compute what they claim on synthetic episodes, and a whole
evaluation of real tiny LoRA runs (two seeds of one cell, and two names for one adapter) plays
every model on the same streams, reports greedy play beside sampled play, writes its five CSVs
and its verdicts, fails early on a missing adapter, and resumes per model."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from teachable.measure.frontier import frontier, pareto_mask
from teachable.measure.gains import outcome_cube, paired_gain, quadrant_comparison, retention_table
from teachable.measure.stuckness import has_loop, steps_without_progress
from teachable.measure.transfer import transfer_matrix, transfer_summary
from teachable.models.evaluation import (
    check_unseen,
    evaluate_runs,
    evaluation_items,
    snapshot_items,
)
from teachable.models.lora import train_lora
from teachable.models.student import Student
from teachable.models.supervision import sft_examples
from teachable.models.workers import LocalWorkers
from teachable.parameters import LoraParameters, Parameters
from teachable.phases.phase0_snapshots import (
    ExpertTrajectory,
    expert_snapshots,
    sample_expert_states,
)
from teachable.phases.phase0_warmup import save_preparation
from teachable.phases.phase3_evaluation import evaluate_matrix, phase3_verdicts
from teachable.records.estimate import Estimate
from teachable.records.evaluation import Evaluation, units
from teachable.records.labeled import LabeledSnapshot, Leverage, load_labeled, save_labeled
from teachable.records.layout import EvaluationLayout, RunLayout, TrainingLayout
from teachable.records.quadrants import Thresholds, save_thresholds
from teachable.records.store import read_jsonl, write_jsonl
from teachable.records.training_summary import BASE, RunEntry, TrainingSummary
from teachable.records.verdicts import Verdicts, save_phase_verdicts
from teachable.vocabulary import QUADRANTS
from teachable.world.agent_state import AgentState, agent_trace
from teachable.world.splits import Split, split_snapshots
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
Q1, Q2 = "Q1_highU_highL", "Q2_highU_lowL"
# (cell, train quadrant, seed) of the real runs: Q1 on two seeds, Q2 and the baseline on one
RUNS = (
    (f"{Q1}_demo", Q1, 0),
    (f"{Q1}_demo", Q1, 1),
    (f"{Q2}_demo", Q2, 0),
    ("baseline_all_demo", "all", 0),
)
TWIN = "baseline_all_demo_twin"  # a second name for the baseline's adapter: an identical model
TRAINED = (*(f"{cell}_seed{seed}" for cell, _, seed in RUNS), f"{TWIN}_seed0")


def tiny_parameters(root: Path) -> Parameters:
    return Parameters.model_validate(
        {
            "run": {"seed": 3, "output_root": str(root), "name": "eval"},
            "student": {"model": "tiny", "batch_size": 32},
            "env": {"levels": ["GoToLocal", "PickupLoc"]},
            # the random tiny student puts nearly all its mass on one action: a high temperature
            # makes its sampled episodes differ, so that shared streams matter
            "evaluation": {
                "temperature": 20.0,
                "episodes_per_item": 2,
                "greedy": True,
                "bootstrap_resamples": 200,
            },
            "phase3": {
                "n_tasks": 3,
                "n_snapshots_per_quadrant": 1,
                "max_steps": 4,
                "retention_tasks": 1,
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
    """A run folder with phases 0-2 done on the tiny student: the split (half the tasks
    labeled, half test), the labeled and the test snapshots with their labels, four real
    one-step LoRA adapters (two seeds of a Q1 cell, a Q2 cell, a baseline), the baseline's
    adapter listed a second time under another cell, and one skipped run."""

    params: Parameters
    summary: Path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> TinyRun:
    params = tiny_parameters(tmp_path_factory.mktemp("runs"))
    run = RunLayout(params.run_dir)
    save_preparation(run.phase0, params.student, {"skipped": "the tiny student is used as is"})
    student = Student.load(params.student)
    rows = labeled_rows(student, params)
    split = split_snapshots(rows, 0.5, 0.0, params.run.seed, ["expert"])
    split.save(run.split)
    save_labeled(run.phase1, split.rows("labeled", rows))
    write_jsonl(
        run.phase1.test_labels, [r.model_dump(mode="json") for r in split.rows("test", rows)]
    )
    save_thresholds(run.phase1.thresholds_auto, Thresholds(U=0.5, L=0.0, source="auto"))
    train = load_labeled(run.phase1)
    lora = LoraParameters(r=2, alpha=4, steps=1, batch_size=2)
    entries = []
    for cell, quadrant, seed in RUNS:
        run_id = f"{cell}_seed{seed}"
        rows = [row for row in train if quadrant in ("all", row.quadrant)]
        trained = train_lora(
            student,
            sft_examples(rows, "demo"),
            lora.model_copy(update={"seed": seed}),
            run.phase2.adapter(run_id),
        )
        entries.append(
            RunEntry(
                id=run_id,
                cell=cell,
                seed=seed,
                quadrant=quadrant,
                format="demo",
                n_train=len(rows),
                status="trained",
                adapter=run_id,
                losses=trained.losses,
            )
        )
    entries.append(
        entries[-1].model_copy(update={"id": f"{TWIN}_seed0", "cell": TWIN})
    )  # same adapter folder
    entries.append(
        RunEntry(
            id="Q3_lowU_lowL_hint_seed0",
            cell="Q3_lowU_lowL_hint",
            seed=0,
            quadrant="Q3_lowU_lowL",
            format="hint",
            n_train=0,
            status="skipped",
            reason="too few train snapshots",
        )
    )
    split_path = os.path.relpath(run.split, run.phase2.folder)
    TrainingSummary(lora=lora, split=split_path, runs=entries).save(run.phase2.training_summary)
    return TinyRun(params, run.phase2.training_summary)


def evaluate(tiny_run: TinyRun, trained: TrainingLayout, out_dir: Path) -> Evaluation:
    """The evaluation of a training folder's runs, written into `out_dir`."""
    params = tiny_run.params
    return evaluate_runs(
        trained,
        load_labeled(params.layout.phase1, "test"),
        params.phase3,
        params.evaluation,
        params.env.levels,
        params.run.seed,
        LocalWorkers(Student.load(params.student)),
        EvaluationLayout(out_dir),
        progress=False,
    )


@pytest.fixture(scope="module")
def evaluated(tiny_run):
    """Phase 3 on the tiny run, as the notebook runs it: its evaluation and its folder."""
    params = tiny_run.params
    result = evaluate_matrix(
        layout=params.layout,
        phase3=params.phase3,
        evaluation=params.evaluation,
        levels=params.env.levels,
        seed=params.run.seed,
        workers=LocalWorkers(Student.load(params.student)),
        progress=False,
    )
    return result.evaluation, params.layout.phase3.folder


# --- held-out tasks ----------------------------------------------------------------------------


def test_heldout_tasks_never_overlap_training_tasks(tiny_run):
    params = tiny_run.params
    test = load_labeled(params.layout.phase1, "test")
    split = Split.load(params.layout.split)
    items = evaluation_items(params.phase3, params.env.levels, params.run.seed, split, test)
    heldout = {item.start.task for item in items if item.suite == "tasks"}
    retention = {item.start.task for item in items if item.suite == "retention"}
    assert len(heldout) == params.phase3.n_tasks
    played = {item.key for item in items if item.suite == "snapshots"}
    assert played and played <= set(split.parts["test"].snapshots)
    trained = split.tasks() | {row.task for row in load_labeled(params.layout.phase1)}
    others = {
        task.task
        for purpose, n in [("warmup", 20), ("warmup_eval", 10), ("rollouts", 20), ("expert", 20)]
        for task in task_suite(purpose, n, params.env.levels, params.run.seed).tasks
    }
    assert not heldout & (trained | others)
    assert not retention & (trained | others | heldout)


def test_a_heldout_task_found_in_the_split_or_a_test_snapshot_outside_it_is_an_error(tiny_run):
    params = tiny_run.params
    split = Split.load(params.layout.split)
    heldout = task_suite("heldout", 2, params.env.levels, params.run.seed).tasks
    leaky = split.model_copy(deep=True)
    leaky.parts["pool"].tasks.append(heldout[1].task)
    with pytest.raises(ValueError, match=f"{heldout[1].seed}.*the split's pool part"):
        check_unseen(heldout, "heldout", leaky)
    rollout_task = task_suite("rollouts", 1, params.env.levels, params.run.seed).tasks
    with pytest.raises(ValueError, match="drawn for rollouts"):
        check_unseen(rollout_task, "heldout", split)
    trained_on = load_labeled(params.layout.phase1)[:1]
    with pytest.raises(ValueError, match=f"snapshot {trained_on[0].id}.*lies in labeled"):
        snapshot_items(split, trained_on, 1)


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


# --- paired tables on synthetic episodes -------------------------------------------------------


def run_entry(cell: str, quadrant: str, format: str = "demo", seed: int = 0) -> RunEntry:
    return RunEntry(
        id=f"{cell}_seed{seed}",
        cell=cell,
        seed=seed,
        quadrant=quadrant,
        format=format,
        n_train=4,
        status="trained",
    )


def synthetic_episodes(outcomes: dict[str, dict[str, list[list[int]]]], suite: str) -> pd.DataFrame:
    """Sampled episode rows of `suite`: per model, per quadrant (or level), per item the
    outcomes of its episodes."""
    rows = []
    for model, groups in outcomes.items():
        for group, items in groups.items():
            for item, episodes in enumerate(items):
                for episode, success in enumerate(episodes):
                    rows.append(
                        {
                            "model": model,
                            "suite": suite,
                            "key": f"{group}-{item}",
                            "episode": episode,
                            "mode": "sampled",
                            "level": group,
                            "quadrant": group if group in QUADRANTS else None,
                            "success": bool(success),
                        }
                    )
    return pd.DataFrame(rows)


def test_the_outcome_cube_lines_items_up_across_models_and_leaves_unplayed_ones_out():
    episodes = synthetic_episodes(
        {BASE: {"b": [[1, 0]], "a": [[0, 0]]}, "run": {"b": [[1, 1]]}}, "tasks"
    )
    cube = outcome_cube(episodes, ["run", BASE], "tasks")
    assert cube.shape == (2, 2, 2)
    assert np.isnan(cube[0, 0]).all()  # "a-0" sorts first; the run did not play it
    assert cube[0, 1].tolist() == [1.0, 1.0]
    assert cube[1].tolist() == [[0.0, 0.0], [1.0, 0.0]]


def test_a_cells_gain_pools_its_seeds_and_pairs_each_episode_with_the_bases():
    outcomes = {
        BASE: {"t": [[0, 1], [0, 0], [1, 1]]},
        "a_seed0": {"t": [[1, 1], [1, 1], [1, 1]]},  # +3 of 6 episodes
        "a_seed1": {"t": [[0, 1], [1, 0], [1, 1]]},  # +1 of 6
    }
    episodes = synthetic_episodes(outcomes, "tasks")
    gain = paired_gain(episodes, ["a_seed0", "a_seed1"], [BASE], "tasks")
    assert gain.value == pytest.approx(4 / 12)
    assert gain.n == 12
    assert gain.low <= gain.value <= gain.high
    same = paired_gain(episodes, ["a_seed0", "a_seed1"], ["a_seed0", "a_seed1"], "tasks")
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="2 models against 3 references"):
        paired_gain(episodes, ["a_seed0", "a_seed1"], [BASE, BASE, BASE], "tasks")


def quadrant_runs() -> list[RunEntry]:
    return [
        run_entry(f"{Q1}_demo", Q1),
        run_entry(f"{Q2}_demo", Q2),
        run_entry(f"{Q1}_hint", Q1, "hint"),
        run_entry("baseline_all_demo", "all"),
    ]


def test_transfer_matrix_and_summary_pair_the_diagonal_with_the_off_diagonal():
    outcomes = {  # success on two Q1 and two Q2 test snapshots, two episodes each
        BASE: {Q1: [[1, 0], [0, 0]], Q2: [[1, 1], [0, 0]]},  # .25, .5
        f"{Q1}_demo_seed0": {Q1: [[1, 1], [1, 0]], Q2: [[1, 1], [0, 0]]},  # .75, .5
        f"{Q2}_demo_seed0": {Q1: [[0, 0], [0, 0]], Q2: [[1, 1], [1, 1]]},  # 0, 1
        f"{Q1}_hint_seed0": {Q1: [[1, 1], [0, 0]], Q2: [[0, 0], [0, 0]]},  # .5, 0
        "baseline_all_demo_seed0": {Q1: [[1, 1], [1, 1]], Q2: [[1, 1], [1, 1]]},
    }
    episodes = synthetic_episodes(outcomes, "snapshots")
    measured = units(quadrant_runs())
    matrix = transfer_matrix(episodes, measured).dropna(subset=["gain"])
    gain = matrix.set_index(["format", "train_quadrant", "eval_quadrant"])["gain"]
    expected = {
        ("demo", Q1, Q1): 0.5,
        ("demo", Q1, Q2): 0.0,
        ("demo", Q2, Q1): -0.25,
        ("demo", Q2, Q2): 0.5,
        ("hint", Q1, Q1): 0.25,
        ("hint", Q1, Q2): -0.5,
        ("mean", Q1, Q1): 0.375,
        ("mean", Q1, Q2): -0.25,
        ("mean", Q2, Q1): -0.25,
        ("mean", Q2, Q2): 0.5,
    }
    assert gain.to_dict() == pytest.approx(expected)
    assert "baseline_all_demo" not in set(matrix["cell"])
    assert (matrix["gain_low"] <= matrix["gain"]).all() and (
        matrix["gain"] <= matrix["gain_high"]
    ).all()
    assert (matrix["gain_n"] == 4 * matrix["seeds"]).all()  # 2 snapshots x 2 episodes per run
    assert matrix["diagonal"].tolist() == [train == seen for _, train, seen in gain.index]

    summary = transfer_summary(episodes, measured).set_index("format")
    assert summary.loc["demo", "diagonal_gain"] == pytest.approx(0.5)
    assert summary.loc["demo", "off_diagonal_gain"] == pytest.approx(-0.125)
    assert summary.loc["demo", "difference"] == pytest.approx(0.625)
    assert summary.loc["demo", "difference_n"] == 8
    # hint trained Q1 only: no snapshot has both a diagonal and an off-diagonal run
    assert pd.isna(summary.loc["hint", "difference"])
    assert summary.loc["hint", "diagonal_ahead"] == "inconclusive"
    assert summary.loc["mean", "difference"] == pytest.approx(0.625)


def test_q1_against_q2_pairs_runs_of_one_format_and_seed():
    outcomes = {
        BASE: {"t": [[0, 0], [0, 0], [0, 0], [0, 0]]},
        f"{Q1}_demo_seed0": {"t": [[1, 1], [1, 1], [1, 0], [1, 1]]},
        f"{Q2}_demo_seed0": {"t": [[0, 0], [1, 0], [0, 0], [0, 0]]},
        f"{Q1}_hint_seed0": {"t": [[1, 1], [1, 1], [1, 1], [1, 1]]},  # no Q2 hint to pair with
    }
    estimate = quadrant_comparison(synthetic_episodes(outcomes, "tasks"), units(quadrant_runs()))
    assert estimate.value == pytest.approx(7 / 8 - 1 / 8)
    assert estimate.n == 8
    assert estimate.low > 0


def test_the_retention_drop_is_paired_over_the_fixed_set_and_can_be_negative():
    outcomes = {
        BASE: {"GoToLocal": [[0, 0]] * 4, "GoToObj": [[1, 1]] * 2},
        "helps_seed0": {"GoToLocal": [[1, 1]] * 4, "GoToObj": [[1, 1]] * 2},
        "harms_seed0": {"GoToLocal": [[0, 0]] * 4, "GoToObj": [[0, 0]] * 2},
    }
    runs = [run_entry("helps", "all"), run_entry("harms", "all")]
    episodes = synthetic_episodes(outcomes, "retention")
    table = retention_table(episodes, units(runs), ["GoToLocal"])
    row = table[table["unit"] == "cell"].set_index(["cell", "level"])
    helps = row.loc[("helps", "all")]
    assert helps["n_items"] == 6  # the tasks the base fails count too
    assert helps["before"] == pytest.approx(1 / 3) and helps["after"] == pytest.approx(1.0)
    assert helps["drop"] == pytest.approx(-2 / 3)
    assert helps["drop_high"] < 0
    assert helps["drop_within_limit"] == "holds"
    assert row.loc[("helps", "GoToLocal"), "drop"] == pytest.approx(-1.0)
    assert row.loc[("helps", "GoToLocal"), "training_level"]
    assert not row.loc[("helps", "GoToObj"), "training_level"]
    assert row.loc[("harms", "GoToObj"), "drop"] == pytest.approx(1.0)
    # 4 episodes, all dropped: fewer discordant pairs than a verdict needs
    assert row.loc[("harms", "GoToObj"), "drop_within_limit"] == "inconclusive"
    assert set(table["unit"]) == {"run", "cell"}


def test_pareto_front_keeps_the_undominated_runs():
    gain = np.array([0.3, 0.2, 0.3, 0.1, np.nan])
    drop = np.array([0.05, 0.0, 0.10, 0.0, 0.0])
    assert pareto_mask(gain, drop).tolist() == [True, True, False, False, False]


# --- a whole evaluation ------------------------------------------------------------------------


def test_a_missing_adapter_fails_before_any_work(tiny_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run.summary.parent, run_dir)
    shutil.rmtree(run_dir / TRAINED[2])
    out_dir = tmp_path / "v8"
    with pytest.raises(FileNotFoundError, match=TRAINED[2]) as error:
        evaluate(tiny_run, TrainingLayout(run_dir), out_dir)
    assert str(run_dir / TRAINED[2]) in str(error.value)
    assert not out_dir.exists()


@pytest.mark.slow
def test_identical_models_play_identical_episodes_on_the_shared_streams(evaluated):
    evaluation, _ = evaluated
    episodes = evaluation.episodes
    index = ["suite", "key", "mode", "episode"]
    first = episodes[episodes["model"] == TRAINED[3]].set_index(index).sort_index()
    twin = episodes[episodes["model"] == TRAINED[4]].set_index(index).sort_index()
    assert len(first) and first.index.equals(twin.index)
    assert first["actions"].tolist() == twin["actions"].tolist()
    for suite in ("tasks", "snapshots", "retention"):
        gain = paired_gain(episodes, [TRAINED[4]], [TRAINED[3]], suite)
        assert gain.value == 0.0 and gain.counts == {"discordant": 0}
        assert gain.n == len(first.loc[suite].query("mode == 'sampled'"))
    overall = evaluation.overall.set_index("model")
    columns = ["success", "gain", "gain_low", "gain_high", "gain_n"]
    assert overall.loc[TWIN, columns].tolist() == overall.loc["baseline_all_demo", columns].tolist()
    base = overall.loc[BASE]
    assert base["gain"] == 0.0 and base["gain_discordant"] == 0
    # the streams differ between the episodes of one item: their index seeds them
    sampled = episodes[(episodes["model"] == BASE) & (episodes["mode"] == "sampled")]
    actions = sampled.groupby("key")["actions"].agg(lambda played: len({tuple(a) for a in played}))
    assert (actions > 1).any()


@pytest.mark.slow
def test_every_item_is_played_sampled_and_greedy_and_both_are_reported(evaluated, tiny_run):
    evaluation, _ = evaluated
    episodes = evaluation.episodes
    counts = episodes.groupby(["model", "mode", "key"]).size().unstack("mode")
    assert (counts["sampled"] == tiny_run.params.evaluation.episodes_per_item).all()
    assert (counts["greedy"] == 1).all()
    overall = evaluation.overall
    measured = overall[overall["status"] != "skipped"]
    for column in ("success", "success_low", "success_high", "gain", "gain_low", "gain_high"):
        assert measured[column].notna().all() and measured[f"greedy_{column}"].notna().all()
    assert (measured["n_items"] == tiny_run.params.phase3.n_tasks).all()
    assert (measured["greedy_success_n"] == measured["greedy_n_items"] * measured["seeds"]).all()
    assert set(evaluation.stuckness["mode"]) == {"sampled", "greedy"}
    assert evaluation.record["modes"] == ["sampled", "greedy"]


@pytest.mark.slow
def test_the_csvs_hold_a_row_per_run_and_per_cell_with_intervals(evaluated, tiny_run):
    evaluation, out_dir = evaluated
    cells = [f"{Q1}_demo", f"{Q2}_demo", "baseline_all_demo", TWIN, "Q3_lowU_lowL_hint"]
    runs = [*TRAINED, "Q3_lowU_lowL_hint_seed0"]
    overall = pd.read_csv(out_dir / "overall_task_results.csv")
    assert overall["model"].tolist() == [BASE, *runs, *cells]
    assert overall["unit"].tolist() == ["base", *["run"] * len(runs), *["cell"] * len(cells)]
    assert overall["status"].tolist()[-1] == "skipped" and overall["gain"].isna().iloc[-1]
    q1 = overall.set_index("model").loc[f"{Q1}_demo"]
    episodes = tiny_run.params.evaluation.episodes_per_item
    assert q1["seeds"] == 2
    assert q1["gain_n"] == 2 * tiny_run.params.phase3.n_tasks * episodes
    measured = overall[overall["status"] != "skipped"]
    for name in ("success", "gain"):
        assert (measured[f"{name}_low"] <= measured[name]).all()
        assert (measured[name] <= measured[f"{name}_high"]).all()

    evaluated_units = len(measured)
    per_quadrant = pd.read_csv(out_dir / "per_quadrant_results.csv")
    assert len(per_quadrant) == evaluated_units * 4
    assert (per_quadrant.dropna(subset=["n_items"])["n_items"] == 1).all()

    transfer = pd.read_csv(out_dir / "transfer_matrix.csv")
    assert {"gain", "gain_low", "gain_high", "gain_n", "diagonal"} <= set(transfer.columns)
    assert len(transfer) == 2 * 4 * 2  # Q1 and Q2 cells (demo) and their mean, 4 eval quadrants
    assert set(transfer["format"]) == {"demo", "mean"}

    retention = pd.read_csv(out_dir / "retention_results.csv")
    levels = 1 + len(set(evaluation.episodes.query("suite == 'retention'")["level"]))
    assert len(retention) == (evaluated_units - 1) * levels  # every run and cell, not the base
    all_levels = retention[retention["level"] == "all"]
    assert (all_levels["n_items"] == evaluation.record["n_items"]["retention"]).all()
    assert {"before", "after", "drop", "drop_low", "drop_high", "drop_within_limit"} <= set(
        retention.columns
    )

    stuckness = pd.read_csv(out_dir / "stuckness_results.csv")
    assert len(stuckness) == (1 + len(TRAINED)) * 2 * 2  # models x suites x modes
    assert stuckness[["loop_rate", "timeout_rate"]].stack().between(0, 1).all()
    max_steps = tiny_run.params.phase3.max_steps
    assert (stuckness["mean_steps_without_progress"] <= max_steps).all()
    assert len(frontier(evaluation.overall, evaluation.retention)) == 4


@pytest.mark.slow
def test_the_phase_writes_its_verdicts_into_the_runs_verdicts_file(evaluated, tiny_run):
    evaluation, _ = evaluated
    written = Verdicts.load(tiny_run.params.layout.verdicts)
    assert written.of("phase3") == phase3_verdicts(evaluation)


@pytest.mark.slow
def test_the_verdicts_are_written_beside_other_phases(evaluated, tmp_path):
    evaluation, _ = evaluated
    path = tmp_path / "verdicts.json"
    earlier = Verdicts.load(path)
    assert earlier.verdicts == []
    other = phase3_verdicts(evaluation)[0].model_copy(update={"phase": "phase1b"})
    save_phase_verdicts(path, "phase1b", [other])
    save_phase_verdicts(path, "phase3", phase3_verdicts(evaluation))
    written = Verdicts.load(path)
    assert len(written.of("phase1b")) == 1
    criteria = {verdict.criterion: verdict for verdict in written.of("phase3")}
    cells = [f"{Q1}_demo", f"{Q2}_demo", "baseline_all_demo", TWIN]
    assert set(criteria) == {
        *(f"{cell} gain over base" for cell in cells),
        *(f"{cell} retention drop" for cell in cells),
        "transfer diagonal - off-diagonal (demo)",
        f"{Q1} - {Q2} success",
    }
    gain = criteria[f"{Q1}_demo gain over base"]
    overall = evaluation.overall.set_index("model").loc[f"{Q1}_demo"]
    assert gain.estimate.value == pytest.approx(overall["gain"])
    assert gain.estimate.n == overall["gain_n"]
    assert gain.side == ">" and gain.threshold == 0
    assert criteria[f"{TWIN} retention drop"].threshold == 0.10
    twin, baseline = (
        criteria[f"{TWIN} gain over base"],
        criteria["baseline_all_demo gain over base"],
    )
    assert (twin.estimate, twin.outcome) == (baseline.estimate, baseline.outcome)
    comparison = Estimate.model_validate(evaluation.record["quadrant_comparison"])
    assert criteria[f"{Q1} - {Q2} success"].estimate == comparison
    assert comparison.n == evaluation.record["n_items"]["tasks"] * 2  # Q2 has seed 0 only


@pytest.mark.slow
def test_a_rerun_evaluates_only_the_models_not_logged(evaluated, tiny_run):
    evaluation, out_dir = evaluated
    before = pd.read_csv(out_dir / "overall_task_results.csv")
    log = out_dir / "model_episodes.jsonl"
    write_jsonl(log, read_jsonl(log)[:-1])
    again = evaluate(tiny_run, TrainingLayout(tiny_run.summary.parent), out_dir)
    assert again.record["evaluated_now"] == [TRAINED[-1]]
    pd.testing.assert_frame_equal(pd.read_csv(out_dir / "overall_task_results.csv"), before)
    assert (
        evaluate(tiny_run, TrainingLayout(tiny_run.summary.parent), out_dir).record["evaluated_now"]
        == []
    )
