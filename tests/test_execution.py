"""The executor: the smoke run's Phases 1 to 5 on a local Ray instance (a head started here, two
CPU workers, the tiny student) write the same files as the local backend; a labeling whose
worker process is killed midway still writes every row once; a unit that always fails stops
the phase naming it, after its finished rows are written; and the local backend never imports
Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from teachable.models.teachers import BotTeacher
from teachable.models.workers import LocalWorkers, UnitFailed
from teachable.parameters import ExecutionParameters, load_parameters
from teachable.phases import phase1_labels
from teachable.phases.phase0_warmup import load_prepared_student, prepared_student
from teachable.phases.phase1_labels import label_snapshots, label_test_snapshots, phase1_snapshots
from teachable.pipeline.runner import run_phases, select_phases
from teachable.records.env_state import EnvState
from teachable.records.layout import Phase1Layout
from teachable.records.store import read_jsonl

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e .[ray]")
pytestmark = pytest.mark.slow  # a Ray head and the smoke run's phases on both backends

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "parameters" / "smoke.yaml"
RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
WORKERS = {"backend": "ray", "max_workers": 2, "num_cpus_per_worker": 1, "max_retries": 2}
UNTIMED = ("provenance.json", "history.jsonl", "run.lock", "stamps", "reports")  # when it ran


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def head() -> str:
    """A Ray head on this machine with two CPUs, as `ray start --head` makes one on a cluster;
    its address, which the parameters' `execution.address` names."""
    port = free_port()
    # A throwaway cluster on this machine alone: no usage reports, no token to hand around
    # (the kernels the runner starts inherit this environment).
    quiet = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    saved = {name: os.environ.get(name) for name in quiet}
    os.environ.update(quiet)
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"],
        check=True,
        capture_output=True,
    )
    address = f"127.0.0.1:{port}"
    ray.init(address=address, log_to_driver=False)
    yield address
    ray.shutdown()
    subprocess.run([RAY, "stop", "--force"], check=False, capture_output=True)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def smoke_file(folder: Path, name: str, execution: dict) -> Path:
    """The smoke parameters with their runs in `folder` and the given `execution` section."""
    data = yaml.safe_load(SMOKE.read_text())
    data["run"] |= {"name": name, "output_root": str(folder)}
    data["execution"] = execution
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def phase0_run(tmp_path_factory) -> Path:
    """Phase 0 of the smoke run, once: both backends start from copies of it."""
    folder = tmp_path_factory.mktemp("executors")
    params = load_parameters(smoke_file(folder, "phase0", {}))
    run_phases(params, select_phases(["0"]))
    return params.run_dir


def files_of(run_dir: Path) -> dict[str, object]:
    """Every file of a run but those that record when and where it ran; JSON read with its
    timings (`seconds...` fields) dropped and the run folder's path replaced by `<run>`,
    everything else as bytes."""

    def untimed(value: object) -> object:
        if isinstance(value, dict):
            return {k: untimed(v) for k, v in value.items() if not k.startswith("seconds")}
        if isinstance(value, list):
            return [untimed(v) for v in value]
        if isinstance(value, str):
            return value.replace(str(run_dir), "<run>")
        return value

    found = {}
    for path in sorted(run_dir.rglob("*")):
        relative = path.relative_to(run_dir)
        if not path.is_file() or relative.parts[0] in UNTIMED:
            continue
        if path.suffix == ".json":
            found[str(relative)] = untimed(json.loads(path.read_text()))
        elif path.suffix == ".jsonl":
            found[str(relative)] = [untimed(row) for row in read_jsonl(path)]
        else:
            found[str(relative)] = path.read_bytes()
    return found


def test_ray_and_local_backends_write_the_same_files(head, phase0_run, tmp_path):
    runs = {}
    for backend, execution in (("local", {}), ("ray", {**WORKERS, "address": head})):
        params = load_parameters(smoke_file(tmp_path, backend, execution))
        shutil.copytree(phase0_run, params.run_dir)
        run_phases(params, select_phases(["1", "1a", "1b", "2", "3", "4", "5"]))
        runs[backend] = files_of(params.run_dir)
    local, on_ray = runs["local"], runs["ray"]
    assert any(name.endswith("adapter_model.safetensors") for name in local)
    assert "phase5/selection/selection_summary.json" in local
    assert sorted(on_ray) == sorted(local)
    different = [name for name in local if on_ray[name] != local[name]]
    assert different == []


def labeling_inputs(phase0_run: Path, tmp_path: Path, **phase1: object):
    """The smoke run's Phase 1 snapshots and parameters (with `phase1` changes), and a fresh
    Phase 1 folder."""
    params = load_parameters(smoke_file(tmp_path, "labels", {}))
    shutil.copytree(phase0_run, params.run_dir)
    params.phase1 = params.phase1.model_copy(update=phase1)
    to_label = phase1_snapshots(
        params.phase1, params.run.seed, params.layout.phase0, params.layout.split
    )
    return params, to_label, Phase1Layout(tmp_path / "phase1")


def test_a_killed_worker_is_restarted_and_every_row_is_written_once(
    head, phase0_run, tmp_path, monkeypatch
):
    params, to_label, out = labeling_inputs(
        phase0_run,
        tmp_path,
        max_snapshots=None,
        batch_snapshots=1,
        n_rollouts=8,
        n_per_condition=8,
        reliability_panel=0,
    )
    snapshots = to_label.labeled
    assert len(snapshots) >= 4
    appended = []
    append = phase1_labels.append_jsonl
    monkeypatch.setattr(
        phase1_labels,
        "append_jsonl",
        lambda path, row: (appended.append(row["id"]), append(path, row)),
    )
    from teachable.pipeline.execution import RayWorkers

    workers = RayWorkers(
        ExecutionParameters(**WORKERS, address=head), prepared_student(params.layout.phase0)
    )
    victim = workers.pids()[0]
    killed_after = []

    def kill_when_a_row_is_written() -> None:
        while not appended:
            time.sleep(0.05)
        killed_after.append(len(appended))
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_a_row_is_written, daemon=True)
    killer.start()
    report = label_snapshots(
        snapshots,
        params.phase1,
        params.run.seed,
        workers,
        BotTeacher(params.teacher),
        out,
        progress=False,
    )
    killer.join(timeout=10)
    assert killed_after and killed_after[0] < len(snapshots)
    assert victim not in workers.pids()  # the worker was restarted
    assert sorted(appended) == sorted(s.id for s in snapshots)  # every row once
    reference = label_snapshots(
        snapshots,
        params.phase1,
        params.run.seed,
        LocalWorkers(load_prepared_student(params.layout.phase0)),
        BotTeacher(params.teacher),
        Phase1Layout(tmp_path / "reference"),
        progress=False,
    )
    assert [r.model_dump() for r in report.rows] == [r.model_dump() for r in reference.rows]
    workers.close()


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_unit_that_always_fails_stops_the_phase_naming_it_after_the_finished_rows(
    backend, request, phase0_run, tmp_path
):
    params, to_label, out = labeling_inputs(phase0_run, tmp_path, batch_snapshots=1)
    good = to_label.test[:3]
    broken = good[0].model_copy(
        update={"id": "broken", "env_state": EnvState("BabyAI-NoSuchLevel-v0", 0)}
    )
    student = prepared_student(params.layout.phase0)
    if backend == "ray":
        from teachable.pipeline.execution import RayWorkers

        execution = ExecutionParameters(**WORKERS, address=request.getfixturevalue("head"))
        workers = RayWorkers(execution, student)
    else:
        workers = LocalWorkers(load_prepared_student(params.layout.phase0))
    with pytest.raises(UnitFailed, match="labels of broken") as failed:
        label_test_snapshots([*good, broken], params.phase1, params.run.seed, workers, out, False)
    assert failed.value.unit_id == "labels of broken"
    assert "NoSuchLevel" in failed.value.error
    assert [row["id"] for row in read_jsonl(out.test_labels)] == [s.id for s in good]


def test_the_local_backend_never_imports_ray(phase0_run, tmp_path):
    params_file = smoke_file(tmp_path, "no_ray", {})
    shutil.copytree(phase0_run, load_parameters(params_file).run_dir)
    script = f"""
import sys
import teachable
from teachable import load_parameters, phase1_snapshots, prepared_student, start_workers
from teachable import label_test_snapshots
from teachable.records.layout import Phase1Layout

params = load_parameters({str(params_file)!r})
workers = start_workers(params.execution, prepared_student(params.layout.phase0))
to_label = phase1_snapshots(params.phase1, 0, params.layout.phase0, params.layout.split)
rows = label_test_snapshots(
    to_label.test[:1], params.phase1, 0, workers, Phase1Layout({str(tmp_path / "p1")!r}), False
)
assert rows[0].leverage is not None
print("ray imported:", "ray" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().endswith("ray imported: False")
