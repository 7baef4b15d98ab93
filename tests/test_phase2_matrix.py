"""Phase 2: the training matrix on smoke-sized inputs, only on the split's labeled part, its
skips, and its resumption."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from labeled_rows import labeled_rows

from teachable.models.instrument import Instrument
from teachable.models.student import Student
from teachable.models.workers import LocalWorkers
from teachable.parameters import Parameters, Phase2Parameters
from teachable.phases.phase2_matrix import plan_matrix, train_matrix
from teachable.records.layout import TrainingLayout
from teachable.records.store import read_json, write_json
from teachable.vocabulary import FORMATS, QUADRANTS
from teachable.world.splits import split_snapshots

TASKS = [("GoToLocal", seed) for seed in (2, 3, 4, 5, 6, 10)] + [("PickupLoc", 2), ("PickupLoc", 3)]
CELLS = [f"{q}_{f}" for q in QUADRANTS for f in FORMATS] + [
    "baseline_all_demo",
    "baseline_random_demo",
    "control_shuffled_demo",
]
SEEDS = [0, 1]
RUN_IDS = [f"{cell}_seed{seed}" for seed in SEEDS for cell in CELLS]


def _params(root: Path) -> Parameters:
    return Parameters.model_validate(
        {
            "run": {"name": "matrix", "seed": 0, "output_root": str(root)},
            "student": {"model": "tiny", "batch_size": 16},
            "lora": {"r": 4, "alpha": 8, "steps": 40, "batch_size": 8, "learning_rate": 1e-3},
            "phase2": {
                "n_train": 2,
                "seeds": SEEDS,
                "dose": {"learning_rate": 1e-3, "steps": 2, "anchor_weight": 5.0},
                "batch_size": 2,
            },
        }
    )


@pytest.fixture(scope="module")
def rows(student):
    """Two snapshots of each of eight tasks, the quadrants dealt in turn, and all but one
    Q3 snapshot left out, so that Q3 is too small to train on."""
    rows = labeled_rows(student, TASKS, per_task=2)
    q3 = [row for row in rows if row.quadrant == "Q3_lowU_lowL"]
    return [row for row in rows if row not in q3[1:]]


def train(params: Parameters, rows, student: Student, out: Path, instrument: Instrument):
    """Phase 2 into `out`, as the notebook runs it, on the split saved beside it, with the
    shared instrument under Phase 2's pinned dose."""
    doses = dict.fromkeys(params.phase2.trained_formats, params.phase2.dose)
    return train_matrix(
        rows=rows,
        phase2=params.phase2,
        lora=params.lora,
        instrument=replace(instrument, doses=doses),
        seed=params.run.seed,
        workers=LocalWorkers(student),
        out=TrainingLayout(out),
        run_name="matrix",
        split=out.parent / "split.json",
        progress=False,
    )


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, student, rows, instrument):
    """A finished matrix on the rows of the labeled part of a split (every task labeled):
    its folder and what `train_matrix` reported."""
    out = tmp_path_factory.mktemp("matrix") / "phase2"
    params = _params(out.parent)
    split_snapshots(rows, 0.0, 0.0, 0, ["expert"]).save(out.parent / "split.json")
    return (
        out,
        params,
        train(params, rows, student, out, instrument),
    )


@pytest.mark.slow
def test_the_matrix_has_15_runs_per_seed_trained_or_skipped_with_a_reason(matrix, rows):
    out, params, report = matrix
    summary = read_json(out / "training_summary.json")
    assert [entry["id"] for entry in summary["runs"]] == RUN_IDS
    assert summary["lora"] == params.phase2.over(params.lora).model_dump(mode="json")
    assert summary["lora"]["batch_size"] == 2 and summary["lora"]["r"] == 4
    assert (out / summary["split"]).resolve() == (out.parent / "split.json").resolve()
    train_ids = {row.id for row in rows}
    by_quadrant = {q: [row.id for row in rows if row.quadrant == q] for q in QUADRANTS}
    for entry in report.entries:
        assert entry.id == f"{entry.cell}_seed{entry.seed}"
        assert set(entry.snapshots) <= train_ids, "only train snapshots are trained on"
        assert entry.n_train == len(entry.snapshots)
        if entry.quadrant in QUADRANTS:
            assert set(entry.snapshots) <= set(by_quadrant[entry.quadrant])
        if entry.status == "skipped":
            assert entry.n_train < 2 and "phase2.n_train=2" in entry.reason
            assert entry.adapter is None and not (out / entry.id).exists()
        else:
            assert entry.reason is None
            assert (out / entry.adapter / "adapter_config.json").is_file()
            assert len(entry.losses) == entry.steps == 2 == params.phase2.dose.steps
            assert entry.dose == params.phase2.dose
            assert entry.probe.n_probes > 0 and entry.probe.n_trained == len(entry.snapshots)
    entries = {entry.id: entry for entry in report.entries}
    for seed in SEEDS:
        assert {entries[f"Q3_lowU_lowL_{f}_seed{seed}"].status for f in FORMATS} == {"skipped"}
        every = ("baseline_all_demo", "control_shuffled_demo")
        for cell in every:
            assert entries[f"{cell}_seed{seed}"].n_train == len(rows)
        control = entries[f"control_shuffled_demo_seed{seed}"]
        assert control.snapshots == entries[f"baseline_all_demo_seed{seed}"].snapshots
        assert control.key != entries[f"baseline_all_demo_seed{seed}"].key
        cells = [e for e in report.entries if e.seed == seed and e.cell not in every]
        assert {e.n_train for e in cells if e.status == "trained"} == {2}, "cells of equal size"
        for quadrant in QUADRANTS:  # the formats of a quadrant share the seed's draw
            draws = {tuple(entries[f"{quadrant}_{f}_seed{seed}"].snapshots) for f in FORMATS}
            assert len(draws) == 1
    assert report.newly_trained == sum(e.status == "trained" for e in report.entries) >= 20


def test_a_matrix_of_one_format_keeps_its_draws_both_baselines_and_the_control(rows):
    every = plan_matrix(rows, Phase2Parameters(n_train=2, seeds=SEEDS), seed=0)
    demo = plan_matrix(rows, Phase2Parameters(n_train=2, seeds=SEEDS, formats=["demo"]), seed=0)
    kept = [run for run in every if run.format == "demo"]
    assert [(r.cell, r.seed) for r in demo] == [(r.cell, r.seed) for r in kept]
    assert [r.rows for r in demo] == [r.rows for r in kept], "a format's draw ignores the others"
    assert len(demo) == len(SEEDS) * (len(QUADRANTS) + 3)


@pytest.mark.slow
def test_each_seed_trains_its_own_adapter(matrix):
    out, _, report = matrix
    trained = {e.id for e in report.entries if e.status == "trained"}
    cell = next(c for c in CELLS if all(f"{c}_seed{s}" in trained for s in SEEDS))
    weights = {(out / f"{cell}_seed{s}" / "adapter_model.safetensors").read_bytes() for s in SEEDS}
    assert len(weights) == len(SEEDS)


@pytest.mark.slow
def test_a_killed_matrix_resumes_without_retraining_finished_runs(
    matrix, student, rows, instrument
):
    out, params, _ = matrix
    summary = read_json(out / "training_summary.json")
    trained = [entry["id"] for entry in summary["runs"] if entry["status"] == "trained"]
    lost_entry, lost_adapter = trained[3], trained[7]
    summary["runs"] = [entry for entry in summary["runs"] if entry["id"] != lost_entry]
    write_json(out / "training_summary.json", summary)  # killed after the adapter, before its entry
    shutil.rmtree(out / lost_adapter)  # killed while training
    kept = [run_id for run_id in trained if run_id not in (lost_entry, lost_adapter)]
    stamps = {run_id: _mtime(out / run_id) for run_id in kept}

    report = train(params, rows, student, out, instrument)
    assert report.newly_trained == 2
    assert {run_id: _mtime(out / run_id) for run_id in kept} == stamps
    assert (out / lost_adapter / "adapter_config.json").is_file()
    assert [entry["id"] for entry in read_json(out / "training_summary.json")["runs"]] == RUN_IDS
    again = train(params, rows, student, out, instrument)
    assert again.newly_trained == 0


def _mtime(adapter: Path) -> int:
    return (adapter / "adapter_model.safetensors").stat().st_mtime_ns


def test_a_snapshot_outside_the_labeled_part_is_refused_before_any_training(
    student, rows, tmp_path, instrument
):
    out = tmp_path / "phase2"
    split = split_snapshots(rows, 0.25, 0.25, 0, ["expert"])
    split.save(tmp_path / "split.json")
    outside = next(row for row in rows if row.id not in split.parts["labeled"].snapshots)
    part = split.part_of[outside.task]
    with pytest.raises(ValueError, match=f"snapshot {outside.id}.*lies in {part} of the split"):
        train(_params(tmp_path), rows, student, out, instrument)
    assert not out.exists()
