"""The README's screenshots of the threshold picker (before and after moving its sliders) and
of the snapshot explorer, taken by the browser suite on a labeled run.

Runs `tests/browser/test_lab_widgets.py` (JupyterLab in Chromium: Run All Cells, drag the U
slider, step the L slider, Save, then the explorer) on the run that PARAMS names, which Phase 1
must have labeled. The picker's Save rewrites that run's quadrants, so give it a copy: a
parameter file whose `run.output_root` and `run.name` point at a folder holding copies of the
run's `phase0/` and `phase1/`. The three steps' screenshots are written to OUT (default
`benchmarks/screenshots/`), at most 1200 px wide, as palette PNGs.

    .venv/bin/python benchmarks/screenshots.py PARAMS [--out benchmarks/screenshots]
"""

from __future__ import annotations

import argparse
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


def shrink(source: Path, target: Path) -> None:
    """At most WIDTH px wide, 256 colours, optimized. The octree keeps the few pixels of each
    quadrant's colour (median cut merges them: Q1 and Q4 came out one colour)."""
    image = Image.open(source).convert("RGB")
    if image.width > WIDTH:
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("params", type=Path, help="parameter file of a labeled run (a copy)")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "benchmarks" / "screenshots")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
