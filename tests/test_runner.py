"""The phase runner: real papermill, real kernels, on stand-in phase notebooks.

`tests/notebooks/passing/00_rollouts.ipynb` records the parameters it received and writes the
outputs phase 0 declares; `tests/notebooks/failing/00_rollouts.ipynb` raises in its third cell.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest
import yaml
from offline_html import WIDGET_PLACEHOLDER, network_references

from teachable.__main__ import main
from teachable.parameters import load_parameters
from teachable.pipeline.runner import (
    PHASES,
    Phase,
    PhaseFailed,
    check_inputs,
    select_phases,
    stale_reason,
)
from teachable.records.store import read_json

FIXTURES = Path(__file__).parent / "notebooks"
OUTPUTS = ("warmup.json", "rollouts.json", "failure_snapshots.json", "snapshots_expert.json")


def write_parameters(path: Path, n_tasks: int = 3, batch_size: int = 32) -> Path:
    """A parameter file whose runs land in a `runs/` folder beside it."""
    parameters = {
        "run": {"seed": 7, "output_root": "runs"},
        "student": {"model": "tiny", "batch_size": batch_size},
        "phase0": {"n_tasks": n_tasks},
    }
    path.write_text(yaml.safe_dump(parameters))
    return path


def copy_notebooks(folder: Path, kind: str = "passing") -> Path:
    """A private copy of a fixture folder, so a test may touch its files."""
    return Path(shutil.copytree(FIXTURES / kind, folder / f"{kind}_notebooks"))


def run(params: Path, notebooks: Path, *extra: str) -> int:
    """Run phase 0 (the one the fixture folders hold) unless `extra` names phases."""
    phases = () if "--phases" in extra else ("--phases", "0")
    return main(["run", str(params), "--notebooks-dir", str(notebooks), *phases, *extra])


def output_mtimes(run_dir: Path) -> list[int]:
    return [(run_dir / "phase0" / name).stat().st_mtime_ns for name in OUTPUTS]


def date_outputs_ahead(run_dir: Path) -> float:
    """Date the outputs an hour ahead, so that no source file saved while a test runs (the
    package's own included) makes them stale; return that time."""
    ahead = time.time() + 3600
    for name in OUTPUTS:
        os.utime(run_dir / "phase0" / name, (ahead, ahead))
    return ahead


@dataclass(frozen=True)
class FirstRun:
    """A run of phase 0 on fresh files, shared by tests that read what it left (one of them
    also re-dates its outputs)."""

    code: int
    params: Path
    notebooks: Path
    run_dir: Path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> FirstRun:
    folder = tmp_path_factory.mktemp("first_run")
    notebooks = copy_notebooks(folder)
    params = write_parameters(folder / "trial.yaml")
    return FirstRun(run(params, notebooks), params, notebooks, folder / "runs" / "trial")


def test_injected_parameters_reach_the_notebook_in_its_folder_on_this_interpreter(first_run):
    assert first_run.code == 0
    received = read_json(first_run.run_dir / "phase0" / "received.json")
    parameters = load_parameters(first_run.params)
    assert received["params_file"] == str(first_run.params.resolve())
    assert received["phase_parameters"] == parameters.section("phase0")
    assert received["phase_parameters"]["n_tasks"] == 3
    assert received["interactive"] is False
    assert received["cwd"] == str(first_run.notebooks.resolve())
    assert received["executable"] == sys.executable
    for name in OUTPUTS:
        assert read_json(first_run.run_dir / "phase0" / name) == {"n_tasks": 3}


def test_executed_notebook_is_saved_as_ipynb_and_offline_html_reports(first_run):
    reports = first_run.run_dir / "reports"
    executed = nbformat.read(reports / "00_rollouts.ipynb", as_version=4)
    injected = [
        cell for cell in executed.cells if "injected-parameters" in cell.metadata.get("tags", [])
    ]
    assert len(injected) == 1 and "interactive = False" in injected[0].source
    printed = [
        output.get("text", "") for cell in executed.cells for output in cell.get("outputs", [])
    ]
    assert any("wrote 3 tasks" in text for text in printed)

    html = (reports / "00_rollouts.html").read_text()
    assert "wrote 3 tasks" in html
    assert "<style" in html
    assert network_references(html) == [], "a report must read offline: no CDN, nothing fetched"


def test_progress_bars_are_text_in_the_reports_not_widgets(first_run):
    reports = first_run.run_dir / "reports"
    executed = nbformat.read(reports / "00_rollouts.ipynb", as_version=4)
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])]
    assert not any(WIDGET_PLACEHOLDER in output.get("data", {}) for output in outputs)
    assert "widgets" not in executed.metadata
    stderr = "".join(output.get("text", "") for output in outputs if output.get("name") == "stderr")
    assert "stand-in loop: 100%" in stderr

    html = (reports / "00_rollouts.html").read_text()
    assert WIDGET_PLACEHOLDER not in html
    assert re.search(r"stand-in loop: 100%\|█+\| 3/3", html), "the bar's last state, as text"


def test_the_html_report_shows_no_code_and_the_parameters_once_as_a_table(first_run):
    reports = first_run.run_dir / "reports"
    executed = nbformat.read(reports / "00_rollouts.ipynb", as_version=4)
    code = [cell.source for cell in executed.cells if cell.cell_type == "code"]
    assert any("write_json(outputs / name" in source for source in code), "the ipynb keeps it"

    html = (reports / "00_rollouts.html").read_text()
    body = html[html.index("<body") :]
    assert "jp-InputArea-editor" not in body and "highlight hl-ipython3" not in body
    assert "write_json(outputs / name" not in body and "interactive = False" not in body
    assert "wrote 3 tasks" in body, "the outputs stay"
    assert body.count("<code>phase0.n_tasks</code></td><td>3</td>") == 1
    assert body.count("<code>student.model</code></td><td>tiny</td>") == 1, "shared, folded"


def test_the_reports_index_is_written_when_a_phase_finishes(first_run):
    index = (first_run.run_dir / "reports" / "index.html").read_text()
    assert '<a href="00_rollouts.html">00_rollouts.html</a>' in index
    assert "ran: no finished run on record" in index
    assert "No phase has judged a criterion yet" in index


@pytest.mark.slow
def test_the_terminal_shows_the_phases_own_bars_and_no_kernel_warning(tmp_path):
    notebooks = copy_notebooks(tmp_path)
    params = write_parameters(tmp_path / "trial.yaml")
    command = [sys.executable, "-m", "teachable", "run", str(params), "--phases", "0"]
    result = subprocess.run(
        [*command, "--notebooks-dir", str(notebooks)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    bar = re.compile(r"^  stand-in loop: 100%\|█+\| 3/3 \[\d\d:\d\d<\d\d:\d\d, .+it/s\]$", re.M)
    assert len(bar.findall(result.stdout)) == 1, "one plain line for the bar, with its rate"
    assert "\r" not in result.stdout, "no redraws where the output is no terminal"
    assert "Executing" not in result.stdout + result.stderr, "no bar per cell"
    assert "without encryption" not in result.stderr
    assert "[IPKernelApp]" not in result.stderr, "nothing of the kernel's own log"


def test_provenance_records_parameters_code_packages_device_seeds_and_phases(first_run):
    provenance = read_json(first_run.run_dir / "provenance.json")
    parameters = load_parameters(first_run.params)
    assert provenance["parameter_file"] == str(first_run.params.resolve())
    assert provenance["parameters"] == parameters.model_dump(mode="json", exclude={"source"})
    assert provenance["seeds"]["run.seed"] == 7
    assert provenance["seeds"]["lora.seed"] == parameters.lora.seed
    commit = provenance["git"]["commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    assert provenance["packages"]["papermill"] == version("papermill")
    assert provenance["packages"]["torch"] == version("torch")
    assert provenance["python"] == sys.version
    assert isinstance(provenance["device"]["cuda_available"], bool)
    assert provenance["device"]["requested"] == "cpu"
    assert provenance["status"] == "finished"
    [phase] = provenance["phases"]
    assert (phase["name"], phase["status"]) == ("0", "ran")
    started, finished = (
        datetime.fromisoformat(phase[key]) for key in ("started_at", "finished_at")
    )
    assert started <= finished
    assert phase["report"] == str(first_run.run_dir / "reports" / "00_rollouts.ipynb")


def test_up_to_date_phase_is_skipped_and_force_reruns_it(tmp_path, capsys):
    notebooks = copy_notebooks(tmp_path)
    params = write_parameters(tmp_path / "trial.yaml")
    run_dir = tmp_path / "runs" / "trial"
    assert run(params, notebooks) == 0
    date_outputs_ahead(run_dir)
    before = output_mtimes(run_dir)
    capsys.readouterr()

    assert run(params, notebooks) == 0
    assert re.search(
        r"phase 0 \(00_rollouts.ipynb\): up to date since \S+, skipped", capsys.readouterr().out
    )
    assert output_mtimes(run_dir) == before
    assert read_json(run_dir / "provenance.json")["phases"][0]["status"] == "skipped"

    assert run(params, notebooks, "--force") == 0
    assert "running, forced" in capsys.readouterr().out
    assert all(after != old for after, old in zip(output_mtimes(run_dir), before, strict=True))
    assert read_json(run_dir / "provenance.json")["phases"][0]["status"] == "ran"


def test_changed_parameters_make_the_phase_rerun(tmp_path, capsys):
    notebooks = copy_notebooks(tmp_path)
    params = write_parameters(tmp_path / "trial.yaml", n_tasks=3)
    run_dir = tmp_path / "runs" / "trial"
    assert run(params, notebooks) == 0
    capsys.readouterr()

    write_parameters(params, n_tasks=5)
    assert run(params, notebooks) == 0
    assert "its parameters changed" in capsys.readouterr().out
    assert read_json(run_dir / "phase0" / "rollouts.json") == {"n_tasks": 5}

    write_parameters(params, n_tasks=5, batch_size=4)
    phase = select_phases(["0"], notebooks)[0]
    assert stale_reason(load_parameters(params), phase, notebooks) == "its parameters changed"


def test_notebook_or_input_newer_than_the_outputs_makes_the_phase_stale(first_run, tmp_path):
    parameters = load_parameters(first_run.params)
    phase = PHASES[0]
    notebooks = copy_notebooks(tmp_path)
    outputs_time = date_outputs_ahead(first_run.run_dir)
    os.utime(notebooks / phase.notebook, (outputs_time - 60, outputs_time - 60))
    assert stale_reason(parameters, phase, notebooks) is None

    os.utime(notebooks / phase.notebook, (outputs_time + 60, outputs_time + 60))
    assert "00_rollouts.ipynb is newer than its outputs" in stale_reason(
        parameters, phase, notebooks
    )

    upstream = first_run.run_dir / "upstream.json"
    reading = Phase(
        phase.name, phase.notebook, phase.section, phase.outputs, lambda run: (upstream,)
    )
    with pytest.raises(PhaseFailed, match="upstream.json, which does not exist"):
        check_inputs(parameters, reading)
    upstream.write_text("{}")
    os.utime(upstream, (outputs_time + 60, outputs_time + 60))
    assert "upstream.json is newer" in stale_reason(parameters, reading, first_run.notebooks)
    upstream.unlink()


@pytest.mark.slow
def test_failing_cell_stops_the_cli_with_the_notebook_and_the_error(tmp_path):
    notebooks = copy_notebooks(tmp_path)
    params = write_parameters(tmp_path / "trial.yaml")
    run_dir = tmp_path / "runs" / "trial"
    assert run(params, notebooks) == 0
    notebook = notebooks / "00_rollouts.ipynb"
    unchanged = notebook.stat().st_mtime
    shutil.copyfile(FIXTURES / "failing" / "00_rollouts.ipynb", notebook)
    os.utime(notebook, (unchanged, unchanged))  # a failure no file change explains, like a crash
    command = [sys.executable, "-m", "teachable", "run", str(params), "--force", "--phases", "0"]
    result = subprocess.run(
        [*command, "--notebooks-dir", str(notebooks)], capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 1
    assert f"{notebook} failed" in result.stderr
    assert f"report: {run_dir / 'reports' / '00_rollouts.ipynb'}" in result.stderr
    assert 'raise ValueError(f"no level with a door among {levels_with_doors}")' in result.stderr
    assert "ValueError: no level with a door among []" in result.stderr

    executed = nbformat.read(run_dir / "reports" / "00_rollouts.ipynb", as_version=4)
    texts = [out.get("text", "") for cell in executed.cells for out in cell.get("outputs", [])]
    assert any("cells before the failure ran" in text for text in texts)
    assert not any("this cell never runs" in text for text in texts)
    assert "no level with a door" in (run_dir / "reports" / "00_rollouts.html").read_text()
    provenance = read_json(run_dir / "provenance.json")
    assert provenance["status"] == "failed"
    assert provenance["phases"][0]["status"] == "failed"
    parameters = load_parameters(params)
    assert stale_reason(parameters, PHASES[0], notebooks) == "no finished run on record"


def test_bad_parameter_file_exits_2_naming_file_and_key_before_any_run(tmp_path, capsys):
    params = tmp_path / "typo.yaml"
    params.write_text("run:\n  output_root: runs\nphase0:\n  n_taks: 3\n")
    assert run(params, FIXTURES / "passing") == 2
    err = capsys.readouterr().err
    assert str(params) in err and "phase0.n_taks: unknown key" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_phase_or_missing_notebook_is_an_error_before_any_run(tmp_path, capsys):
    params = write_parameters(tmp_path / "trial.yaml")
    assert run(params, FIXTURES / "passing", "--phases", "0", "9") == 2
    known = ", ".join(phase.name for phase in PHASES)
    assert f"unknown phase(s) 9; known: {known}" in capsys.readouterr().err
    assert run(params, tmp_path / "nowhere") == 2
    assert f"no notebook {tmp_path / 'nowhere' / '00_rollouts.ipynb'}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert select_phases([]) == list(PHASES)
