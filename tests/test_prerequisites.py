"""A run stops before any phase when its parameters need what is not there: the OpenAI key of
`pilot_api.yaml`, or the student folder of `full.yaml`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from teachable.parameters import load_parameters
from teachable.pipeline.runner import PrerequisiteMissing, check_prerequisites

ROOT = Path(__file__).resolve().parents[1]


def test_pilot_api_without_a_key_stops_at_once(tmp_path: Path) -> None:
    settings = yaml.safe_load((ROOT / "parameters" / "pilot_api.yaml").read_text())
    assert settings["teacher"]["backend"] == "openai"
    settings["run"]["output_root"] = str(tmp_path / "runs")
    params = tmp_path / "pilot_api.yaml"
    params.write_text(yaml.safe_dump(settings))
    environment = {name: value for name, value in os.environ.items() if name != "OPENAI_API_KEY"}
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "teachable", "run", str(params)],
        cwd=tmp_path,  # no .env here or above
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    assert "OPENAI_API_KEY" in finished.stderr
    assert str(params) in finished.stderr
    assert time.monotonic() - started < 60
    assert "phase 0" not in finished.stdout
    assert not (tmp_path / "runs").exists()


def test_a_missing_student_folder_names_the_parameter_and_the_path(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "a-key-that-is-never-sent")
    params = load_parameters(ROOT / "parameters" / "full.yaml")
    assert not Path(params.student.model_path).exists()
    with pytest.raises(PrerequisiteMissing) as error:
        check_prerequisites(params)
    message = str(error.value)
    assert "student.model_path" in message
    assert params.student.model_path in message
    assert str(params.source) in message


def test_the_bot_teacher_without_a_student_folder_needs_nothing(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for name in ("smoke", "pilot"):
        check_prerequisites(load_parameters(ROOT / "parameters" / f"{name}.yaml"))
