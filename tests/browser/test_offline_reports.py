"""The executed HTML reports read offline: they name no CDN, and Chromium with its network
disabled draws their charts and tables and shows progress as text."""

from __future__ import annotations

import re

from labsession import ConsoleLog
from offline_html import WIDGET_PLACEHOLDER, network_references

REPORT = "01_labeling.ipynb"  # histograms, the U x L scatter, the patch charts, tables
PROGRESS_TEXT = re.compile(r"\d+%\|[^|]*\| \d+/\d+ \[")  # tqdm's text bar: " 6/6 [00:03<..."


def report_folder(run):
    return run.layout.report(REPORT).parent


def test_reports_name_no_cdn_and_hold_no_widget_placeholders(labeled_run):
    pages = sorted(report_folder(labeled_run).glob("*.html"))
    assert [page.stem for page in pages][:2] == ["00_rollouts", "01_labeling"]
    for page in pages:
        html = page.read_text()
        assert network_references(html) == [], f"{page.name} fetches from the network"
        assert WIDGET_PLACEHOLDER not in html, f"{page.name} holds widget placeholders"


def test_report_renders_offline_with_charts_as_images(chromium, labeled_run, shots):
    report = labeled_run.layout.report(REPORT).with_suffix(".html")
    context = chromium.new_context(offline=True, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console = ConsoleLog.attach(page)
    fetched = []
    page.on("request", lambda request: fetched.append(request.url))
    try:
        page.goto(report.as_uri(), wait_until="load")
        shots.take(page, "report-offline")
        images = page.locator(".jp-OutputArea-output img").evaluate_all(
            "images => images.map(image =>"
            " [image.complete, image.naturalWidth, image.naturalHeight, image.clientWidth])"
        )
        tables = page.locator(".jp-OutputArea-output table").count()
        text = page.locator("main").inner_text()
    finally:
        context.close()
    # the U and L histograms, the U x L scatter, the ELP and route charts: three images
    assert len(images) >= 3
    for loaded, width, height, shown in images:
        assert loaded and width > 0 and height > 0 and shown > 0, "an empty chart"
    assert tables >= 2, "the snapshot counts and the quadrant table"
    assert PROGRESS_TEXT.search(text), "progress bars shown as text"
    assert [url for url in fetched if not url.startswith(("file:", "data:"))] == []
    assert console.errors == []
