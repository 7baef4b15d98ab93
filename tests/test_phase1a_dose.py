"""Phase 1A: the dose calibration on the tiny student: the reference states it fixes, its
curve, its choice within the drift budget, the check on other snapshots and probes, a pinned
dose, its gate, and its resumption."""

from __future__ import annotations

from pathlib import Path

import pytest
from labeled_rows import labeled_rows

from teachable.models.instrument import load_instrument
from teachable.models.workers import LocalWorkers
from teachable.parameters import Parameters
from teachable.phases.phase1a_dose import calibrate_dose
from teachable.records.dose import Dose, DoseCalibration, load_reference_states
from teachable.records.store import read_jsonl
from teachable.records.verdicts import Verdicts
from teachable.reports.charts import save_chart
from teachable.reports.phase1a import choice_frame, curve_frame, dose_response_chart, verdict_html
from teachable.world.splits import split_snapshots
from teachable.world.tasks import purpose_of

TASKS = [("GoToLocal", seed) for seed in (2, 3, 4, 5, 6, 10, 11, 12)]


def _params(root: Path, **sections: dict) -> Parameters:
    return Parameters.model_validate(
        {
            "run": {"name": "dose", "seed": 0, "output_root": str(root)},
            "student": {"model": "tiny", "batch_size": 16},
            "env": {"levels": ["GoToLocal"]},
            "lora": {"r": 8, "alpha": 16, "batch_size": 2},
            "training": {
                "anchor_tasks": 2,
                "anchor_per_step": 4,
                "probe_tasks": 4,
                "probe_retention_tasks": 2,
                "probe_states_per_task": 3,
                "calibration_snapshots": 2,
                "grid": {"learning_rates": [1e-2], "steps": [12], "anchor_weights": [0.0, 1e3]},
                "drift_budget": 0.05,
                "check_seeds": [1, 2],
            },
            "phase1b": {"format": "demo"},
            "phase2": {"n_train": 2, "formats": ["demo"]},
            "phase3": {"retention_tasks": 1, "retention_levels": ["PickupLoc"]},
            **sections,
        }
    )


@pytest.fixture(scope="module")
def rows(student):
    return labeled_rows(student, TASKS, per_task=1)


def calibrate(params: Parameters, rows, student):
    run = params.layout
    split_snapshots(rows, 0.0, 0.0, 0, ["expert"]).save(run.split)
    return calibrate_dose(
        rows=rows,
        split=run.split,
        training=params.training,
        phase1b=params.phase1b,
        phase2=params.phase2,
        phase3=params.phase3,
        lora=params.lora,
        levels=params.env.levels,
        seed=params.run.seed,
        workers=LocalWorkers(student),
        out=run.phase1a,
        progress=False,
        verdicts=run.verdicts,
    )


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, student, rows):
    params = _params(tmp_path_factory.mktemp("dose"))
    return params, calibrate(params, rows, student)


def test_reference_states_keep_their_purposes_apart(calibrated):
    params, report = calibrated
    run = params.layout
    anchors = load_reference_states(run.phase1a.anchor_states)
    probes = load_reference_states(run.phase1a.probe_states)
    assert anchors == report.anchors and probes == report.probes
    assert {purpose_of(state.state) for state in anchors} == {"warmup"}
    labeled = [state for state in probes if state.part == "labeled"]
    retention = [state for state in probes if state.part == "retention"]
    assert {state.state.task for state in labeled} <= {(f"BabyAI-{t[0]}-v0", t[1]) for t in TASKS}
    assert len({state.state.task for state in labeled}) == 4
    assert {purpose_of(state.state) for state in retention} == {"retention"}
    assert {state.state.env_id for state in retention} == {"BabyAI-PickupLoc-v0"}
    assert {state.half for state in probes} == {"calibration", "check"}


def test_the_curve_the_choice_and_the_check(calibrated):
    params, report = calibrated
    calibration = DoseCalibration.load(params.layout.phase1a.dose)
    assert calibration == report.calibration
    assert {(p.kind, p.dose.anchor_weight) for p in calibration.points} == {
        ("micro", 0.0),
        ("micro", 1e3),
        ("cell", 0.0),
        ("cell", 1e3),
    }
    for point in calibration.points:
        assert point.within_budget == (point.probe.drift.value <= 0.05)
        assert point.n_trainings == (2 if point.kind == "micro" else 1)
    unanchored = {p.kind: p for p in calibration.points if p.dose.anchor_weight == 0}
    anchored = {p.kind: p for p in calibration.points if p.dose.anchor_weight > 0}
    for kind in ("micro", "cell"):
        assert anchored[kind].probe.drift.value < unanchored[kind].probe.drift.value
    for choice in calibration.chosen:
        assert choice.source == "calibrated"
        curve = [p for p in calibration.points if p.kind == choice.kind]
        kept = [p for p in curve if p.within_budget]
        if kept:
            best = max(kept, key=lambda p: p.probe.specificity.value)
            assert choice.dose == best.dose
        assert choice.check.n_probes > 0
        assert choice.check.drift.design == "crossed"  # the two check seeds crossed with probes
        assert choice.check.drift.parts["training seeds"] == 2
        assert "2 training seeds x" in choice.check.specificity.method
    cell = next(choice for choice in calibration.chosen if choice.kind == "cell")
    assert cell.retention is not None and cell.retention.n_probes == 3  # one retention task
    criteria = [verdict.criterion for verdict in calibration.verdicts]
    assert criteria == [
        "micro demo specificity",
        "cell demo specificity",
        "do-no-harm drift",
        "do-no-harm retention",
    ]
    assert Verdicts.load(params.layout.verdicts).verdicts == calibration.verdicts
    assert calibration.dose("micro", "demo") == calibration.chosen[0].dose
    with pytest.raises(KeyError, match="no dose for cell training in hint"):
        calibration.dose("cell", "hint")


def test_a_pinned_dose_is_used_and_checked_without_a_grid(tmp_path, student, rows, calibrated):
    pinned = {"learning_rate": 1e-3, "steps": 2, "anchor_weight": 7.0}
    params = _params(tmp_path, phase2={"n_train": 2, "formats": ["demo"], "dose": pinned})
    calibration = calibrate(params, rows, student).calibration
    assert {p.kind for p in calibration.points} == {"micro"}
    cell = next(choice for choice in calibration.chosen if choice.kind == "cell")
    assert cell.source == "pinned" and cell.dose.model_dump() == pinned
    assert calibration.dose("cell", "demo").anchor_weight == 7.0


def test_a_rerun_trains_nothing_again(calibrated, student, rows):
    params, report = calibrated
    log = params.layout.phase1a.log
    before = read_jsonl(log)
    again = calibrate(params, rows, student)
    assert read_jsonl(log) == before
    assert again.calibration == report.calibration


def test_the_report_tables_and_charts_the_curve(calibrated, tmp_path):
    _, report = calibrated
    calibration = report.calibration
    curve = curve_frame(calibration)
    assert len(curve) == len(calibration.points)
    assert (curve["specificity_low"] <= curve["specificity"]).all()
    assert list(choice_frame(calibration)["kind"]) == ["micro", "cell"]
    files = save_chart(dose_response_chart(calibration), tmp_path / "dose")
    assert {file.suffix for file in files} == {".png", ".svg"}
    assert "Dose response" in (tmp_path / "dose.svg").read_text()
    assert "do-no-harm drift" in verdict_html(calibration, continuing=True)
    banner = verdict_html(calibration, continuing=False)
    assert ("DOSE GATE FAILS" in banner) == (calibration.outcome == "fails")


def test_later_phases_load_the_calibrated_dose_unless_they_pin_one(calibrated):
    params, report = calibrated
    calibration = report.calibration
    folder = params.layout.phase1a
    instrument = load_instrument(folder, "cell", ["demo"], None, 3)
    assert instrument.dose("demo") == calibration.dose("cell", "demo")
    assert instrument.anchors == tuple(report.anchors)
    assert instrument.probes == tuple(report.probes) and instrument.per_step == 3
    micro = load_instrument(folder, "micro", ["demo"], None, 3)
    assert micro.dose("demo") == calibration.dose("micro", "demo")
    pinned = Dose(learning_rate=2e-4, steps=7, anchor_weight=1.0)
    assert load_instrument(folder, "cell", ["demo"], pinned, 3).dose("demo") == pinned
    with pytest.raises(KeyError, match="no dose for cell training in contrast"):
        load_instrument(folder, "cell", ["contrast"], None, 3)
    key = instrument.key("demo")
    assert key["dose"] == calibration.dose("cell", "demo").model_dump(mode="json")
    assert load_instrument(folder, "cell", ["demo"], pinned, 3).key("demo") != key
