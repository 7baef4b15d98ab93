"""`python -m teachable status RUN` and `run PARAMS --dry-run`: each phase up to date or stale
and why, its units, the time and teacher cost expected; and nothing created or changed."""

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import yaml
from test_runner import copy_notebooks, date_outputs_ahead, run, write_parameters

from teachable.__main__ import main
from teachable.models.selection import SELECTORS
from teachable.parameters import Parameters, load_parameters
from teachable.pipeline.history import Invocation, append_invocation
from teachable.pipeline.lock import Holder
from teachable.pipeline.provenance import PhaseRecord, Provenance
from teachable.pipeline.runner import NOTEBOOKS_DIR, PHASES, parameters_digest, select_phases
from teachable.pipeline.status import last_run, phase_statuses, teacher_cost
from teachable.pipeline.unit_times import (
    PILOT,
    SMOKE,
    duration,
    expected_time,
    recorded_phase,
    unit_table,
)
from teachable.pipeline.workload import (
    MATRIX_RUNS,
    MODELS_TO_EVALUATE,
    SNAPSHOTS_TO_LABEL,
    WORKLOADS,
    labels_to_buy,
    matrix_runs,
    phase_units,
    units_left,
)
from teachable.records.layout import RunLayout
from teachable.records.store import write_json, write_jsonl
from teachable.vocabulary import SELECTION_METHODS


def tree(folder: Path) -> dict[str, int]:
    """Every file and folder under `folder` with its modification time."""
    return {str(path): path.stat().st_mtime_ns for path in [folder, *folder.rglob("*")]}


def phase_rows(out: str) -> list[list[str]]:
    """The first line of each phase's row in the printed tables, split into words."""
    names = {phase.name for phase in PHASES}
    lines = [line for line in out.splitlines() if not line.startswith(" ")]
    return [line.split() for line in lines if line.split()[:1] and line.split()[0] in names]


def parameter_file(path: Path, sections: dict) -> Path:
    """A parameter file whose run lands in a `runs/` folder beside it."""
    path.write_text(yaml.safe_dump({"run": {"output_root": "runs"}, **sections}))
    return path


def test_status_and_dry_run_create_no_run_folder(tmp_path, capsys):
    params = write_parameters(tmp_path / "trial.yaml")
    assert main(["status", str(params)]) == 0
    assert main(["run", str(params), "--dry-run"]) == 0
    assert main(["run", str(params), "--dry-run", "--force", "--phases", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
    assert "nothing is run, created or changed" in out
    rows = phase_rows(out)[: len(PHASES)]
    assert [row[:2] for row in rows] == [[phase.name, "stale"] for phase in PHASES]
    assert "no finished run on record" in out and "3 student episodes" in out
    assert "forced" in out


def test_status_and_dry_run_leave_a_run_folder_untouched(tmp_path, capsys):
    notebooks = copy_notebooks(tmp_path)
    params = write_parameters(tmp_path / "trial.yaml")
    run_dir = tmp_path / "runs" / "trial"
    assert run(params, notebooks) == 0
    date_outputs_ahead(run_dir)
    before = tree(tmp_path)
    capsys.readouterr()

    assert main(["status", str(run_dir)]) == 0
    status = capsys.readouterr().out
    assert main(["run", str(params), "--dry-run"]) == 0
    assert main(["run", str(params), "--dry-run", "--force"]) == 0
    assert (
        main(["run", str(params), "--dry-run", "--phases", "0", "--notebooks-dir", str(notebooks)])
        == 0
    )

    assert tree(tmp_path) == before
    assert f"status of run trial: {run_dir}" in status
    assert "last run: " in status and "finished: 1 ran, 0 skipped" in status
    rows = {row[0]: " ".join(row[1:]) for row in phase_rows(status)}
    assert rows["0"] == "up to date"
    assert rows["1"].startswith("stale no finished run on record")


def test_status_says_why_as_the_runner_does_and_what_an_earlier_phase_rewrites(tmp_path):
    notebooks = copy_notebooks(tmp_path)
    params = write_parameters(tmp_path / "trial.yaml", n_tasks=3)
    assert run(params, notebooks) == 0
    ahead = date_outputs_ahead(tmp_path / "runs" / "trial")
    write_parameters(params, n_tasks=5)
    parameters = load_parameters(params)
    # phase 1 finished with these parameters, its outputs newer than every source
    run_layout = parameters.layout
    phase1 = PHASES[1]
    for path in phase1.outputs(run_layout):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        os.utime(path, (ahead + 60, ahead + 60))
    write_json(run_layout.stamp("1"), {"parameters_sha256": parameters_digest(parameters, phase1)})

    phase0, phase1_status = phase_statuses(parameters, select_phases(["0", "1"]), NOTEBOOKS_DIR)
    assert phase0.reason == "its parameters changed"
    assert phase0.left(kept=phase0.keeps)["student episodes"] == 5
    failures = run_layout.phase0.failure_snapshots
    assert phase1_status.reason == f"phase 0 runs before it and rewrites {failures}"

    [alone] = phase_statuses(parameters, select_phases(["1"]), NOTEBOOKS_DIR)
    assert alone.reason is None and alone.time is None


def test_units_are_the_parameters_counts_less_what_the_run_holds(tmp_path):
    params = parameter_file(
        tmp_path / "units.yaml",
        {
            "phase1": {"max_snapshots": 7, "reliability_panel": 2},
            "phase2": {"n_train": 3, "seeds": [0, 1]},
        },
    )
    parameters = load_parameters(params)
    layout = parameters.layout
    write_jsonl(layout.phase1.labeled_jsonl, [{"id": str(i)} for i in range(3)])

    [labeled, test, again] = phase_units("1", parameters, layout)
    assert (labeled.kind, labeled.planned, labeled.on_record) == (SNAPSHOTS_TO_LABEL, 7, 3)
    assert (labeled.left(kept=True), labeled.left(kept=False)) == (4, 7)
    assert labeled.teacher_answers == 1 and again.planned == 2

    # before Phase 1 counted the quadrants, every cell is planned: 4 x 3 formats + 2 baselines
    # + the shuffled-target control
    assert matrix_runs(parameters, layout) == 15 * 2
    counts = {"Q1_highU_highL": 1, "Q2_highU_lowL": 5, "Q3_lowU_lowL": 5, "Q4_lowU_highL": 5}
    write_json(layout.phase1.record, {"quadrant_counts": counts})
    [matrix] = phase_units("2", parameters, layout)
    assert (matrix.kind, matrix.planned) == (MATRIX_RUNS, (3 * 3 + 3) * 2)
    [models] = phase_units("3", parameters, layout)
    assert (models.kind, models.planned) == (MODELS_TO_EVALUATE, 1 + 24)
    write_json(layout.phase1.record, {"quadrant_counts": {"Q1_highU_highL": 1}})
    [matrix] = phase_units("2", parameters, layout)
    assert matrix.planned == 1 * 2, "one labeled snapshot: baseline_all alone"


def test_every_unit_has_a_time_in_the_table():
    parameters = Parameters.model_validate({"phase5": {"methods": list(SELECTION_METHODS)}})
    kinds = {units.kind for workload in WORKLOADS.values() for units in workload(parameters, None)}
    buying = {labels_to_buy(name) for name, method in SELECTORS.items() if method.buys_labels}
    assert buying <= kinds
    assert kinds <= PILOT.seconds.keys() and kinds <= SMOKE.seconds.keys()


def test_the_tiny_student_has_its_own_table():
    assert unit_table(Parameters.model_validate({"student": {"model": "tiny"}}).student) is SMOKE
    assert unit_table(Parameters().student) is PILOT


def invocation(phase: PhaseRecord, started_at: str) -> Invocation:
    return Invocation(
        command="python -m teachable run trial.yaml",
        parameter_file="trial.yaml",
        parameters_sha256="0" * 64,
        git={"commit": None, "dirty": None},
        started_at=started_at,
        finished_at=started_at,
        outcome="finished",
        phases=[phase],
    )


def test_time_is_paced_by_the_runs_own_record_else_by_the_table(tmp_path):
    layout = RunLayout(tmp_path / "runs" / "trial")
    matrix = PILOT.seconds[MATRIX_RUNS]
    table = expected_time({MATRIX_RUNS: 5}, None, PILOT)
    assert table.seconds == pytest.approx(PILOT.start + 5 * matrix)
    assert (table.basis, recorded_phase(layout, "2", PILOT)) == ("table", None)

    took = PILOT.start + 0.5 * 10 * matrix  # ten runs, each in half the table's time
    ran = PhaseRecord(
        name="2",
        notebook="02_training_matrix.ipynb",
        status="ran",
        started_at="2026-12-05T10:00:00+00:00",
        finished_at=f"2026-12-05T10:{int(took) // 60:02d}:{int(took) % 60:02d}+00:00",
        units={MATRIX_RUNS: 10},
    )
    append_invocation(layout, invocation(ran, ran.started_at))
    skipped = PhaseRecord(name="2", notebook=ran.notebook, status="skipped")
    append_invocation(layout, invocation(skipped, "2026-12-05T11:00:00+00:00"))  # pace stays

    recorded = recorded_phase(layout, "2", PILOT)
    assert recorded.units == {MATRIX_RUNS: 10} and recorded.seconds == int(took)
    paced = expected_time({MATRIX_RUNS: 5}, recorded, PILOT)
    pace = (int(took) - PILOT.start) / (10 * matrix)
    assert paced.seconds == pytest.approx(PILOT.start + pace * 5 * matrix)
    assert paced.basis == "this run, 2026-12-05"


def test_a_provenance_without_units_is_paced_by_the_units_its_parameters_plan(tmp_path):
    params = parameter_file(tmp_path / "old.yaml", {"phase2": {"seeds": [0, 1, 2]}})
    parameters = load_parameters(params)
    record = PhaseRecord(
        name="2",
        notebook="02_training_matrix.ipynb",
        status="ran",
        reason="no finished run on record",
        started_at="2026-12-05T10:00:00+00:00",
        finished_at="2026-12-05T10:05:00+00:00",
    )
    provenance = Provenance(
        parameter_file=str(params),
        parameters=parameters.model_dump(mode="json", exclude={"source"}),
        seeds={},
        git={},
        packages={},
        python="3",
        executable="python",
        platform="linux",
        device={},
        started_at=record.started_at,
        phases=[record],
    )
    provenance.save(parameters.layout)
    recorded = recorded_phase(parameters.layout, "2", PILOT)
    assert recorded.units == {MATRIX_RUNS: 15 * 3} and recorded.seconds == 300


def test_openai_teacher_cost_is_answers_times_tokens_times_prices(tmp_path, capsys):
    teacher = {"backend": "openai", "price_per_1k_input": 0.001, "price_per_1k_output": 0.002}
    params = parameter_file(
        tmp_path / "api.yaml", {"teacher": teacher, "phase1": {"max_snapshots": 30}}
    )
    parameters = load_parameters(params)
    statuses = phase_statuses(parameters, select_phases(["1"]), NOTEBOOKS_DIR)
    cost = teacher_cost(parameters, statuses)
    assert cost.answers == 30
    assert (cost.prompt_tokens, cost.completion_tokens) == (30 * 350, 30 * 100)
    assert cost.usd == pytest.approx((30 * 350 * 0.001 + 30 * 100 * 0.002) / 1000)

    usage = {"requests": 4, "prompt_tokens": 2000, "completion_tokens": 400}
    write_json(parameters.layout.phase1.record, {"teacher_usage": usage})
    cost = teacher_cost(parameters, statuses)
    assert (cost.prompt_tokens, cost.completion_tokens) == (30 * 500, 30 * 100)
    assert "from this run's 4 requests" in cost.basis

    assert main(["run", str(params), "--dry-run", "--phases", "1"]) == 0
    assert "teacher: openai gpt-4o-mini: up to 30 answers" in capsys.readouterr().out
    bot = load_parameters(parameter_file(tmp_path / "bot.yaml", {}))
    assert teacher_cost(bot, phase_statuses(bot, select_phases(["1"]), NOTEBOOKS_DIR)) is None


def test_status_takes_a_run_folder_only_with_its_provenance(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["status", str(tmp_path / "empty")]) == 2
    assert "no readable provenance.json" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_changed_parameters_make_the_time_a_range_and_the_units_unknown(tmp_path, capsys):
    params = parameter_file(tmp_path / "range.yaml", {"phase1": {"max_snapshots": 7}})
    parameters = load_parameters(params)
    layout = parameters.layout
    write_jsonl(layout.phase1.labeled_jsonl, [{"id": str(i)} for i in range(3)])
    write_json(layout.stamp("1"), {"parameters_sha256": "made with other parameters"})

    [status] = phase_statuses(parameters, select_phases(["1"]), NOTEBOOKS_DIR)
    assert status.reason == "its parameters changed" and status.may_redo
    assert status.left(kept=True)[SNAPSHOTS_TO_LABEL] == 4
    assert status.left(kept=False)[SNAPSHOTS_TO_LABEL] == 7
    assert status.time.seconds < status.time_redone.seconds
    assert units_left("1", parameters, parameters_changed=True) is None
    assert units_left("1", parameters, parameters_changed=False)[SNAPSHOTS_TO_LABEL] == 4

    assert main(["run", str(params), "--dry-run", "--phases", "1"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("1 ")]
    low, high = (duration(t.seconds) for t in (status.time, status.time_redone))
    assert f"{low} to {high}" in row


def test_status_names_a_run_in_progress_from_its_lock_without_taking_it(tmp_path):
    layout = RunLayout(tmp_path / "runs" / "trial")
    layout.folder.mkdir(parents=True)
    layout.lock.write_text(json.dumps(asdict(Holder.me())) + "\n")
    assert f"in progress: pid {os.getpid()} on " in last_run(layout)
    gone = replace(Holder.me(), pid=2**22 + 1)  # above the kernel's largest pid: no such process
    layout.lock.write_text(json.dumps(asdict(gone)) + "\n")
    assert last_run(layout) == "last run: none on record"
    assert not layout.history.exists()
