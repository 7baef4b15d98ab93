"""`teachable check` passes a run that holds every pilot artifact and fails, naming the
artifact, when one is missing, empty or unreadable; Phase 5 and the paper artifacts count only
once the run has their folder. It shows every verdict with its figure, interval and n, the
primaries at their Holm steps, and with `--science` also fails, naming it, when a primary
verdict fails after Holm's adjustment (a secondary's failure does not count). While a run is in
progress it names that run, and what the run has not written yet waits rather than fails. No
figure prints as `-0.000`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from teachable.__main__ import main
from teachable.measure.verdicts import judge
from teachable.pipeline.checks import CHECKS, check_run, unsigned_zeros
from teachable.pipeline.lock import hold_lock
from teachable.records.estimate import Estimate
from teachable.records.layout import RunLayout
from teachable.records.verdicts import save_phase_verdicts

PHASE3_HEADER = "model,success_rate\nbase,0.5\n"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with the plan's pilot artifacts, small but valid."""
    run = tmp_path / "runs" / "pilot"
    files = {
        "phase1/labeled_snapshots.jsonl": "\n".join(
            json.dumps({"id": name, "U": 0.4, "quadrant": "Q1_highU_highL"}) for name in "ab"
        )
        + "\n",
        "phase2/training_summary.json": json.dumps({"runs": [{"id": "Q1_highU_highL_demo"}]}),
        "phase4/training_result.json": json.dumps({"passed": False, "metrics": {}}),
    }
    files |= {
        path.relative_to(run).as_posix(): PHASE3_HEADER for path in RunLayout(run).phase3.csvs()
    }
    for name, text in files.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    rho = Estimate(value=0.41, low=0.12, high=0.63, n=40)
    save_phase_verdicts(
        RunLayout(run).verdicts,
        "phase1b",
        [judge("phase1b", "rho", "rho(ELP_net, delta) >= 0.3", rho, ">=", 0.3)],
    )
    return run


def statuses(run: Path) -> dict[str, str]:
    return {result.name: result.status for result in check_run(run)}


def test_a_complete_pilot_run_passes(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert statuses(run_dir) == {
        check.name: "skip" if check.only_with else "pass" for check in CHECKS
    }
    assert main(["check", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "phase1/labeled_snapshots.jsonl: 2 rows" in printed
    assert "phase3/v8/transfer_matrix.csv: 1 rows x 2 columns" in printed
    assert "verdicts.json: 1 verdicts: 0 holds, 0 fails, 1 inconclusive" in printed
    assert "0 missing or unusable" in printed
    assert "[inconclusive] phase1b rho: 0.410 [0.120, 0.630], n=40 (>= 0.3)" in printed
    assert "[not judged yet] phase4 quadrant_accuracy" in printed


def _remove(path: Path) -> None:
    path.unlink()


def _empty(path: Path) -> None:
    path.write_text("")


def _truncate_json(path: Path) -> None:
    path.write_text(path.read_text()[:-3])


def _repeat_a_row(path: Path) -> None:
    """What two writers at once leave: the same id on two lines."""
    path.write_text(path.read_text() + path.read_text().splitlines(keepends=True)[0])


def _header_only(path: Path) -> None:
    path.write_text(PHASE3_HEADER.splitlines()[0] + "\n")


@pytest.mark.parametrize(
    ("artifact", "damage", "reason"),
    [
        ("phase1/labeled_snapshots.jsonl", _remove, "is missing"),
        ("phase1/labeled_snapshots.jsonl", _empty, "holds no row"),
        ("phase1/labeled_snapshots.jsonl", _repeat_a_row, "3 rows for 2 ids"),
        ("phase2/training_summary.json", _remove, "is missing"),
        ("phase2/training_summary.json", _truncate_json, "is not valid JSON"),
        ("phase3/v8/transfer_matrix.csv", _remove, "is missing"),
        ("phase3/v8/retention_results.csv", _empty, "no header"),
        ("phase3/v8/stuckness_results.csv", _header_only, "no row"),
        ("phase4/training_result.json", _remove, "is missing"),
        ("phase4/training_result.json", _empty, "is not valid JSON"),
        ("verdicts.json", _remove, "is missing"),
        ("verdicts.json", _truncate_json, "is not valid JSON"),
    ],
)
def test_a_damaged_artifact_fails_naming_it(
    run_dir: Path,
    capsys: pytest.CaptureFixture,
    artifact: str,
    damage: Callable[[Path], None],
    reason: str,
) -> None:
    damage(run_dir / artifact)
    failed = [result for result in check_run(run_dir) if result.status == "fail"]
    assert len(failed) == 1
    assert str(run_dir / artifact) in failed[0].reason
    assert reason in failed[0].reason
    assert main(["check", str(run_dir)]) == 1
    fail_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(fail_lines) == 1 and artifact in fail_lines[0]


def test_phase5_and_paper_artifacts_count_once_their_folder_exists(run_dir: Path) -> None:
    for folder in ("phase5/selection/random", "figures", "tables"):
        (run_dir / folder).mkdir(parents=True)
    after = statuses(run_dir)
    assert after["phase 5 selection summary"] == after["paper figures"] == "fail"
    assert after["paper tables"] == after["paper artifacts"] == "fail"
    (run_dir / "phase5/selection/selection_summary.json").write_text(json.dumps({"methods": {}}))
    (run_dir / "figures" / "quadrant_scatter.png").write_bytes(b"\x89PNG")
    (run_dir / "tables" / "selection.csv").write_text("method,gain\nrandom,0.1\n")
    built = {"figure quadrant_scatter": ["figures/quadrant_scatter.png"]}
    record = {"built": built, "skipped": {"table selection": "phase 5 has not run"}}
    (run_dir / "artifacts.json").write_text(json.dumps(record))
    assert set(statuses(run_dir).values()) == {"pass"}
    (run_dir / "figures" / "quadrant_scatter.svg").write_text("<svg/>")
    built["figure quadrant_scatter"].append("figures/quadrant_scatter.svg")
    (run_dir / "artifacts.json").write_text(json.dumps(record))
    assert statuses(run_dir)["paper artifacts"] == "pass"
    (run_dir / "figures" / "quadrant_scatter.svg").unlink()
    failed = [result for result in check_run(run_dir) if result.status == "fail"]
    assert [result.name for result in failed] == ["paper artifacts"]
    assert "quadrant_scatter.svg is listed as built" in failed[0].reason


def test_a_folder_that_is_not_a_run_is_bad_input(tmp_path: Path) -> None:
    assert main(["check", str(tmp_path / "nowhere")]) == 2


def test_duplicate_ids_in_the_labeled_log_name_the_id_and_rows(run_dir: Path) -> None:
    log = run_dir / "phase1" / "labeled_snapshots.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join([*lines, lines[1], lines[0], lines[1]]))
    [failed] = [result for result in check_run(run_dir) if result.status == "fail"]
    assert "5 rows for 2 ids: 2 id(s) appear more than once (first: a, rows 1, 4)" in (
        failed.reason
    )


def _judge_phase4(run_dir: Path, accuracy: Estimate) -> None:
    """Phase 4's verdicts: R² of U (secondary) wholly below its target, and the quadrant
    accuracy (primary) on `accuracy`."""
    low_r2 = Estimate(value=0.1, low=0.02, high=0.2, n=60)
    verdicts = [
        judge("phase4", "U_r2", "R² of U > 0.6", low_r2, ">", 0.6),
        judge("phase4", "quadrant_accuracy", "quadrant accuracy > 0.7", accuracy, ">", 0.7),
    ]
    save_phase_verdicts(RunLayout(run_dir).verdicts, "phase4", verdicts)


def test_science_fails_only_on_a_failing_primary_and_only_when_asked(
    run_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["check", str(run_dir), "--science"]) == 0, "inconclusive is not a failure"
    _judge_phase4(run_dir, Estimate(value=0.9, low=0.8, high=0.96, n=60, method="wilson"))
    assert main(["check", str(run_dir), "--science"]) == 0, "a failing secondary decides nothing"
    printed = capsys.readouterr().out
    assert "[fails] phase4 U_r2: 0.100 [0.020, 0.200], n=60 (> 0.6)" in printed
    assert "[holds] phase4 quadrant_accuracy: 0.900 [0.800, 0.960], n=60 (> 0.7)" in printed
    _judge_phase4(run_dir, Estimate(value=0.3, low=0.2, high=0.4, n=60, method="wilson"))
    assert main(["check", str(run_dir)]) == 0, "without --science only artifacts count"
    assert main(["check", str(run_dir), "--science"]) == 1
    captured = capsys.readouterr()
    assert "[fails] phase4 quadrant_accuracy: 0.300 [0.200, 0.400], n=60 (> 0.7)" in captured.out
    assert "science: the primary phase4 quadrant_accuracy fails" in captured.err
    assert "U_r2" not in captured.err


def test_science_judges_a_primary_at_its_holm_step_not_at_its_own_95(
    run_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    """0.62 [0.55, 0.69] lies wholly under 0.7 (fails at 95%), but its p-value, about 0.025,
    is above 0.05/9, the first of Holm's steps over the nine primaries: not decided."""
    _judge_phase4(run_dir, Estimate(value=0.62, low=0.55, high=0.69, n=60))
    assert main(["check", str(run_dir), "--science"]) == 0
    printed = capsys.readouterr().out
    assert (
        "[inconclusive] phase4 quadrant_accuracy: 0.620 [0.550, 0.690], n=60 (> 0.7) fails on "
        "its own; Holm step 1 of 9 (p=0.025 at the threshold): at 99.44% [0.521, 0.719]"
    ) in printed
    assert "0 holds, 0 fails, 2 inconclusive" in printed, "the primaries' tally"
    assert "1 holds, 1 fails, 0 inconclusive" not in printed


def test_a_missing_artifact_fails_with_or_without_science(run_dir: Path) -> None:
    (run_dir / "phase2" / "training_summary.json").unlink()
    assert main(["check", str(run_dir)]) == 1
    assert main(["check", str(run_dir), "--science"]) == 1


def test_a_run_without_verdicts_says_so(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    (run_dir / "verdicts.json").unlink()
    assert main(["check", str(run_dir), "--science"]) == 1
    printed = capsys.readouterr().out
    assert "no verdict: no phase has judged a criterion of the plan" in printed
    fail_lines = [line for line in printed.splitlines() if line.startswith("FAIL")]
    assert len(fail_lines) == 1 and "verdicts.json is missing" in fail_lines[0]


def test_a_run_in_progress_is_named_and_what_it_has_not_written_waits(
    run_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    (run_dir / "phase4" / "training_result.json").unlink()
    (run_dir / "phase3" / "v8" / "stuckness_results.csv").write_text("")
    with hold_lock(RunLayout(run_dir).lock, note=print):
        during = {result.name: result for result in check_run(run_dir)}
        code = main(["check", str(run_dir)])
        printed = capsys.readouterr().out
    assert during["run in progress"].status == "busy"
    assert f"pid {os.getpid()} on " in during["run in progress"].reason
    assert during["phase 4 training result"].status == "wait"
    assert during["phase 3 stuckness_results.csv"].status == "fail", "written but unusable"
    assert code == 1
    lines = printed.splitlines()
    assert lines[lines.index("artifacts") + 1].startswith("BUSY  run in progress")
    assert [line for line in lines if line.startswith("FAIL")] == [
        line for line in lines if "stuckness_results.csv" in line and line.startswith("FAIL")
    ]
    assert any(line.startswith("WAIT") and "phase4/training_result.json" in line for line in lines)
    assert "1 not written yet (run in progress)" in printed

    (run_dir / "phase3" / "v8" / "stuckness_results.csv").write_text(PHASE3_HEADER)
    with hold_lock(RunLayout(run_dir).lock, note=print):
        assert main(["check", str(run_dir)]) == 0, "nothing is wrong with a run still writing"
    after = {result.name: result.status for result in check_run(run_dir)}
    assert "run in progress" not in after and after["phase 4 training result"] == "fail"
    assert main(["check", str(run_dir)]) == 1


def test_no_figure_prints_as_negative_zero(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    tiny = Estimate(value=-0.0002, low=-0.0004, high=0.2, n=40)
    small = Estimate(value=-0.0012, low=-0.05, high=-0.0, n=40)
    save_phase_verdicts(
        RunLayout(run_dir).verdicts,
        "phase3",
        [
            judge("phase3", "tiny drop", "drop < 0.1", tiny, "<", 0.1),
            judge("phase3", "small gain", "gain > -0", small, ">", -0.0),
        ],
    )
    main(["check", str(run_dir)])
    printed = capsys.readouterr().out
    assert "-0.000" not in printed and "-0 " not in printed and "-0)" not in printed
    assert "tiny drop: 0.000 [0.000, 0.200], n=40 (< 0.1)" in printed
    assert "small gain: -0.001 [-0.050, 0.000], n=40 (> 0)" in printed


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("-0.000 [-0.000, -0.0]", "0.000 [0.000, 0.0]"),
        ("(>= -0); p=-0", "(>= 0); p=0"),
        ("-0.001 [-0.0004x, -10.000]", "-0.001 [-0.0004x, -10.000]"),
        ("do-no-harm -0.05 Q1-0.000", "do-no-harm -0.05 Q1-0.000"),
    ],
)
def test_unsigned_zeros_drops_only_the_sign_of_a_zero(text: str, shown: str) -> None:
    assert unsigned_zeros(text) == shown
