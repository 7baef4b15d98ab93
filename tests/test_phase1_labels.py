"""Phase 1 labels: paired random streams, U, leverage, CPT arithmetic, quadrants, deterministic
and resumable labeling, the reliability panel, and the stepwise `label` commands, on the tiny
student and the bot teacher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from teachable.__main__ import main
from teachable.measure.labels import CPT_CONDITIONS, cpt_from_outcomes
from teachable.models import labeling
from teachable.models.conditions import LABELS, RETEST, RolloutCondition, teacher_request
from teachable.models.labeling import measure, uncertainty
from teachable.models.quadrant_placement import place_in_quadrants
from teachable.models.retest import reliability_panel
from teachable.models.rollouts import run_episodes
from teachable.models.student import Student
from teachable.models.teachers import make_teacher
from teachable.models.workers import LocalWorkers
from teachable.parameters import ParameterError, Parameters, parse_parameters
from teachable.phases.phase0_snapshots import expert_snapshots
from teachable.phases.phase0_warmup import save_preparation
from teachable.phases.phase1_labels import label_snapshots, label_test_snapshots, phase1_snapshots
from teachable.records.env_state import EnvState
from teachable.records.labeled import (
    LabeledSnapshot,
    Leverage,
    assign_quadrants,
    load_labeled,
)
from teachable.records.layout import Phase1Layout, RunLayout
from teachable.records.quadrants import (
    Thresholds,
    auto_thresholds,
    load_thresholds,
    quadrant_counts,
    save_thresholds,
)
from teachable.records.reliability import load_reliability
from teachable.records.snapshot import Snapshot, SnapshotError, save_snapshots
from teachable.records.store import read_json, read_jsonl, write_jsonl
from teachable.reports.phase1 import reliability_table, write_plots
from teachable.vocabulary import FORMATS, QUADRANTS
from teachable.world.replay import load_replayed_rows
from teachable.world.splits import Split
from teachable.world.text_world import env_id, expert_trajectory

PHASE1 = {
    "n_rollouts": 2,
    "n_per_condition": 2,
    "max_steps": 5,
    "temperature": 5.0,  # the tiny student is near-deterministic; its draws must matter here
    "batch_snapshots": 2,
    "min_per_quadrant": 0,
}
TASKS = (("GoToLocal", 1), ("GoToLocal", 2), ("PickupLoc", 3))


def _parameters(root: Path, **phase1) -> dict:
    return {
        "run": {"name": "labels-test", "seed": 1, "output_root": str(root)},
        "student": {"model": "tiny", "batch_size": 16},
        "env": {"levels": ["GoToLocal", "PickupLoc"]},
        "phase1": {**PHASE1, **phase1},
    }


def _params(root: Path, **phase1) -> Parameters:
    return Parameters.model_validate(_parameters(root, **phase1))


def _bot_states(level: str, seed: int) -> tuple[list[EnvState], list[str]]:
    """Every state along the bot's trajectory on a task, with the bot's action there."""
    task = EnvState(env_id(level), seed)
    actions, success = expert_trajectory(task, 64)
    assert success
    return [EnvState(task.env_id, seed, tuple(actions[:k])) for k in range(len(actions))], actions


@pytest.fixture(scope="module")
def snapshots(student) -> list[Snapshot]:
    """Five snapshots: the start and the last decision of two GoToLocal tasks, and the middle
    of a PickupLoc one."""
    picked = []
    for level, seed in TASKS:
        states, actions = _bot_states(level, seed)
        steps = (0, len(states) - 1) if level == "GoToLocal" else (len(states) // 2,)
        picked += [(states[k], actions[k], True) for k in steps]
    return expert_snapshots(student, picked)


def _label(params: Parameters, snapshots, out: Phase1Layout, student: Student):
    """Phase 1 labeling with the bot teacher, as the notebook runs it."""
    teacher = make_teacher(params)
    return label_snapshots(
        snapshots,
        params.phase1,
        params.run.seed,
        LocalWorkers(student),
        teacher,
        out,
        progress=False,
    )


@pytest.fixture(scope="module")
def labeled(tmp_path_factory, student, snapshots) -> Path:
    """An uninterrupted labeling run's folder."""
    root = tmp_path_factory.mktemp("labeled")
    out = Phase1Layout(root / "phase1")
    report = _label(_params(root), snapshots, out, student)
    write_plots(report.rows, report.thresholds, out)
    return out.folder


def _rows_by_id(folder: Path) -> dict[str, dict]:
    rows = read_jsonl(folder / "labeled_snapshots.jsonl")
    assert len({row["id"] for row in rows}) == len(rows)
    return {row["id"]: row for row in rows}


def _with_labels(snapshot: Snapshot, u: float, leverage: float | None) -> LabeledSnapshot:
    lever = None if leverage is None else Leverage(L_local=leverage, p_student=0, p_forced=0, n=1)
    return LabeledSnapshot.of(snapshot).model_copy(update={"U": u, "leverage": lever})


# --- measurements ------------------------------------------------------------------------------


def test_U_is_zero_for_one_hot_and_one_for_uniform_under_every_method():
    one_hot, uniform = np.eye(6)[2], np.full(6, 1 / 6)
    tie = np.array([0.5, 0.5, 0, 0, 0, 0])
    for method in ("entropy", "margin", "top1"):
        assert uncertainty(one_hot, method) == pytest.approx(0.0)
        assert uncertainty(uniform, method) == pytest.approx(1.0)
    assert uncertainty(tie, "entropy") == pytest.approx(np.log(2) / np.log(6))
    assert uncertainty(tie, "margin") == pytest.approx(1.0)
    assert uncertainty(tie, "top1") == pytest.approx(0.5 * 6 / 5)
    with pytest.raises(ValueError, match="U_method"):
        uncertainty(uniform, "variance")


def test_ELP_ELP_net_and_route_are_means_of_paired_differences():
    outcomes = {
        "base": np.array([0, 1, 0, 0, 1.0]),  # a fifth base rollout for leverage: left out
        "placebo": np.array([0, 1, 1, 0.0]),
        "demo": np.array([1, 1, 1, 0.0]),
        "hint": np.array([0, 1, 1, 0.0]),
        "contrast": np.array([1, 1, 1, 1.0]),
    }
    cpt = cpt_from_outcomes(outcomes)
    assert cpt.p == {"base": 0.25, "placebo": 0.5, "demo": 0.75, "hint": 0.5, "contrast": 1.0}
    assert cpt.ELP == {"demo": 0.5, "hint": 0.25, "contrast": 0.75}
    # demo - base = (1, 0, 1, 0): sd 0.577, se 0.289; contrast - placebo = (1, 0, 0, 1)
    assert cpt.ELP_se["demo"] == pytest.approx(np.std([1, 0, 1, 0], ddof=1) / 2, abs=1e-6)
    assert cpt.ELP_se["hint"] == 0.25  # (0, 0, 1, 0)
    assert cpt.route_net == "contrast"  # contrast - placebo = (1, 0, 0, 1), the best mean
    # streams 0-1 get the format best on streams 2-3 (contrast: its net there is (0, 1)),
    # streams 2-3 the one best on 0-1 (demo, first of the tie with contrast at (1, 0)):
    # credited (1, 0) + (0, 0)
    assert cpt.ELP_net == 0.25
    assert cpt.ELP_net_se == pytest.approx(np.std([1, 0, 0, 0], ddof=1) / 2, abs=1e-6)
    assert cpt.n_per_condition == 4
    tie = cpt_from_outcomes({**outcomes, "contrast": outcomes["demo"]})
    assert (tie.route_net, tie.ELP_net) == ("demo", 0.25)
    with pytest.raises(ValueError, match="placebo"):
        cpt_from_outcomes({c: v for c, v in outcomes.items() if c != "placebo"})
    with pytest.raises(ValueError, match="at least 2"):
        cpt_from_outcomes({c: v[:1] for c, v in outcomes.items()})


def test_cross_fitted_ELP_net_is_unbiased_on_a_planted_null():
    """No format beats the placebo (every condition succeeds with p = 0.4 on its own draws):
    over 4000 simulated snapshots of 8 streams, the mean cross-fitted ELP_net is within 3
    standard errors of 0, while the best format's own mean (the winner of three, measured on
    the streams it was picked on) sits well above 0."""
    rng = np.random.default_rng(0)
    credited, winners = [], []
    for _ in range(4000):
        outcomes = {c: (rng.random(8) < 0.4).astype(float) for c in CPT_CONDITIONS}
        credited.append(cpt_from_outcomes(outcomes).ELP_net)
        winners.append(max((outcomes[f] - outcomes["placebo"]).mean() for f in FORMATS))
    se = np.std(credited, ddof=1) / np.sqrt(len(credited))
    assert abs(np.mean(credited)) < 3 * se
    assert np.mean(winners) > 10 * se


# --- paired streams ----------------------------------------------------------------------------


def _played(student: Student, conditions, family: str = LABELS, **settings):
    """Each condition's action sequences, its rollouts in one `run_episodes` call."""
    specs = [spec for condition in conditions for spec in condition.specs(1, family)]
    episodes = run_episodes(student, specs, 5, 5.0, **settings)
    actions = [tuple(episode.actions) for episode in episodes]
    n = conditions[0].n
    return [actions[k * n : (k + 1) * n] for k in range(len(conditions))]


def test_conditions_with_one_intervention_follow_one_trajectory_per_stream(student, snapshots):
    snapshot = snapshots[0]
    base, renamed, patched, patched_again = _played(
        student,
        [
            RolloutCondition(snapshot, "base", 6),
            RolloutCondition(snapshot, "another name", 6),
            RolloutCondition(snapshot, "placebo", 6, patch="A teacher is watching you."),
            RolloutCondition(snapshot, "demo", 6, patch="A teacher is watching you."),
        ],
    )
    assert base == renamed and patched == patched_again
    assert len(set(base)) > 1  # the streams differ from one rollout to the next
    (retest,) = _played(student, [RolloutCondition(snapshot, "base", 6)], RETEST)
    assert retest != base  # another stream family draws anew


def test_forcing_the_action_a_stream_would_take_changes_nothing(student, snapshots):
    snapshot = snapshots[0]
    (base,) = _played(student, [RolloutCondition(snapshot, "base", 6)])
    for index, actions in enumerate(base):
        same, other = (
            RolloutCondition(snapshot, "forced", index + 1, forced_action=action)
            for action in (actions[0], next(a for a in snapshot.valid_actions if a != actions[0]))
        )
        (forced_same, forced_other) = _played(student, [same, other])
        assert forced_same[index] == actions  # the forced action still consumed its draw
        assert forced_other[index][0] != actions[0]


def test_identical_prompts_are_scored_once_across_conditions(
    student, snapshots, tmp_path, monkeypatch
):
    scored = []
    score = student.action_logprobs

    def counting(prompts, *args, **kwargs):
        scored.extend(prompts)
        return score(prompts, *args, **kwargs)

    monkeypatch.setattr(student, "action_logprobs", counting)
    params = _params(tmp_path, n_rollouts=3, n_per_condition=3)
    answer = make_teacher(params).advise([teacher_request(snapshots[1])])
    shared = measure(student, snapshots[1:2], answer, params.phase1, params.run.seed)
    assert len(scored) == len(set(scored))
    once = len(scored)
    scored.clear()
    alone = measure(
        student, snapshots[1:2], answer, params.phase1, params.run.seed, share_scores=False
    )
    assert len(scored) > 2 * once  # 18 rollouts, most rejoining the base trajectory
    assert alone == shared


def test_forcing_the_finishing_action_gives_leverage_whose_interval_excludes_zero(
    student, tmp_path
):
    states, actions = _bot_states("GoToLocal", 2)
    last, start = expert_snapshots(
        student, [(states[-1], actions[-1], True), (states[0], actions[0], True)]
    )
    params = _params(tmp_path, n_rollouts=8, L_upper=True)
    near, far = measure(
        student, [last, start], [None, None], params.phase1, params.run.seed, cpt=False
    )
    assert near.cpt is None
    assert near.leverage.p_forced == 1.0
    assert near.leverage.L_local == pytest.approx(1.0 - near.leverage.p_student)
    assert near.leverage.L_local - 1.96 * near.leverage.se > 0
    assert near.leverage.L_upper == 1.0
    assert near.leverage.n == 8
    assert far.leverage.p_forced < 1.0  # six bot actions away, five steps allowed


# --- quadrants ---------------------------------------------------------------------------------


def test_quadrants_on_the_threshold_boundaries(snapshots):
    snapshot = snapshots[0]
    cases = [
        (0.5, 0.0, "Q1_highU_highL"),  # both on the thresholds: high
        (0.9, -0.01, "Q2_highU_lowL"),
        (0.4999, -0.5, "Q3_lowU_lowL"),
        (0.0, 0.0, "Q4_lowU_highL"),
        (0.5, None, None),  # no leverage, no quadrant
    ]
    rows = [_with_labels(snapshot, u, leverage) for u, leverage, _ in cases]
    assigned = assign_quadrants(rows, u_threshold=0.5, l_threshold=0.0)
    assert [row.quadrant for row in assigned] == [quadrant for *_, quadrant in cases]
    counts = quadrant_counts(row.quadrant for row in assigned)
    assert counts == dict.fromkeys(QUADRANTS, 1)


def test_auto_thresholds_small_quadrant_warnings_and_chosen_file_precedence(snapshots, tmp_path):
    values = [(0.1, -0.5), (0.2, 0.0), (0.3, 0.5), (0.4, 1.0), (0.9, 1.0)]
    rows = [_with_labels(snapshots[0], u, leverage) for u, leverage in values]
    params = _params(tmp_path, min_per_quadrant=2)
    with pytest.warns(UserWarning, match="min_per_quadrant=2"):
        auto = place_in_quadrants(rows, Phase1Layout(tmp_path), params.phase1)
    assert (auto.thresholds.U, auto.thresholds.L, auto.thresholds.source) == (0.3, 0.5, "auto")
    assert auto.counts == {
        "Q1_highU_highL": 3,
        "Q2_highU_lowL": 0,
        "Q3_lowU_lowL": 2,
        "Q4_lowU_highL": 0,
    }
    assert len(auto.warnings) == 2  # Q2 and Q4 hold fewer than 2
    assert load_thresholds(Phase1Layout(tmp_path)).source == "auto"
    fixed = _params(tmp_path, thresholds="fixed", U_threshold=0.15, L_threshold=-1.0)
    place_in_quadrants(rows, Phase1Layout(tmp_path), fixed.phase1)
    chosen = load_thresholds(Phase1Layout(tmp_path))
    assert (chosen.U, chosen.L, chosen.source) == (0.15, -1.0, "parameters")
    assert read_json(tmp_path / "quadrant_thresholds_auto.json")["U"] == 0.3


def test_auto_thresholds_respect_ties_so_no_side_is_empty():
    # Most leverage values are 0 at a few rollouts: the plain median (0) would count every
    # snapshot as high-L; the cut moves to the smallest L above 0.
    rng = np.random.default_rng(0)
    u_values = rng.uniform(0.2, 0.8, size=40)
    l_values = np.array([0.0] * 27 + [0.25] * 4 + [0.5] * 4 + [1.0] * 5)
    auto = auto_thresholds(u_values, rng.permutation(l_values), 0.5, 0.5)
    assert np.median(l_values) == 0.0 and auto.L == 0.25
    assert int((l_values >= auto.L).sum()) == 13
    assert int((u_values >= auto.U).sum()) == 20  # distinct values split as the median does


# --- labeling runs -----------------------------------------------------------------------------


def test_rows_hold_every_label_and_the_files_agree(labeled, snapshots):
    rows = read_jsonl(labeled / "labeled_snapshots.jsonl")
    assert rows == read_json(labeled / "labeled_snapshots.json")
    assert [row["id"] for row in rows] == [s.id for s in snapshots]
    for row, snapshot in zip(rows, snapshots, strict=True):
        label = LabeledSnapshot.model_validate(row)
        assert label.expert_action == snapshot.expert_action
        assert (
            pytest.approx(
                uncertainty(np.array(list(snapshot.student_distribution.values()))), abs=1e-6
            )
            == label.U
        )
        assert label.U_method == "entropy"
        assert label.leverage.n == 2 and label.cpt.n_per_condition == 2
        assert label.teacher.suggested_action == snapshot.expert_action
        assert label.quadrant in QUADRANTS
    for name in ("hist_U.png", "hist_L.svg", "scatter_U_L.png", "quantiles.json"):
        assert (labeled / "threshold_plots" / name).is_file()
    quantiles = read_json(labeled / "threshold_plots" / "quantiles.json")
    assert list(quantiles["U"]) == [f"{q / 10:.1f}" for q in range(1, 10)]
    assert [row.quadrant for row in load_labeled(Phase1Layout(labeled))] == [
        row["quadrant"] for row in rows
    ]


def test_labeling_again_gives_identical_rows_whatever_the_batching_or_order(
    labeled, snapshots, student, tmp_path
):
    again = tmp_path / "again"
    _label(_params(tmp_path), snapshots, Phase1Layout(again), student)
    assert (again / "labeled_snapshots.jsonl").read_bytes() == (
        labeled / "labeled_snapshots.jsonl"
    ).read_bytes()

    reshaped = Student(
        student.model, student.tokenizer, student.params.model_copy(update={"batch_size": 3})
    )
    shuffled = tmp_path / "shuffled"
    params = _params(tmp_path, batch_snapshots=5)
    _label(params, snapshots[::-1], Phase1Layout(shuffled), reshaped)
    assert _rows_by_id(shuffled) == _rows_by_id(labeled)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_files_without_duplicates(
    labeled, snapshots, student, tmp_path
):
    killed = tmp_path / "killed"
    params = _params(tmp_path)
    _label(params, snapshots[:2], Phase1Layout(killed), student)
    first_row = (killed / "labeled_snapshots.jsonl").read_text().splitlines()[0]
    with (killed / "labeled_snapshots.jsonl").open("a") as log:
        log.write(first_row[: len(first_row) // 2])  # a row torn by the kill
    (killed / "labeled_snapshots.json").unlink()
    report = _label(params, snapshots, Phase1Layout(killed), student)
    assert report.newly_labeled == len(snapshots) - 2
    for name in ("labeled_snapshots.jsonl", "labeled_snapshots.json"):
        assert (killed / name).read_bytes() == (labeled / name).read_bytes()

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    lines = (labeled / "labeled_snapshots.jsonl").read_text().splitlines(keepends=True)
    (truncated / "labeled_snapshots.jsonl").write_text("".join(lines[:3]) + lines[3][:40])
    report = _label(params, snapshots, Phase1Layout(truncated), student)
    assert report.newly_labeled == len(snapshots) - 3
    assert (truncated / "labeled_snapshots.jsonl").read_bytes() == (
        labeled / "labeled_snapshots.jsonl"
    ).read_bytes()


def test_the_reliability_panel_is_labeled_again_on_its_own_streams_and_resumes(
    labeled, snapshots, student, tmp_path
):
    folder = Path(shutil.copytree(labeled, tmp_path / "phase1"))
    params = _params(tmp_path, reliability_panel=3)
    report = _label(params, snapshots, Phase1Layout(folder), student)
    assert report.newly_labeled == 0  # the panel's size does not shape the labels
    record = read_json(folder / "reliability.json")
    panel = reliability_panel(report.rows, 3, params.run.seed)
    assert record["panel"] == [row.id for row in panel]
    smaller = reliability_panel(report.rows, 2, params.run.seed)
    assert {row.id for row in smaller} < set(record["panel"])  # growing keeps the retests
    estimates = load_reliability(Phase1Layout(folder))
    assert estimates == report.reliability
    assert set(estimates) == {"U", "L_local", "ELP_net"}
    assert all(e.n == 3 for e in estimates.values())
    assert estimates["U"].value == 1.0 and "by construction" in record["notes"]["U"]
    table = reliability_table(estimates)
    assert list(table.index) == ["U", "L_local", "ELP_net"]
    assert (table.loc["U", "r"], table.loc["U", "n"]) == (1.0, 3)
    retest = {row["id"]: row for row in read_jsonl(folder / "reliability.jsonl")}
    assert list(retest) == record["panel"]
    first = _rows_by_id(folder)
    for i, row in retest.items():
        assert row["U"] == first[i]["U"] and row["teacher"] == first[i]["teacher"]
        assert row["leverage"]["n"] == 2 and row["cpt"]["n_per_condition"] == 2

    log = folder / "reliability.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[1][:30])  # a kill after the first row
    (folder / "reliability.json").unlink()
    again = _label(params, snapshots, Phase1Layout(folder), student)
    assert read_jsonl(log) == list(retest.values())
    assert again.reliability == report.reliability
    assert read_json(folder / "reliability.json") == record

    _label(_params(tmp_path), snapshots, Phase1Layout(folder), student)
    assert not (folder / "reliability.json").exists()  # no panel, no stale figures
    assert load_reliability(Phase1Layout(folder)) == {}


def test_the_retest_rolls_out_on_the_retest_streams(
    labeled, snapshots, student, tmp_path, monkeypatch
):
    families = []

    def spy(*args, **kwargs):
        families.append(kwargs.get("family", LABELS))
        return measure(*args, **kwargs)

    monkeypatch.setattr(labeling, "measure", spy)
    folder = Path(shutil.copytree(labeled, tmp_path / "phase1"))
    _label(_params(tmp_path, reliability_panel=2), snapshots, Phase1Layout(folder), student)
    assert families == [RETEST]  # every label is logged already: only the retest rolls out


def test_skipped_labels_are_null_and_a_parameter_change_starts_afresh(
    labeled, snapshots, student, tmp_path
):
    folder = Path(shutil.copytree(labeled, tmp_path / "phase1"))
    params = _params(tmp_path, skip_cpt=True)
    with pytest.warns(UserWarning, match="starts afresh"):
        report = _label(params, snapshots, Phase1Layout(folder), student)
    assert report.newly_labeled == len(snapshots)
    assert any("skip_cpt" in note for note in report.notes)
    rows = _rows_by_id(folder)
    before = _rows_by_id(labeled)
    assert all(row["cpt"] is None for row in rows.values())
    assert {i: row["leverage"] for i, row in rows.items()} == {
        i: row["leverage"] for i, row in before.items()
    }

    params = _params(tmp_path, skip_cpt=True, skip_leverage=True)
    with pytest.warns(UserWarning, match="starts afresh"):
        report = _label(params, snapshots, Phase1Layout(folder), student)
    assert all(row.leverage is None and row.quadrant is None for row in report.rows)
    assert any("no quadrants" in note for note in report.notes)
    assert write_plots(report.rows, report.thresholds, Phase1Layout(folder)) == [
        folder / "threshold_plots" / name for name in ("hist_U.png", "hist_U.svg", "quantiles.json")
    ]


# --- the label commands ------------------------------------------------------------------------


@pytest.mark.slow
def test_label_steps_from_the_command_line_match_one_labeling_run(
    labeled, snapshots, student, tmp_path, capsys
):
    params_file = tmp_path / "labels.yaml"
    params_file.write_text(yaml.safe_dump(_parameters(tmp_path / "runs")))
    run_dir = _params(tmp_path / "runs").run_dir
    save_preparation(
        RunLayout(run_dir).phase0, student.params, {"skipped": "the tiny student as is"}
    )
    source = tmp_path / "snapshots.json"
    save_snapshots(source, snapshots)
    out = tmp_path / "steps"
    labeled_log = out / "labeled_snapshots.jsonl"

    def label(step: str, given: Path, *extra: str) -> int:
        args = ["--params", str(params_file), "--input", str(given), "--output-dir", str(out)]
        return main(["label", step, *args, *extra])

    assert label("cpt", source) == 2
    assert "label hints" in capsys.readouterr().err
    assert label("hints", source) == 0
    for step in ("uncertainty", "leverage", "cpt"):
        assert label(step, labeled_log) == 0
    assert label("quadrants", labeled_log, "--U-threshold", "0.5", "--L-threshold", "0") == 0
    assert label("plots", labeled_log) == 0

    stepwise, whole = _rows_by_id(out), _rows_by_id(labeled)
    for key in ("U", "leverage", "cpt", "teacher"):
        assert {i: row[key] for i, row in stepwise.items()} == {
            i: row[key] for i, row in whole.items()
        }
    chosen = read_json(out / "quadrant_thresholds.json")
    assert (chosen["U"], chosen["L"], chosen["source"]) == (0.5, 0.0, "command line")
    expected = [
        r.quadrant
        for r in assign_quadrants(
            [LabeledSnapshot.model_validate(r) for r in stepwise.values()], 0.5, 0.0
        )
    ]
    assert [row["quadrant"] for row in stepwise.values()] == expected
    assert (out / "threshold_plots" / "scatter_U_L.png").is_file()
    assert json.loads((out / "labeled_snapshots.json").read_text()) == read_jsonl(labeled_log)

    assert label("hints", tmp_path / "missing.json") == 2
    assert "missing.json" in capsys.readouterr().err


# --- inputs ------------------------------------------------------------------------------------


def test_phase1_splits_the_named_phase0_snapshots_once_and_draws_its_parts(snapshots, tmp_path):
    shares = {"test_share": 0.34, "pool_share": 0.34}
    params = _params(
        tmp_path, snapshots="both", split=shares, max_snapshots=1, max_test_snapshots=1
    )
    phase0 = params.layout.phase0
    save_snapshots(phase0.failure_snapshots, snapshots[:3])
    save_snapshots(phase0.expert_snapshots, snapshots[3:])
    chosen = phase1_snapshots(params.phase1, params.run.seed, phase0, params.layout.split)
    saved = Split.load(params.layout.split)
    assert saved == chosen.split and saved.sources == ["failure", "expert"]
    assert {part: count["tasks"] for part, count in saved.counts().items()} == {
        "labeled": 1,
        "pool": 1,
        "test": 1,
    }
    for part, picked in (("labeled", chosen.labeled), ("test", chosen.test)):
        ids = saved.parts[part].snapshots
        assert len(picked) == 1 and picked[0].id in ids  # capped at 1, from its own part
    assert not {s.id for s in chosen.labeled + chosen.test} & set(saved.parts["pool"].snapshots)

    only_failures = _params(tmp_path, snapshots="failure", split=shares)
    again = phase1_snapshots(only_failures.phase1, 1, phase0, tmp_path / "failure_split.json")
    listed = [i for part in again.split.parts.values() for i in part.snapshots]
    assert sorted(listed) == sorted(s.id for s in snapshots[:3])
    assert [s.id for s in again.labeled] == again.split.parts["labeled"].snapshots  # file order


def test_test_snapshots_get_u_and_the_labels_leverage_and_nothing_else(
    labeled, snapshots, student, tmp_path
):
    params = _params(tmp_path)
    out = Phase1Layout(tmp_path / "phase1")
    workers = LocalWorkers(student)
    first = label_test_snapshots(snapshots[:2], params.phase1, 1, workers, out, progress=False)
    full = _rows_by_id(labeled)
    for row in first:
        assert row.teacher is None and row.cpt is None
        assert full[row.id]["U"] == row.U
        assert row.leverage.model_dump(mode="json") == full[row.id]["leverage"]  # same streams
    edited = first[0].model_copy(update={"U": 0.123})
    write_jsonl(out.test_labels, [edited.model_dump(mode="json")])
    rows = label_test_snapshots(snapshots[:3], params.phase1, 1, workers, out, progress=False)
    assert [row.id for row in rows] == [s.id for s in snapshots[:3]]
    assert rows[0].U == 0.123, "a logged row is kept, not labeled again"
    assert [row["id"] for row in read_jsonl(out.test_labels)] == [row.id for row in rows]
    save_thresholds(out.thresholds_auto, Thresholds(U=0.5, L=0.0, source="auto"))
    assert all(row.quadrant in QUADRANTS for row in load_labeled(out, "test"))


def test_bad_rows_and_bad_parameters_are_named(snapshots, tmp_path):
    row = LabeledSnapshot.of(snapshots[0]).model_dump(mode="json")
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({**row, "U": "high"}) + "\n")
    with pytest.raises(SnapshotError, match=rf"rows\.jsonl: snapshot {row['id']}: U"):
        load_replayed_rows(path)
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(SnapshotError, match="appears twice"):
        load_replayed_rows(path)
    with pytest.raises(ParameterError, match="phase1"):
        parse_parameters(
            {"phase1": {"thresholds": "fixed", "U_threshold": 0.5}}, tmp_path / "p.yaml"
        )
