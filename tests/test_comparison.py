"""`python -m teachable compare RUN_A RUN_B`: verdict by verdict, the parameters that differ,
and the forest chart, on two run folders that differ in one parameter."""

from dataclasses import asdict
from pathlib import Path

import pytest

from teachable.__main__ import main
from teachable.parameters import Parameters
from teachable.pipeline.comparison import changed_parameters, pair_verdicts
from teachable.pipeline.provenance import Provenance
from teachable.records.estimate import Estimate
from teachable.records.layout import RunLayout
from teachable.records.store import write_json
from teachable.records.verdicts import Verdict, save_phase_verdicts


def verdict(criterion: str, value: float, low: float, high: float, outcome: str) -> Verdict:
    return Verdict(
        phase="phase3",
        criterion=criterion,
        claim=f"{criterion} > 0",
        side=">",
        threshold=0.0,
        estimate=Estimate(value=value, low=low, high=high, n=12),
        outcome=outcome,
    )


def write_run(folder: Path, n_train: int, gain: Verdict) -> RunLayout:
    """A run folder with a provenance.json recording its parameters and two verdicts: one the
    same in every run, and `gain`."""
    layout = RunLayout(folder)
    parameters = Parameters.model_validate({"phase2": {"n_train": n_train}})
    provenance = Provenance(
        parameter_file=str(folder / "params.yaml"),
        parameters=parameters.model_dump(mode="json", exclude={"source"}),
        seeds={},
        git={"commit": None, "dirty": None},
        packages={},
        python="3",
        executable="python",
        platform="linux",
        device={},
        started_at="2026-12-05T00:00:00+00:00",
    )
    write_json(layout.provenance, asdict(provenance))
    same = verdict("retention drop", -0.1, -0.3, 0.1, "inconclusive")
    save_phase_verdicts(layout.verdicts, "phase3", [same, gain])
    return layout


@pytest.fixture
def two_runs(tmp_path) -> tuple[RunLayout, RunLayout]:
    a = write_run(tmp_path / "three", 3, verdict("Q1 gain", 0.05, -0.1, 0.2, "inconclusive"))
    b = write_run(tmp_path / "five", 5, verdict("Q1 gain", 0.25, 0.1, 0.4, "holds"))
    return a, b


def test_compare_names_the_changed_parameter_and_shows_both_figures(two_runs, capsys):
    a, b = two_runs
    assert main(["compare", str(a.folder), str(b.folder)]) == 0
    out = capsys.readouterr().out

    [gain_line] = [
        line for line in out.splitlines() if line.split()[:3] == ["phase3", "Q1", "gain"]
    ]
    assert "0.050 [-0.100, 0.200], n=12" in gain_line and "inconclusive" in gain_line
    assert "0.250 [0.100, 0.400], n=12" in gain_line and "holds" in gain_line
    assert gain_line.rstrip().endswith("outcome")
    [same_line] = [line for line in out.splitlines() if "retention drop" in line]
    assert same_line.count("-0.100 [-0.300, 0.100], n=12") == 2
    assert "changed: 1 outcome" in out

    parameters = out.split("parameters that differ")[1]
    [changed] = [line for line in parameters.splitlines() if "phase2.n_train" in line]
    assert changed.split() == ["phase2.n_train", "3", "5"]
    assert len([line for line in parameters.splitlines() if "." in line.split(" ")[0]]) == 1


def test_compare_writes_the_forest_chart_where_asked(two_runs, tmp_path, capsys):
    a, b = two_runs
    chart = tmp_path / "charts" / "three_vs_five.png"
    assert main(["compare", str(a.folder), str(b.folder), "--chart", str(chart)]) == 0
    assert f"chart: {chart}, {chart.with_suffix('.svg')}" in capsys.readouterr().out
    assert chart.stat().st_size > 1000
    svg = chart.with_suffix(".svg").read_text()
    for text in ("Q1 gain", "retention drop", "A: three", "B: five", "holds", "inconclusive"):
        assert text in svg


def test_without_chart_compare_writes_nothing(two_runs, tmp_path):
    a, b = two_runs
    before = sorted(path for path in tmp_path.rglob("*"))
    assert main(["compare", str(a.folder), str(b.folder)]) == 0
    assert sorted(path for path in tmp_path.rglob("*")) == before


def test_pairs_keep_criteria_of_either_run_and_parameters_as_dotted_keys():
    only_a = verdict("only in A", 0.1, 0.0, 0.2, "inconclusive")
    both = verdict("both", 0.1, 0.0, 0.2, "inconclusive")
    pairs = pair_verdicts([only_a, both], [both])
    assert [(pair.criterion, pair.change()) for pair in pairs] == [
        ("only in A", "only A"),
        ("both", ""),
    ]
    changed = changed_parameters({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 1, "c": [1, 3], "d": 0}})
    assert changed == [("a.c", [1, 2], [1, 3]), ("a.d", "absent", 0)]


def test_compare_refuses_what_is_not_a_run_folder(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nowhere"), str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
