"""Phase 3 against the shuffled-target control: on planted episodes, every run and cell but the
control and the base gets its gain over the control, paired seed by seed on the same episodes,
in the overall and per-quadrant tables, in a verdict and in the paper's training matrix; without
a trained control nothing is claimed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from teachable.measure.gains import overall_table, paired_gain, per_quadrant_table
from teachable.models.evaluation import tabulate
from teachable.phases.phase3_evaluation import phase3_verdicts
from teachable.records.evaluation import CONTROL, save_evaluation, units
from teachable.records.layout import RunLayout
from teachable.records.training_summary import BASE, RunEntry
from teachable.reports.artifacts import training_matrix_table

Q1 = "Q1_highU_highL"
CELL = f"{Q1}_demo"
# success on three held-out tasks, two episodes each, on the streams every model shares
TASKS = {
    BASE: [[0, 0], [0, 1], [0, 0]],
    f"{CELL}_seed0": [[1, 1], [1, 1], [0, 1]],
    f"{CELL}_seed1": [[1, 0], [1, 1], [1, 1]],
    f"{CONTROL}_seed0": [[1, 0], [0, 0], [0, 1]],  # seed 0: the cell gains 3 of 6 over it
    f"{CONTROL}_seed1": [[1, 1], [1, 1], [1, 1]],  # seed 1: the cell loses 1 of 6 to it
}


def rounded(expected):
    """`expected` as the tables give it: estimates are rounded to six decimals."""
    return pytest.approx(expected, abs=1e-6)


def entry(cell: str, quadrant: str, seed: int, trained: bool = True) -> RunEntry:
    return RunEntry(
        id=f"{cell}_seed{seed}",
        cell=cell,
        seed=seed,
        quadrant=quadrant,
        format="demo",
        n_train=4,
        status="trained" if trained else "skipped",
        reason=None if trained else "planted",
    )


def runs(control_seeds=(0, 1), cell_seeds=(0, 1)) -> list[RunEntry]:
    """The Q1 demo cell and the control, each trained at the seeds given, skipped at the
    others of 0 and 1."""
    return [
        *(entry(CELL, Q1, seed, seed in cell_seeds) for seed in (0, 1)),
        *(entry(CONTROL, "shuffled", seed, seed in control_seeds) for seed in (0, 1)),
    ]


def played(outcomes: dict[str, list[list[int]]], suite: str, group: str) -> list[dict]:
    """Sampled and greedy episode rows of one suite; the greedy episode of an item is its
    sampled episode 0 turned around, so the two modes differ."""
    rows = []
    for model, items in outcomes.items():
        for item, episodes in enumerate(items):
            for mode, results in (("sampled", episodes), ("greedy", [1 - episodes[0]])):
                for episode, success in enumerate(results):
                    rows.append(
                        {
                            "model": model,
                            "suite": suite,
                            "key": f"{group}-{item}",
                            "episode": episode,
                            "mode": mode,
                            "env_id": "BabyAI-GoToLocal-v0",
                            "level": "GoToLocal",
                            "seed": item,
                            "quadrant": group if suite == "snapshots" else None,
                            "success": bool(success),
                            "steps": 3,
                            "loop": False,
                            "steps_without_progress": 0,
                            "timeout": False,
                            "actions": [],
                        }
                    )
    return rows


def episodes(models=tuple(TASKS)) -> pd.DataFrame:
    """The planted held-out task episodes of `models`, and on Q1's test snapshots the same
    outcomes with the two seeds' controls swapped."""
    chosen = {model: TASKS[model] for model in models}
    swapped = chosen | {
        f"{CONTROL}_seed{s}": TASKS[f"{CONTROL}_seed{1 - s}"]
        for s in (0, 1)
        if f"{CONTROL}_seed{s}" in chosen
    }
    return pd.DataFrame(played(chosen, "tasks", "task") + played(swapped, "snapshots", Q1))


def mean_difference(model: str, control: str, items=TASKS) -> float:
    return float(np.mean(np.array(items[model]) - np.array(items[control])))


def test_the_overall_table_sets_every_run_and_cell_against_the_control_of_its_seed():
    table = overall_table(episodes(), units(runs())).set_index("model")
    seed0 = mean_difference(f"{CELL}_seed0", f"{CONTROL}_seed0")
    seed1 = mean_difference(f"{CELL}_seed1", f"{CONTROL}_seed1")
    assert (seed0, seed1) == (0.5, -1 / 6)
    assert table.loc[f"{CELL}_seed0", "gain_vs_control"] == rounded(seed0)
    assert table.loc[f"{CELL}_seed1", "gain_vs_control"] == rounded(seed1)
    cell = table.loc[CELL]
    assert cell["gain_vs_control"] == rounded((seed0 + seed1) / 2)
    assert cell["gain_vs_control_n"] == 2 * 3 * 2  # seeds x tasks x episodes, paired
    assert cell["gain_vs_control_low"] <= cell["gain_vs_control"] <= cell["gain_vs_control_high"]
    assert cell["gain_vs_control_low"] < cell["gain_vs_control_high"]
    assert cell["gain"] == rounded(
        np.mean([np.array(TASKS[f"{CELL}_seed{s}"]) - TASKS[BASE] for s in (0, 1)])
    )
    for model in (BASE, CONTROL, f"{CONTROL}_seed0", f"{CONTROL}_seed1"):
        assert table.loc[model, ["gain_vs_control", "gain_vs_control_n"]].isna().all()
        assert not pd.isna(table.loc[model, "gain"])


def test_the_gain_over_the_control_is_the_paired_estimate_in_every_play_mode():
    frame = episodes()
    table = overall_table(frame, units(runs())).set_index("model")
    cell_runs = [f"{CELL}_seed0", f"{CELL}_seed1"]
    controls = [f"{CONTROL}_seed0", f"{CONTROL}_seed1"]
    for mode, prefix in (("sampled", ""), ("greedy", "greedy_")):
        paired = paired_gain(frame, cell_runs, controls, "tasks", mode)
        row = table.loc[CELL]
        figures = [row[f"{prefix}gain_vs_control{part}"] for part in ("", "_low", "_high", "_n")]
        assert figures == rounded([paired.value, paired.low, paired.high, paired.n])
    greedy = np.array([1 - np.array(TASKS[m])[:, 0] for m in (*cell_runs, *controls)])
    expected = np.mean(greedy[:2] - greedy[2:])
    assert table.loc[CELL, "greedy_gain_vs_control"] == rounded(expected)


def test_a_seed_without_a_control_is_left_out_and_pairs_never_cross_seeds():
    table = overall_table(episodes(), units(runs(control_seeds=(0,)))).set_index("model")
    seed0 = mean_difference(f"{CELL}_seed0", f"{CONTROL}_seed0")
    assert table.loc[CELL, "gain_vs_control"] == rounded(seed0)
    assert table.loc[CELL, "gain_vs_control_n"] == 3 * 2
    assert pd.isna(table.loc[f"{CELL}_seed1", "gain_vs_control"])

    only_seed1 = overall_table(episodes(), units(runs(cell_seeds=(1,))))
    cell = only_seed1.set_index("model").loc[CELL]
    same_seed = mean_difference(f"{CELL}_seed1", f"{CONTROL}_seed1")
    assert same_seed != mean_difference(f"{CELL}_seed1", f"{CONTROL}_seed0")
    assert cell["gain_vs_control"] == rounded(same_seed)


def test_the_per_quadrant_table_pairs_the_control_on_each_quadrants_snapshots():
    table = per_quadrant_table(episodes(), units(runs()))
    q1 = table[table["eval_quadrant"] == Q1].set_index("model")
    swapped = {f"{CONTROL}_seed{s}": TASKS[f"{CONTROL}_seed{1 - s}"] for s in (0, 1)}
    planted = TASKS | swapped
    expected = np.mean(
        [mean_difference(f"{CELL}_seed{s}", f"{CONTROL}_seed{s}", planted) for s in (0, 1)]
    )
    assert q1.loc[CELL, "gain_vs_control"] == rounded(expected)
    assert q1.loc[CELL, "gain_vs_control_n"] == 12
    assert expected != rounded(q1.loc[CELL, "gain"])
    others = table[table["eval_quadrant"] != Q1]
    assert others["gain_vs_control"].isna().all(), "no test snapshot there, no figure"
    assert q1.loc[[BASE, CONTROL], "gain_vs_control"].isna().all()


def test_without_a_trained_control_no_gain_over_it_is_claimed():
    models = (BASE, f"{CELL}_seed0", f"{CELL}_seed1")
    for measured in (units(runs(control_seeds=())), units(runs()[:2])):
        table = overall_table(episodes(models), measured)
        assert not any(
            column.endswith(("gain_vs_control", "gain_vs_control_n")) for column in table
        )
        assert "gain" in table


def evaluation_of(entries: list[RunEntry]):
    """The evaluation tables and record of the planted episodes, as Phase 3 tabulates them,
    with one retention task played like the first held-out task."""
    trained = [BASE, *(e.id for e in entries if e.status == "trained")]
    frame = episodes(tuple(model for model in TASKS if model in trained))
    retention = frame[(frame["suite"] == "tasks") & (frame["key"] == "task-0")].assign(
        suite="retention", key="retention-0"
    )
    frame = pd.concat([frame, retention], ignore_index=True)
    rows = [
        {"model": model, "episodes": group.drop(columns="model").to_dict("records")}
        for model, group in frame.groupby("model", sort=False)
    ]
    return tabulate(["GoToLocal"], entries, rows)


def test_each_cell_but_the_control_has_a_verdict_on_its_gain_over_the_control():
    evaluation = evaluation_of(runs())
    verdicts = {v.criterion: v for v in phase3_verdicts(evaluation)}
    over = {name for name in verdicts if name.endswith(f"gain over {CONTROL}")}
    assert over == {f"{CELL} gain over {CONTROL}"}
    verdict = verdicts[f"{CELL} gain over {CONTROL}"]
    row = evaluation.overall.set_index("model").loc[CELL]
    assert verdict.estimate.value == rounded(row["gain_vs_control"])
    assert (verdict.estimate.low, verdict.estimate.high) == rounded(
        (row["gain_vs_control_low"], row["gain_vs_control_high"])
    )
    assert verdict.estimate.n == row["gain_vs_control_n"] == 12
    assert (verdict.side, verdict.threshold) == (">", 0.0)
    assert f"{CONTROL} gain over base" in verdicts, "the control is judged against the base"

    skipped = phase3_verdicts(evaluation_of(runs(control_seeds=())))
    assert not [v for v in skipped if v.criterion.endswith(f"gain over {CONTROL}")]


def test_the_papers_training_matrix_carries_the_gain_over_the_control(tmp_path):
    run = RunLayout(tmp_path / "runs" / "paper")
    evaluation = evaluation_of(runs())
    save_evaluation(evaluation, run.phase3)
    table = training_matrix_table(run).set_index(["trained on", "format"])
    assert list(table.index) == [(Q1, "demo"), ("shuffled", "demo")]
    cell = evaluation.overall.set_index("model").loc[CELL]
    for part in ("", "_low", "_high", "_n"):
        column = f"gain_vs_control{part}"
        assert table.loc[(Q1, "demo"), column] == rounded(cell[column])
    assert table.loc[("shuffled", "demo"), ["gain_vs_control", "gain_vs_control_n"]].isna().all()
