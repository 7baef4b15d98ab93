"""Test session set-up: every notebook kernel runs on the smoke parameters, and whatever the
notebooks write lands in a temporary folder, never in the repository's `runs/`."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

SMOKE = Path(__file__).resolve().parent / "parameters" / "smoke.yaml"
SMOKE_FOLDER = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Point `TEACHABLE_PARAMS` at a copy of the smoke parameters whose runs go to a temporary
    folder; kernels inherit it, and the notebooks' parameters cell reads it."""
    if not SMOKE.is_file():
        raise pytest.UsageError(f"{SMOKE} is missing: the notebooks run on it")
    folder = Path(tempfile.mkdtemp(prefix="teachable-tests-"))
    smoke = yaml.safe_load(SMOKE.read_text())
    smoke.setdefault("run", {})["output_root"] = str(folder / "runs")
    copy = folder / SMOKE.name
    copy.write_text(yaml.safe_dump(smoke, sort_keys=False))
    os.environ["TEACHABLE_PARAMS"] = str(copy)
    config.stash[SMOKE_FOLDER] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(SMOKE_FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
