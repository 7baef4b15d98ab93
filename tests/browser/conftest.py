"""The real-browser suite: Debian's Chromium, driven by Playwright, against a JupyterLab that
the suite starts on a free local port with a token, over a run labeled through Phase 1.

`make test-browser` runs it (`pytest tests/browser`); `make test` leaves it out. By default the
run is the smoke parameters' (the root conftest's temporary copy), made here with
`python -m teachable run ... --phases 0 1`; `--browser-params FILE` points the suite at a run
that FILE names and that Phase 1 has labeled already (the picker's Save rewrites its quadrants:
use a copy). Every step leaves a screenshot under `--browser-output` (default
`test-output/browser/`), and any error in the browser's console fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from labsession import ConsoleLog, JupyterLab, Shots

from teachable.parameters import Parameters, load_parameters

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_PACKAGE = "chromium"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("teachable browser suite")
    group.addoption(
        "--browser-params",
        default=None,
        help="parameter file of a run that Phase 1 has labeled (default: make a smoke run)",
    )
    group.addoption(
        "--browser-output",
        default=str(ROOT / "test-output" / "browser"),
        help="folder for the screenshots of every step (default: test-output/browser)",
    )
    group.addoption(
        "--chromium",
        default=os.environ.get("TEACHABLE_CHROMIUM") or shutil.which(CHROMIUM_PACKAGE),
        help="the Chromium executable (default: $TEACHABLE_CHROMIUM, else `chromium` on PATH)",
    )


@pytest.fixture(scope="session")
def labeled_run(request: pytest.FixtureRequest) -> Parameters:
    """The parameters of a run whose Phase 1 labels (and reports) exist."""
    chosen = request.config.getoption("--browser-params")
    if chosen is not None:
        parameters = load_parameters(Path(chosen))
        if not parameters.layout.phase1.labeled_json.is_file():
            pytest.fail(f"{parameters.layout.phase1.labeled_json} is missing: run phase 1 first")
        return parameters
    smoke = Path(os.environ["TEACHABLE_PARAMS"])  # the root conftest's temporary copy
    command = [sys.executable, "-m", "teachable", "run", str(smoke), "--phases", "0", "1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return load_parameters(smoke)


@pytest.fixture(scope="session")
def lab(labeled_run: Parameters, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab on a copy of `notebooks/` (so that nothing it saves lands in the
    repository), its kernels reading the labeled run's parameters."""
    folder = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", folder / "root" / "notebooks")
    server = JupyterLab.start(folder, params_file=labeled_run.source.resolve())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium(request: pytest.FixtureRequest) -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail('Playwright is missing: pip install -e ".[browser]" (make test-browser does)')
    executable = request.config.getoption("--chromium")
    if not executable or not Path(executable).is_file():
        pytest.fail(
            f"no Chromium: install the Debian package `{CHROMIUM_PACKAGE}` "
            f"(apt-get install -y {CHROMIUM_PACKAGE}), or pass --chromium PATH"
        )
    with sync_playwright() as playwright:
        # Chromium's sandbox does not run as root (CI containers); the pages are local ones.
        arguments = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=executable, args=arguments)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium) -> Iterator[object]:
    """A fresh page, 1400x1600 (the explorer's card fits in it), whose console errors fail
    the test at its end."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.console_log = ConsoleLog.attach(page)
    yield page
    context.close()
    errors = Counter(page.console_log.errors)
    if errors:
        lines = [f"  {count} x {error}" for error, count in errors.most_common()]
        pytest.fail("errors in the browser console:\n" + "\n".join(lines), pytrace=False)


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    """Where this test's screenshots go: `<browser output>/<test name>/NN-step.png`."""
    folder = Path(request.config.getoption("--browser-output")) / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    return Shots(folder)
