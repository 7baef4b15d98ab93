"""Paper artifacts: every figure and table is built from a run folder's files alone, a partial
run gets the artifacts its phases allow (the others skipped with their reason), `teachable
check` fails when a built artifact is removed, and the artifacts phase goes stale when a phase
file it reads changes.

The run folder is written by the phases' own functions and writers on real BabyAI snapshots of
the tiny student, except that the episodes behind Phase 3's and Phase 5's tables and Phase 1B's
micro-training deltas are drawn with a seeded generator: the random tiny student never solves a
retention task, so its real outputs cannot show a reliability-retention frontier.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from labeled_rows import labeled_rows

from teachable.__main__ import main
from teachable.measure.cpt_gate import gate
from teachable.measure.verdicts import judge
from teachable.models.evaluation import tabulate
from teachable.models.selection import Pool, learnability, selector
from teachable.models.student import Student
from teachable.models.training_runs import MatrixRun, save_summary
from teachable.parameters import Parameters
from teachable.phases.phase2_matrix import plan_matrix
from teachable.phases.phase3_evaluation import phase3_verdicts
from teachable.phases.phase4_predictor import train_predictor
from teachable.phases.phase5_selection import (
    Bought,
    plan_selections,
    selection_summary,
    training_runs,
)
from teachable.pipeline.runner import (
    NOTEBOOKS_DIR,
    PHASES,
    check_inputs,
    parameters_digest,
    stale_reason,
    stamp_path,
)
from teachable.records.adapter_probe import AdapterProbe
from teachable.records.cpt_validation import MicroResult, result_frame
from teachable.records.dose import Dose
from teachable.records.estimate import Estimate
from teachable.records.evaluation import Evaluation, save_evaluation
from teachable.records.labeled import CPT, LabeledSnapshot, Leverage, assign_quadrants, save_labeled
from teachable.records.layout import RunLayout
from teachable.records.quadrants import Thresholds, save_thresholds
from teachable.records.selection import SelectionSummary
from teachable.records.store import read_json, write_json
from teachable.records.training_summary import BASE, RunEntry
from teachable.records.verdicts import Verdicts, save_phase_verdicts
from teachable.reports.artifacts import ARTIFACTS, build_artifacts
from teachable.vocabulary import ACTIONS, QUADRANTS
from teachable.world.splits import split_snapshots

TASKS = [("GoToLocal", seed) for seed in (2, 3, 4, 5, 6, 10)] + [("PickupLoc", 2), ("PickupLoc", 3)]
SUCCESS = {"random": 0.4, "entropy": 0.5, "predictor": 0.7, "oracle": 0.8, "learnability": 0.5}


def parameters(root: Path) -> Parameters:
    return Parameters.model_validate(
        {
            "run": {"seed": 0, "output_root": str(root), "name": "paper"},
            "student": {"model": "tiny"},
            "env": {"levels": ["GoToLocal", "PickupLoc"]},
            "phase4": {"embedding_dim": 32, "hidden": 8, "epochs": 2, "k": [2, 3]},
            "phase2": {"n_train": 2, "seeds": [0, 1]},
            "evaluation": {"bootstrap_resamples": 200},
            "phase5": {"budget": 3, "seeds": [0, 1]},
        }
    )


def labeled(student: Student, rng: np.random.Generator) -> list[LabeledSnapshot]:
    """Real snapshots with seeded labels, in the quadrants of U = 0.5 and L = 0."""
    rows = []
    for row in labeled_rows(student, TASKS, per_task=2):
        u, p_student, leverage, elp = np.round(rng.uniform([0, 0, -0.5, -1], [1, 0.5, 0.5, 1]), 3)
        rates = {"base": 0.0, "placebo": 0.0, "demo": elp, "hint": 0.0, "contrast": 0.0}
        update = {
            "U": u,
            "leverage": Leverage(
                L_local=leverage, p_student=p_student, p_forced=p_student + leverage, n=2
            ),
            "cpt": CPT(
                p=rates,
                ELP={"demo": elp, "hint": 0.0, "contrast": 0.0},
                ELP_net=elp,
                route_net="demo",
                n_per_condition=2,
            ),
        }
        rows.append(row.model_copy(update=update))
    return assign_quadrants(rows, 0.5, 0.0)


def figure(value: float, n: int) -> Estimate:
    return Estimate(value=value, low=value - 0.1, high=value + 0.1, n=n)


PROBE = AdapterProbe(  # a micro-training's drift and specificity, as Phase 1B records them
    drift=figure(0.02, 20),
    expert_change=figure(0.0, 20),
    target_change=figure(1.5, 1),
    specificity=figure(1.2, 21),
    n_probes=20,
    n_trained=1,
)


def micro_results(rows: list[LabeledSnapshot], rng: np.random.Generator) -> list[MicroResult]:
    """Phase 1B results whose deltas follow ELP_net with noise; each control trains on the
    first wrong action and changes nothing, so the raw and the corrected delta agree."""
    results = []
    for row in rows:
        before = 0.25
        after = float(np.clip(before + row.cpt.ELP_net / 2 + rng.normal(0, 0.1), 0, 1))
        results.append(
            MicroResult(
                id=row.id,
                quadrant=row.quadrant,
                level=row.level,
                ELP_net=row.cpt.ELP_net,
                route_net="demo",
                U=row.U,
                L_local=row.L,
                format="demo",
                target=row.expert_action,
                before=before,
                after=after,
                delta=after - before,
                logp_before=-1.5,
                logp_after=-1.5 + row.cpt.ELP_net,
                delta_logp=row.cpt.ELP_net,
                control_target=next(a for a in ACTIONS if a != row.expert_action),
                control_after=before,
                control_delta=0.0,
                delta_vs_control=after - before,
                control_logp_after=-1.6,
                control_delta_logp=-0.1,
                dose=Dose(learning_rate=1e-3, steps=4, anchor_weight=5.0),
                probe=PROBE,
                n_rollouts=4,
                losses=[1.0, 0.5],
                seconds=0.1,
                key="synthetic",
            )
        )
    return results


def episodes(model: str, rate: float, test: list[LabeledSnapshot], rng) -> dict:
    """A model's logged episodes: 8 held-out tasks, the test snapshots and 6 retention tasks
    (on a training level and on GoToObj), each a success with probability `rate`."""
    starts = [("tasks", f"task{i}", "GoToLocal", None) for i in range(8)]
    starts += [("snapshots", row.id, row.level, row.quadrant) for row in test]
    starts += [("retention", f"ret{i}", ("GoToLocal", "GoToObj")[i % 2], None) for i in range(6)]
    return {
        "model": model,
        "episodes": [
            {
                "suite": suite,
                "key": key,
                "episode": 0,
                "mode": "sampled",
                "env_id": f"BabyAI-{level}-v0",
                "level": level,
                "seed": index,
                "quadrant": quadrant,
                "success": bool(rng.random() < rate),
                "steps": 5,
                "loop": bool(rng.random() < 0.3),
                "steps_without_progress": 1,
                "timeout": False,
                "actions": [],
            }
            for index, (suite, key, level, quadrant) in enumerate(starts)
        ],
    }


def trained_entry(run: MatrixRun) -> RunEntry:
    trained = run.skip is None
    return run.entry(
        status="trained" if trained else "skipped",
        reason=run.skip,
        adapter=run.id if trained else None,
    )


def evaluate(params, runs, test, rates, rng) -> Evaluation:
    entries = [trained_entry(run) for run in runs]
    logged = [episodes(BASE, 0.6, test, np.random.default_rng(1))]
    logged += [episodes(e.id, rates(e.id), test, rng) for e in entries if e.status == "trained"]
    return tabulate(params.env.levels, entries, logged)


@pytest.fixture(scope="module")
def run_dir(student, tmp_path_factory) -> Path:
    """A run folder with the files of phases 1 to 5, and its artifacts built."""
    rng = np.random.default_rng(0)
    params = parameters(tmp_path_factory.mktemp("runs"))
    run_dir = params.run_dir
    run = params.layout
    rows = labeled(student, rng)
    save_labeled(run.phase1, rows)
    save_thresholds(run.phase1.thresholds_auto, Thresholds(U=0.5, L=0.0, source="auto"))
    results = micro_results(rows[:10], rng)
    write_json(
        run_dir / "phase1b" / "micro_training_results.json",
        [r.model_dump(mode="json") for r in results],
    )
    correlation = gate(result_frame(results), 0, 200)
    write_json(run_dir / "phase1b" / "cpt_correlation.json", correlation.model_dump(mode="json"))
    save_phase_verdicts(run.verdicts, "phase1b", correlation.verdicts)
    split = split_snapshots(rows, 0.3, 0.25, 0, ["failure"])
    split.save(run.split)
    test = split.rows("test", rows)
    matrix = plan_matrix(split.rows("labeled", rows), params.phase2, seed=0)
    entries = [trained_entry(cell) for cell in matrix]
    save_summary(run.phase2, params.phase2.over(params.lora), run.split, entries)
    evaluation = evaluate(params, matrix, test, lambda _: rng.uniform(0.3, 0.9), rng)
    save_evaluation(evaluation, run.phase3)
    save_phase_verdicts(run.verdicts, "phase3", phase3_verdicts(evaluation))
    train_predictor(rows, params.phase4, run.phase4, run.verdicts, resamples=200)
    pool = split.rows("pool", rows)
    predictor = run.phase4.predictor_model
    scores = {
        "entropy": {row.id: row.U for row in pool},
        "predictor": selector("predictor").scores(Pool(pool, "entropy", predictor), {}),
        "oracle": {row.id: row.cpt.ELP_net for row in pool},
        "learnability": {row.id: learnability(row.leverage.p_student) for row in pool},
    }
    picks = plan_selections(params.phase5, pool, pool, scores, 0)
    plans = training_runs(params.phase5, picks, {row.id: row for row in pool})
    evaluations = {
        method: evaluate(params, runs, test, lambda _, m=method: SUCCESS[m], rng)
        for method, runs in plans.items()
    }
    lora = params.phase5.over(params.lora)
    summary = selection_summary(
        params.phase5,
        params.evaluation,
        lora,
        plans,
        evaluations,
        len(pool),
        Bought(candidates=pool, labels={}, costs={}),
    )
    write_json(run.phase5.summary, summary.model_dump(mode="json"))
    save_phase_verdicts(run.verdicts, "phase5", summary.verdicts)
    build_artifacts(run)
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    """The run folder copied elsewhere: nothing outside it is needed to rebuild."""
    return Path(shutil.copytree(run_dir, tmp_path / "moved" / run_dir.name))


@pytest.mark.slow
def test_every_figure_and_table_is_built_in_every_format(run_dir):
    record = read_json(run_dir / "artifacts.json")
    assert record["skipped"] == {}
    assert set(record["built"]) == {f"{a.kind} {a.name}" for a in ARTIFACTS}
    for name, files in record["built"].items():
        paths = [run_dir / file for file in files]
        if name.startswith("figure"):
            assert [p.suffix for p in paths] == [".png", ".svg"]
            assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert "<svg" in paths[1].read_text()
        else:
            assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
            table = pd.read_csv(paths[0])
            assert len(table) >= 1
            assert paths[1].read_text().count("\n") == len(table) + 2  # header, rule, rows
            assert "\\begin{tabular}" in paths[2].read_text()
            assert "\\_" in paths[2].read_text() or "_" not in paths[2].read_text()


@pytest.mark.slow
def test_tables_carry_the_numbers_of_the_phase_files(run_dir):
    tables = run_dir / "tables"
    labels = pd.DataFrame(read_json(run_dir / "phase1" / "labeled_snapshots.json"))
    quadrants = pd.read_csv(tables / "quadrants.csv").set_index("quadrant")
    assert quadrants["snapshots"].to_dict() == {
        q: int((labels["quadrant"] == q).sum()) for q in QUADRANTS
    }
    overall = pd.read_csv(run_dir / "phase3" / "v8" / "overall_task_results.csv")
    cells = overall[overall["unit"] == "cell"]
    matrix = pd.read_csv(tables / "training_matrix.csv").set_index(["trained on", "format"])
    for cell in cells[cells["status"] == "evaluated"].itertuples():
        row = matrix.loc[(cell.quadrant, cell.format)]
        assert (row["gain"], row["gain_low"], row["gain_high"]) == pytest.approx(
            (cell.gain, cell.gain_low, cell.gain_high)
        )
    skipped = cells[cells["status"] == "skipped"]
    assert all(np.isnan(matrix.loc[(r.quadrant, r.format), "gain"]) for r in skipped.itertuples())
    summary = SelectionSummary.load(RunLayout(run_dir).phase5.summary)
    selection = pd.read_csv(tables / "selection.csv").set_index("method")
    for method, result in summary.methods.items():
        assert selection.loc[method, ["gain", "ci_low", "ci_high"]].tolist() == pytest.approx(
            [result.gain.value, result.gain.low, result.gain.high]
        )
        assert selection.loc[method, "retention_drop"] == pytest.approx(result.retention_drop.value)
    frontier = pd.read_csv(tables / "reliability_retention_frontier.csv")
    assert frontier["pareto"].any() and len(frontier) == len(cells) - len(skipped)


@pytest.mark.slow
def test_the_verdicts_table_holds_every_verdict_of_the_run(run_dir):
    verdicts = Verdicts.load(run_dir / "verdicts.json").verdicts
    phases = [v.phase for v in verdicts]
    assert sorted(set(phases)) == ["phase1b", "phase3", "phase4", "phase5"]
    assert phases.count("phase1b") == 2 and phases.count("phase4") == 5
    table = pd.read_csv(run_dir / "tables" / "verdicts.csv")
    assert list(table["criterion"]) == [verdict.criterion for verdict in verdicts]
    assert list(table["outcome"]) == [verdict.outcome for verdict in verdicts]
    assert list(table["n"].astype(str)) == [verdict.estimate.size() for verdict in verdicts]
    assert any(" x " in verdict.estimate.size() for verdict in verdicts), "n given by its parts"
    for row, verdict in zip(table.itertuples(), verdicts, strict=True):
        for column in ("value", "low", "high"):
            expected = getattr(verdict.estimate, column)
            if expected is None:
                assert np.isnan(getattr(row, column))
            else:
                assert getattr(row, column) == pytest.approx(expected)
    markdown = (run_dir / "tables" / "verdicts.md").read_text()
    assert "inconclusive" in markdown or "holds" in markdown or "fails" in markdown


def test_the_verdicts_table_is_skipped_until_a_phase_judges(tmp_path):
    run = RunLayout(tmp_path / "runs" / "early")
    run.folder.mkdir(parents=True)
    build_artifacts(run)
    assert "table verdicts" in read_json(run.artifacts)["skipped"]
    estimate = Estimate(value=0.2, low=-0.1, high=0.5, n=12)
    rho = judge("phase1b", "rho", "rho(ELP_net, delta) >= 0.3", estimate, ">=", 0.3)
    save_phase_verdicts(run.verdicts, "phase1b", [rho])
    build_artifacts(run)
    assert read_json(run.artifacts)["built"]["table verdicts"] == [
        "tables/verdicts.csv",
        "tables/verdicts.md",
        "tables/verdicts.tex",
    ]
    [row] = pd.read_csv(run.tables / "verdicts.csv").to_dict("records")
    assert row | {"note": ""} == {
        "phase": "phase1b",
        "criterion": "rho",
        "role": "primary",
        "claim": "rho(ELP_net, delta) >= 0.3",
        "value": 0.2,
        "low": -0.1,
        "high": 0.5,
        "n": 12,
        "side": ">=",
        "threshold": 0.3,
        "outcome": "inconclusive",
        "note": "",
    }


@pytest.mark.slow
def test_a_partial_run_gets_what_its_phases_allow_and_says_what_it_skipped(run_dir, tmp_path):
    partial = copy_of(run_dir, tmp_path)
    for phase in ("phase1b", "phase3", "phase5"):
        shutil.rmtree(partial / phase)
    written = build_artifacts(RunLayout(partial))
    record = read_json(partial / "artifacts.json")
    assert set(record["built"]) == {
        "figure quadrant_scatter",
        "table quadrants",
        "figure predictor_metrics",
        "table predictor_metrics",
        "table verdicts",
    }
    assert len(written) == 2 * 2 + 3 * 3
    skipped = record["skipped"]
    assert len(skipped) == len(ARTIFACTS) - 5
    assert "phase1b/micro_training_results.json is missing" in skipped["figure cpt_validation"]
    assert "phase3/v8/transfer_summary.json is missing" in skipped["table transfer_summary"]
    assert "phase5/selection/selection_summary.json is missing" in skipped["figure selection"]
    left = {path.name for folder in ("figures", "tables") for path in (partial / folder).iterdir()}
    assert left == {path.name for path in written}, "files of skipped artifacts are removed"


@pytest.mark.slow
def test_check_fails_when_a_built_artifact_is_removed(run_dir, tmp_path, capsys):
    moved = copy_of(run_dir, tmp_path)
    assert main(["check", str(moved)]) == 0
    assert "PASS  paper artifacts" in capsys.readouterr().out
    (moved / "figures" / "transfer_heatmap.svg").unlink()
    assert main(["check", str(moved)]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1
    assert "paper artifacts" in failed[0] and "transfer_heatmap.svg" in failed[0]


@pytest.mark.slow
def test_the_artifacts_phase_goes_stale_when_a_file_it_reads_changes(run_dir, tmp_path):
    moved = copy_of(run_dir, tmp_path)
    params = parameters(moved.parent)
    phase = next(phase for phase in PHASES if phase.name == "artifacts")
    stamp = {"parameters_sha256": parameters_digest(params, phase), "finished_at": "now"}
    write_json(stamp_path(params, phase), stamp)
    later = time.time() + 3600
    os.utime(moved / "artifacts.json", (later, later))
    shutil.rmtree(moved / "phase1b")  # a phase it reads but the run lacks is no error
    check_inputs(params, phase)
    assert stale_reason(params, phase, NOTEBOOKS_DIR) is None
    summary = moved / "phase5" / "selection" / "selection_summary.json"
    os.utime(summary, (later + 60, later + 60))
    assert stale_reason(params, phase, NOTEBOOKS_DIR) == f"{summary} is newer than its outputs"
