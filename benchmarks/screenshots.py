"""The README's screenshots of the threshold picker (before and after moving its sliders) and
of the snapshot explorer, taken by the browser suite on a labeled run; with `--run`, also the
first screen of a finished run's index page and of its Phase 1B report, read offline.

Runs `tests/browser/test_lab_widgets.py` (JupyterLab in Chromium: Run All Cells, drag the U
slider, step the L slider, Save, then the explorer) on the run that PARAMS names, which Phase 1
must have labeled. The picker's Save rewrites that run's quadrants, so give it a copy: a
parameter file whose `run.output_root` and `run.name` point at a folder holding copies of the
run's `phase0/` and `phase1/`. The three steps' screenshots are written to OUT (default
`benchmarks/screenshots/`), at most 1200 px wide, as palette PNGs.

    .venv/bin/python benchmarks/screenshots.py PARAMS [--out benchmarks/screenshots]
        [--run runs/pilot]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPOSITORY = Path(__file__).resolve().parent.parent
WIDTH = 1200
# screenshot of the suite (test, step) -> file of the README
KEPT = {
    ("test_threshold_picker_in_jupyterlab", "picker-before"): "picker-before.png",
    ("test_threshold_picker_in_jupyterlab", "picker-after"): "picker-after.png",
    ("test_snapshot_explorer_in_jupyterlab", "explorer-card"): "explorer.png",
}


PAGES = {"index.html": "index.png", "01b_cpt_validation.html": "report-1b.png"}  # a run's pages


def shrink(source: Path, target: Path) -> None:
    """At most WIDTH px wide, 256 colours, optimized. The octree keeps the few pixels of each
    quadrant's colour (median cut merges them: Q1 and Q4 came out one colour)."""
    image = Image.open(source).convert("RGB")
    if image.width > WIDTH:
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)


def run_pages(run: Path, folder: Path, out: Path) -> None:
    """The first screen of each of `PAGES` of the run's reports, in Chromium with the network
    off, shrunk into `out`."""
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("TEACHABLE_CHROMIUM") or shutil.which("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        context = browser.new_context(offline=True, viewport={"width": 1200, "height": 1300})
        page = context.new_page()
        for name, shot in PAGES.items():
            page.goto((run / "reports" / name).resolve().as_uri(), wait_until="load")
            page.screenshot(path=folder / shot)
            shrink(folder / shot, out / shot)
            print(f"{out / shot}: {(out / shot).stat().st_size // 1024} KiB")
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params", type=Path, help="parameter file of a labeled run (a copy)")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "benchmarks" / "screenshots")
    parser.add_argument("--run", type=Path, help="a finished run folder: its index and a report")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="teachable-screenshots-") as folder:
        command = [
            sys.executable,
            "-m",
            "pytest",
            "tests/browser/test_lab_widgets.py",
            f"--browser-params={arguments.params.resolve()}",
            f"--browser-output={folder}",
        ]
        if subprocess.run(command, cwd=REPOSITORY).returncode != 0:
            return 1
        arguments.out.mkdir(parents=True, exist_ok=True)
        for (test, step), name in KEPT.items():
            (taken,) = Path(folder, test).glob(f"*-{step}.png")
            shrink(taken, arguments.out / name)
            print(f"{arguments.out / name}: {(arguments.out / name).stat().st_size // 1024} KiB")
        if arguments.run is not None:
            run_pages(arguments.run, Path(folder), arguments.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
