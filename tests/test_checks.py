"""`teachable check` passes a run that holds every pilot artifact and fails, naming the
artifact, when one is missing, empty or unreadable; Phase 5 and the paper artifacts count only
once the run has their folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from teachable.__main__ import main
from teachable.pipeline.checks import CHECKS, check_run
from teachable.records.layout import RunLayout

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
    assert "0 failed" in printed


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
