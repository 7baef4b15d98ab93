"""The reports read like results in Chromium, offline: no report shows a code cell, and the run's
index page lists every verdict of its `verdicts.json` (a row each, the forest plot drawn) and
links every phase's report that exists."""

from __future__ import annotations

import shutil

import pytest
from labsession import ConsoleLog

from teachable.measure.verdicts import judge
from teachable.pipeline.provenance import Provenance
from teachable.pipeline.runner import PHASES, write_reports_index
from teachable.records.estimate import Estimate
from teachable.records.layout import RunLayout
from teachable.records.verdicts import save_phase_verdicts

# A primary that holds, a secondary that fails, a primary not measured.
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
            "transfer diagonal - off-diagonal (demo)",
            "diagonal > 0",
            Estimate(value=-0.2, low=-0.4, high=-0.05, n=4),
            ">",
            0.0,
        )
    ],
}


@pytest.fixture
def offline_page(chromium):
    """A page with the network off, its console and every URL it asks for kept."""
    context = chromium.new_context(offline=True, viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.console_log = ConsoleLog.attach(page)
    page.fetched = []
    page.on("request", lambda request: page.fetched.append(request.url))
    yield page
    context.close()
    assert [url for url in page.fetched if not url.startswith(("file:", "data:"))] == []
    assert page.console_log.errors == []


def test_no_report_shows_a_code_cell(offline_page, labeled_run, shots):
    pages = sorted(
        page
        for page in labeled_run.layout.reports.glob("*.html")
        if page != labeled_run.layout.reports_index
    )
    assert [page.stem for page in pages] == ["00_rollouts", "01_labeling"]
    for report in pages:
        offline_page.goto(report.as_uri(), wait_until="load")
        shots.take(offline_page, report.stem)
        assert offline_page.locator(".jp-CodeCell").count() > 0, "the outputs are there"
        assert offline_page.locator(".jp-CodeCell .jp-InputArea").count() == 0
        assert offline_page.locator(".jp-InputPrompt, .jp-OutputPrompt").count() == 0
        text = offline_page.locator("main").inner_text()
        assert "load_phase_parameters(" not in text and "phase_parameters = " not in text
        headings = offline_page.locator("h2").all_inner_texts()
        assert [h for h in headings if h.startswith("Parameters")] == ["Parameters"], "once"
        assert offline_page.locator("details summary", has_text="Shared sections").count() == 1


def test_the_index_lists_every_verdict_and_links_every_report(
    offline_page, labeled_run, shots, tmp_path
):
    folder = shutil.copytree(labeled_run.layout.folder, tmp_path / labeled_run.layout.folder.name)
    run = RunLayout(folder)
    assert run.reports_index.is_file(), "the runner wrote the index after the phases ran"
    for phase, verdicts in VERDICTS.items():
        save_phase_verdicts(run.verdicts, phase, verdicts)
    index = write_reports_index(run, Provenance.load(run))
    offline_page.goto(index.as_uri(), wait_until="load")
    shots.take(offline_page, "index")

    listed = offline_page.locator("tr.verdict").evaluate_all(
        "rows => rows.map(row => [0, 1, 7].map(column => row.cells[column].innerText))"
    )
    expected = [(v.phase, v.criterion, v.outcome) for vs in VERDICTS.values() for v in vs]
    assert sorted(map(tuple, listed)) == sorted(expected)
    loaded, width = offline_page.locator("img.forest").evaluate(
        "image => [image.complete, image.naturalWidth]"
    )
    assert loaded and width > 0, "the forest plot is drawn"
    shots.take(offline_page.locator("img.forest"), "forest-plot")

    assert offline_page.locator("tr.phase").count() == len(PHASES)
    links = offline_page.locator("tr.phase a").evaluate_all("links => links.map(link => link.href)")
    assert [link.rsplit("/", 1)[1] for link in links] == ["00_rollouts.html", "01_labeling.html"]
    for link in links:
        offline_page.goto(link, wait_until="load")
        assert offline_page.locator("main h1").count() >= 1, f"{link} opens a report"
