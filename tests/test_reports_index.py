"""The run's front page, `runs/<run>/reports/index.html`: every verdict of `verdicts.json` in a
table and a forest plot (an embedded image), every phase's report linked where it exists, the
provenance; no figure written two ways, no row of nothing, nothing fetched from the network."""

from __future__ import annotations

import re
from dataclasses import asdict
from html import unescape
from pathlib import Path

import pytest
import yaml
from offline_html import network_references

from teachable.measure.verdicts import judge
from teachable.parameters import load_parameters
from teachable.pipeline.provenance import PhaseRecord, Provenance
from teachable.pipeline.runner import PACKAGE_DIR, PHASES, write_reports_index
from teachable.records.estimate import Estimate
from teachable.records.layout import RunLayout
from teachable.records.verdicts import Verdict, save_phase_verdicts
from teachable.reports.index import ESTIMATE, forest_frame, verdict_table

VERDICTS = {
    "phase1b": [
        judge(
            "phase1b",
            "rho",
            "rho >= 0.3",
            Estimate(value=0.41, low=0.33, high=0.52, n=60),
            ">=",
            0.3,
        ),
        judge("phase1b", "q1_minus_q2", "Q1 - Q2 > 0", Estimate(value=None, n=2), ">", 0.0),
    ],
    "phase3": [
        judge(
            "phase3",
            "Q1_highU_highL_demo retention drop",
            "drop <= 0.1",
            Estimate(
                value=-0.0, low=-0.0, high=0.0, n=16, parts={"seeds": 2, "items": 4, "episodes": 2}
            ),
            "<=",
            0.1,
        ),
        judge(
            "phase3",
            "transfer (demo)",
            "diagonal > 0",
            Estimate(value=-0.2, low=-0.4, high=-0.05, n=4),
            ">",
            0.0,
        ),
    ],
}


@pytest.fixture
def run(tmp_path: Path) -> tuple[RunLayout, Provenance]:
    """A run whose verdicts.json holds four verdicts (one primary holding, one primary without
    an estimate, two secondaries) and whose phases 0 and 1 have a report page."""
    params = tmp_path / "trial.yaml"
    params.write_text(yaml.safe_dump({"run": {"seed": 3, "output_root": "runs"}}))
    parameters = load_parameters(params)
    layout = parameters.layout
    for phase, verdicts in VERDICTS.items():
        save_phase_verdicts(layout.verdicts, phase, verdicts)
    for phase in PHASES[:2]:
        page = layout.report(phase.notebook).with_suffix(".html")
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(f"<html><body>report of phase {phase.name}</body></html>")
    provenance = Provenance.start(parameters, PACKAGE_DIR)
    provenance.phases = [
        PhaseRecord(name="0", notebook=PHASES[0].notebook, status="ran", reason="forced")
    ]
    provenance.finish("finished", layout)
    return layout, provenance


def all_verdicts() -> list[Verdict]:
    return [verdict for verdicts in VERDICTS.values() for verdict in verdicts]


def cells(html: str, row_class: str) -> list[list[str]]:
    """The text of each cell of the page's rows of `row_class`."""
    rows = re.findall(rf'<tr class="{row_class}"[^>]*>(.*?)</tr>', html, re.DOTALL)
    found = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.DOTALL) for row in rows]
    return [[unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in row] for row in found]


def test_the_index_lists_every_verdict_once_with_its_estimate_interval_and_n(run):
    layout, provenance = run
    html = write_reports_index(layout, provenance).read_text()
    rows = cells(html, "verdict")
    listed = [(row[0], row[1]) for row in rows]
    assert sorted(listed) == sorted((v.phase, v.criterion) for v in all_verdicts())
    by_criterion = {row[1]: row for row in rows}
    assert ESTIMATE in html
    assert by_criterion["rho"][4:8] == ["0.410 [0.330, 0.520]", "60", ">= 0.3", "holds"]
    assert by_criterion["Q1_highU_highL_demo retention drop"][4:6] == [
        "0.000 [0.000, 0.000]",
        "2 seeds x 4 items x 2 episodes",
    ], "no -0.000, n by its parts"
    assert by_criterion["q1_minus_q2"][4] == "n/a"
    assert [row[2] for row in rows][:2] == ["primary", "primary"], "the primaries first"


def test_the_forest_plot_is_an_embedded_image_and_nothing_is_fetched(run):
    layout, provenance = run
    html = write_reports_index(layout, provenance).read_text()
    [image] = re.findall(r'<img class="forest" src="data:image/png;base64,([^"]+)"', html)
    assert len(image) > 1000
    assert network_references(html) == []


def test_the_index_links_each_report_that_exists_and_says_which_do_not(run):
    layout, provenance = run
    html = write_reports_index(layout, provenance).read_text()
    links = re.findall(r'<a href="([^"]+)">', html)
    assert links == ["00_rollouts.html", "01_labeling.html"]
    assert all((layout.reports_index.parent / link).is_file() for link in links)
    rows = cells(html, "phase")
    assert [row[0] for row in rows] == [phase.name for phase in PHASES]
    assert rows[0][3] == "ran: forced"
    assert all("no report yet" in row[1] for row in rows[2:])


def test_the_index_shows_the_provenance(run):
    layout, provenance = run
    html = write_reports_index(layout, provenance).read_text()
    recorded = dict(cells(html, "provenance"))
    assert recorded["parameter file"] == asdict(provenance)["parameter_file"]
    assert recorded["status"] == "finished"
    assert "run.seed 3" in recorded["seeds"]


def test_no_row_of_the_verdict_tables_is_empty_or_nan(run):
    table = verdict_table(all_verdicts())
    assert not table.isna().all(axis=1).any()
    assert (
        not table.astype(str)
        .apply(lambda column: column.str.lower().isin(["nan", "none"]))
        .any()
        .any()
    )
    frame = forest_frame(all_verdicts())
    assert list(frame["verdict"]) == list(table["phase"] + " · " + table["criterion"])
    assert frame[["value", "low", "high"]].isna().all(axis=1).sum() == 1, (
        "only the one not measured"
    )


def test_without_verdicts_the_index_says_so(tmp_path: Path):
    params = tmp_path / "trial.yaml"
    params.write_text(yaml.safe_dump({"run": {"output_root": "runs"}}))
    parameters = load_parameters(params)
    provenance = Provenance.start(parameters, PACKAGE_DIR)
    html = write_reports_index(parameters.layout, provenance).read_text()
    assert "No phase has judged a criterion yet" in html
    assert "<img" not in html
