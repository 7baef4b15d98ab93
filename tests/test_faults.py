"""Faults that are loud and heal: a teacher server that is down, answers wrongly, says nothing
or fails for a while; two runs on one run folder and a run killed while holding it; a file cut
short, a student folder that holds no model, and rows that lack a label a step needs.

The teacher's faults are played by `ChatServer`, a real chat-completions server on 127.0.0.1,
reached through the real `openai` client. Runs are real `python -m teachable` commands: in
this process, or as a subprocess where two must run at once, on the real Phase 1 notebook or
on the runner's stand-in notebooks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from chat_server import ChatServer, FailFirst, Outage, always, outside_the_list, silent, user_prompt

from teachable.__main__ import main
from teachable.models.conditions import teacher_request
from teachable.models.teachers import (
    OpenAITeacher,
    TeacherMonitor,
    TeacherOutage,
    TeacherPlayer,
    make_teacher,
    prompt_messages,
)
from teachable.models.workers import LocalWorkers
from teachable.parameters import (
    Parameters,
    Phase1Parameters,
    TeacherParameters,
)
from teachable.phases.phase0_snapshots import collect_expert_snapshots, expert_snapshots
from teachable.phases.phase0_warmup import save_preparation
from teachable.phases.phase1_labels import label_snapshots
from teachable.records.env_state import EnvState
from teachable.records.labeled import LabeledSnapshot, Leverage, load_teacher_health
from teachable.records.layout import Phase1Layout, RunLayout
from teachable.records.snapshot import save_snapshots
from teachable.records.store import read_json, read_jsonl
from teachable.world.text_world import env_id, expert_trajectory

RUNNER_FIXTURES = Path(__file__).parent / "notebooks"
MAX_RETRIES = 2
PHASE1 = {
    "n_rollouts": 2,
    "n_per_condition": 2,
    "max_steps": 4,
    "temperature": 5.0,
    "batch_snapshots": 2,
    "min_per_quadrant": 0,
}


@pytest.fixture
def api_key(monkeypatch, tmp_path):
    """A key for the local server, and a working folder without any .env file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "local-test-key")


@pytest.fixture(scope="module")
def snapshots(student):
    """Four snapshots with distinct observations: the first and the last decision of the bot
    on two GoToLocal tasks."""
    picked = []
    for seed in (1, 2):
        task = EnvState(env_id("GoToLocal"), seed)
        actions, success = expert_trajectory(task, 64)
        assert success
        for k in (0, len(actions) - 1):
            picked.append((EnvState(task.env_id, seed, tuple(actions[:k])), actions[k], True))
    found = expert_snapshots(student, picked)
    assert len({snapshot.observation for snapshot in found}) == len(found)
    return found


def _teacher(server: ChatServer, cache: Path, **fields) -> OpenAITeacher:
    params = TeacherParameters(
        backend="openai", base_url=server.base_url, max_retries=MAX_RETRIES, timeout_s=5, **fields
    )
    return OpenAITeacher(params, cache)


def _label(snapshots, student, teacher, folder: Path):
    phase1 = Phase1Parameters(**PHASE1)
    workers = LocalWorkers(student)
    return label_snapshots(snapshots, phase1, 1, workers, teacher, Phase1Layout(folder), False)


def _question(snapshot) -> str:
    """What the teacher is asked about a snapshot."""
    return prompt_messages(teacher_request(snapshot))[1]["content"]


def _only(snapshot) -> set[str]:
    """The text that picks out one snapshot's question for `Outage`."""
    return {f"Observation: {snapshot.observation}\n"}


# --- a teacher that is down, wrong or silent ---------------------------------------------------


@pytest.mark.parametrize(
    ("replier", "calls_per_answer", "error"),
    [
        (always(500), 1 + MAX_RETRIES, "Error code: 500"),
        (outside_the_list, 2, "'jump over the wall' is not one of the valid actions"),
    ],
    ids=["http-500", "action-outside-the-list"],
)
def test_a_teacher_that_always_fails_stops_phase_1_naming_share_errors_and_server(
    api_key, tmp_path, student, snapshots, replier, calls_per_answer, error
):
    with ChatServer(replier) as server:
        teacher = _teacher(server, tmp_path / "cache")
        with pytest.raises(TeacherOutage) as outage:
            _label(snapshots, student, teacher, tmp_path / "phase1")

    message = str(outage.value)
    assert message.startswith(
        "teacher outage in phase 1: 1 of the 4 teacher answers it needs are invalid or failed "
        "(25.0% at least, after 1 asked), above teacher.max_invalid_fraction = 0.1"
    )
    assert f"server: {server.base_url}" in message
    assert error in message
    assert len(server.hits) == calls_per_answer, "it stops at once instead of asking on"
    assert read_jsonl(tmp_path / "phase1" / "labeled_snapshots.jsonl") == []
    assert not (tmp_path / "phase1" / "teacher_health.json").exists()
    assert not list((tmp_path / "cache").glob("*.json")), "a fallback is never cached"


@pytest.mark.slow
def test_an_outage_below_the_limit_passes_then_heals_to_the_labels_of_a_healthy_server(
    api_key, tmp_path, student, snapshots
):
    down = snapshots[1]
    outage = Outage(failing=_only(down))
    folder, cache = tmp_path / "phase1", tmp_path / "cache"
    with ChatServer(outage) as server:

        def teacher() -> OpenAITeacher:
            """A fresh teacher, as each run makes one, on the same cache."""
            return _teacher(server, cache, max_invalid_fraction=0.3)

        first = _label(snapshots, student, teacher(), folder)
        health = first.teacher_health
        assert (health.answers, health.invalid, health.share) == (4, 1, 0.25)
        assert health.server == f"{server.base_url}/"
        assert health.first_errors[0].startswith("the request failed: Error code: 500")
        assert load_teacher_health(folder / "teacher_health.json") == health
        assert "1 of 4 teacher answers invalid or failed (25.0%" in health.line()
        rows = {row.id: row for row in first.rows}
        assert [rows[s.id].teacher.valid for s in snapshots] == [True, False, True, True]
        labeled = (folder / "labeled_snapshots.jsonl").read_bytes()

        # Still down: the fallback is asked again, gets the same answer, and nothing is relabeled.
        sent = len(server.hits)
        still = _label(snapshots, student, teacher(), folder)
        assert {user_prompt(hit.body) for hit in server.hits[sent:]} == {_question(down)}
        assert still.asked_again == 1 and still.newly_labeled == 0
        assert any("asked again; 0 got a different answer and a new CPT" in n for n in still.notes)
        assert (folder / "labeled_snapshots.jsonl").read_bytes() == labeled

        # Healed: only the failed question goes out again, and its row becomes valid.
        outage.down = False
        sent = len(server.hits)
        healed = _label(snapshots, student, teacher(), folder)
        assert [user_prompt(hit.body) for hit in server.hits[sent:]] == [_question(down)]
    assert healed.teacher_health.invalid == 0 and healed.asked_again == 1
    assert any("asked again; 1 got a different answer and a new CPT" in n for n in healed.notes)
    assert all(row.teacher.valid for row in healed.rows)
    before = {row.id: row for row in first.rows}
    assert all(row.leverage == before[row.id].leverage for row in healed.rows)

    with ChatServer() as healthy:
        _label(snapshots, student, _teacher(healthy, tmp_path / "cache2"), tmp_path / "healthy")
    for name in ("labeled_snapshots.jsonl", "labeled_snapshots.json"):
        assert (folder / name).read_bytes() == (tmp_path / "healthy" / name).read_bytes()


def test_a_silent_server_times_out_per_request_within_the_parameter(
    api_key, tmp_path, snapshots, capsys
):
    assert TeacherParameters().timeout_s <= 10
    with ChatServer(silent) as server:
        teacher = OpenAITeacher(
            TeacherParameters(
                backend="openai", base_url=server.base_url, timeout_s=0.5, max_retries=1
            ),
            tmp_path / "cache",
        )
        monitor = TeacherMonitor(teacher, "phase 1", 1, 1.0, progress=True)
        started = time.monotonic()
        (answer,) = teacher.advise([teacher_request(snapshots[0])], monitor=monitor)
        elapsed = time.monotonic() - started
        monitor.finish()

    assert not answer.valid and "timed out" in answer.problem
    assert len(server.hits) == 2, "one attempt and one retry"
    assert 1.0 <= elapsed < 4.0, "two attempts cut at 0.5 s and a backoff of at most 0.5 s"
    assert teacher.usage()["attempts"] == 2
    bar = capsys.readouterr().err
    assert "phase 1: teacher (openai)" in bar and "attempts=2" in bar and "invalid=1" in bar


def test_a_teacher_that_fails_for_a_while_is_asked_again_once_it_heals(
    api_key, tmp_path, snapshots
):
    request = teacher_request(snapshots[0])
    with ChatServer(FailFirst(1 + MAX_RETRIES)) as server:
        (fallback,) = _teacher(server, tmp_path / "cache").advise([request])
        (healed,) = _teacher(server, tmp_path / "cache").advise([request])
        (cached,) = _teacher(server, tmp_path / "cache").advise([request])
    assert not fallback.valid and healed.valid and cached.valid and cached.cached
    assert len(server.hits) == 1 + MAX_RETRIES + 1
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1


def test_experiment_b_names_who_played_and_counts_the_steps_that_fell_back(
    api_key, tmp_path, student
):
    def params(name: str, base_url: str, fraction: float) -> Parameters:
        return Parameters.model_validate(
            {
                "run": {"name": name, "output_root": str(tmp_path / "runs")},
                "env": {"levels": ["GoToLocal"]},
                "teacher": {
                    "backend": "openai",
                    "base_url": base_url,
                    "max_retries": MAX_RETRIES,
                    "max_invalid_fraction": fraction,
                },
                "phase0": {"expert": {"n_tasks": 2, "max_steps": 5, "sample_rate": 0.5}},
            }
        )

    with ChatServer(FailFirst(1 + MAX_RETRIES)) as server:
        given = params("flaky", server.base_url, 0.2)
        out = given.layout.phase0
        player = TeacherPlayer(make_teacher(given), 0.2)
        trajectories, _ = collect_expert_snapshots(
            student, given.phase0.expert, given.env.levels, 0, out, player, progress=False
        )
    assert [(t.player, t.fallback_steps, len(t.actions)) for t in trajectories] == [
        ("gpt-4o-mini", 1, 5),
        ("gpt-4o-mini", 0, 5),
    ]
    files = sorted(path.name for path in out.expert_trajectories.iterdir())
    assert files == ["all_trajectories_gpt-4o-mini.json"]
    stored = read_json(out.expert_trajectories / files[0])
    assert [(row["player"], row["fallback_steps"]) for row in stored] == [
        ("gpt-4o-mini", 1),
        ("gpt-4o-mini", 0),
    ]
    health = load_teacher_health(out.teacher_health)
    assert (health.what, health.answers, health.invalid) == ("phase 0 experiment B", 10, 1)

    with ChatServer(always(500)) as server:
        given = params("down", server.base_url, 0.1)
        out = given.layout.phase0
        with pytest.raises(TeacherOutage, match="teacher outage in phase 0 experiment B: 2 of"):
            collect_expert_snapshots(
                student,
                given.phase0.expert,
                given.env.levels,
                0,
                out,
                TeacherPlayer(make_teacher(given), 0.1),
                progress=False,
            )
    assert len(server.hits) == 2 * (1 + MAX_RETRIES)
    assert not out.folder.exists(), "nothing is written when the teacher is down"


# --- the same through `python -m teachable run` ------------------------------------------------


def _phase1_run(tmp_path: Path, student, snapshots, base_url: str) -> tuple[Path, RunLayout]:
    """A parameter file asking the local server, and a run folder holding what Phase 0 hands
    Phase 1: the (tiny) student and the four snapshots as failure snapshots, all of them in the
    labeled part of the split."""
    settings = {
        "run": {"seed": 1, "output_root": "runs"},
        "student": {"model": "tiny", "batch_size": 16},
        "env": {"levels": ["GoToLocal"]},
        "teacher": {
            "backend": "openai",
            "base_url": base_url,
            "max_retries": MAX_RETRIES,
            "timeout_s": 5,
            "max_invalid_fraction": 0.3,
        },
        "phase1": {**PHASE1, "split": {"test_share": 0.0, "pool_share": 0.0}},
    }
    params = tmp_path / "outage.yaml"
    params.write_text(yaml.safe_dump(settings))
    run = RunLayout(tmp_path / "runs" / "outage")
    save_preparation(run.phase0, student.params, {"skipped": "the tiny student as is"})
    save_snapshots(run.phase0.failure_snapshots, snapshots)
    return params, run


@pytest.mark.slow
def test_the_run_command_fails_on_an_outage_prints_the_share_and_heals_with_force(
    api_key, tmp_path, student, snapshots, capsys
):
    outage = Outage(failing=None)
    with ChatServer(outage) as server:
        params, run = _phase1_run(tmp_path, student, snapshots, server.base_url)
        command = ["run", str(params), "--phases", "1"]

        assert main(command) == 1
        err = capsys.readouterr().err
        assert "TeacherOutage: teacher outage in phase 1: 2 of the 4 teacher answers" in err
        assert "(50.0% at least, after 2 asked)" in err
        assert f"server: {server.base_url}" in err and "Error code: 500" in err

        outage.failing = _only(snapshots[2])
        assert main(command) == 0
        out = capsys.readouterr().out
        assert (
            "teacher: phase 1: 1 of 4 teacher answers invalid or failed (25.0%; "
            f"teacher.max_invalid_fraction 0.3) from openai gpt-4o-mini at {server.base_url}/"
        ) in out
        [recorded] = read_json(run.provenance)["phases"][0]["teacher"]
        assert recorded.startswith("phase 1: 1 of 4 teacher answers invalid or failed (25.0%")

        outage.down = False
        sent = len(server.hits)
        assert main([*command, "--force"]) == 0
        assert [user_prompt(hit.body) for hit in server.hits[sent:]] == [_question(snapshots[2])]
    assert "teacher: phase 1: 0 of 4 teacher answers invalid or failed" in capsys.readouterr().out
    rows = [LabeledSnapshot.model_validate(row) for row in read_jsonl(run.phase1.labeled_jsonl)]
    assert len(rows) == 4 and all(row.teacher.valid for row in rows)


# --- one run per run folder --------------------------------------------------------------------


def _runner_parameters(folder: Path) -> Path:
    path = folder / "trial.yaml"
    settings = {"run": {"seed": 7, "output_root": "runs"}, "student": {"model": "tiny"}}
    path.write_text(yaml.safe_dump({**settings, "phase0": {"n_tasks": 3}}))
    return path


def _waiting_notebooks(folder: Path, release: Path) -> Path:
    """The runner's phase 0 stand-in with a cell that waits (two minutes at most) for
    `release` before it writes anything."""
    notebook = nbformat.read(RUNNER_FIXTURES / "passing" / "00_rollouts.ipynb", as_version=4)
    wait = (
        "import time\nfrom pathlib import Path\n\nfor _ in range(1200):\n"
        f"    if Path({str(release)!r}).exists():\n        break\n    time.sleep(0.1)"
    )
    notebook.cells.insert(2, nbformat.v4.new_code_cell(wait))
    target = folder / "waiting"
    target.mkdir()
    nbformat.write(notebook, target / "00_rollouts.ipynb")
    return target


def _holder(lock: Path, pid: int, timeout: float = 120) -> dict:
    """The holder `lock` names once process `pid` has taken it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = lock.read_text() if lock.is_file() else ""
        if text.strip() and json.loads(text)["pid"] == pid:
            return json.loads(text)
        time.sleep(0.2)
    raise AssertionError(f"process {pid} never took {lock}")


@pytest.mark.slow
def test_a_second_run_stops_naming_the_holder_and_a_killed_runs_lock_is_taken_over(
    tmp_path, capsys
):
    params = _runner_parameters(tmp_path)
    waiting = _waiting_notebooks(tmp_path, tmp_path / "release")
    run_dir = tmp_path / "runs" / "trial"
    lock = RunLayout(run_dir).lock
    first = subprocess.Popen(
        [sys.executable, "-m", "teachable", "run", str(params), "--notebooks-dir", str(waiting)]
        + ["--phases", "0"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        holder = _holder(lock, first.pid)
        assert holder["host"] == socket.gethostname() and "run" in holder["command"]
        started = time.monotonic()
        second = ["run", str(params), "--phases", "0", "--notebooks-dir"]
        assert main([*second, str(RUNNER_FIXTURES / "passing")]) == 2
        assert time.monotonic() - started < 30, "the second run stops at once"
        err = capsys.readouterr().err
        assert f"{run_dir} is in use by another run: pid {first.pid} on {holder['host']}" in err
        assert not (run_dir / "phase0" / "received.json").exists()
        assert first.poll() is None, "the first run goes on"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    assert json.loads(lock.read_text())["pid"] == first.pid, "the killed run left its name"
    notebooks = Path(shutil.copytree(RUNNER_FIXTURES / "passing", tmp_path / "passing"))
    assert main(["run", str(params), "--phases", "0", "--notebooks-dir", str(notebooks)]) == 0
    err = capsys.readouterr().err
    assert f"{lock} was left by pid {first.pid} on {holder['host']}" in err
    assert "which is no longer running (killed?); this run takes it over" in err
    assert lock.read_text() == "", "a finished run leaves the lock free"
    assert read_json(run_dir / "provenance.json")["status"] == "finished"


# --- every bad file named, before work ---------------------------------------------------------


def _tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_a_snapshot_file_cut_short_is_named_with_its_line_and_nothing_is_created(
    tmp_path, student, snapshots, capsys
):
    settings = {"run": {"seed": 1, "output_root": "runs"}, "student": {"model": "tiny"}}
    params = tmp_path / "cut.yaml"
    params.write_text(yaml.safe_dump({**settings, "phase1": PHASE1}))
    run = RunLayout(tmp_path / "runs" / "cut")
    save_preparation(run.phase0, student.params, {"skipped": "the tiny student as is"})
    save_snapshots(run.phase0.failure_snapshots, snapshots)
    cut = run.phase0.failure_snapshots
    cut.write_text(cut.read_text()[: len(cut.read_text()) // 2])
    before = _tree(tmp_path)

    assert main(["run", str(params), "--phases", "1"]) == 2
    err = capsys.readouterr().err
    assert f"phase 1 cannot start: {cut} is not valid JSON (line " in err
    assert "phase 0 writes it anew" in err
    assert main(["label", "all", "--params", str(params), "--input", str(cut)]) == 2
    assert f"{cut} is not valid JSON (line " in capsys.readouterr().err
    assert _tree(tmp_path) == before


def test_a_student_folder_that_holds_no_model_is_refused_before_anything_is_created(
    tmp_path, capsys
):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("weights will go here\n")
    params = tmp_path / "student.yaml"

    def refused(expected: str) -> None:
        settings = {"run": {"output_root": "runs"}, "student": {"model_path": str(folder)}}
        params.write_text(yaml.safe_dump(settings))
        started = time.monotonic()
        assert main(["run", str(params)]) == 2
        assert time.monotonic() - started < 60
        err = capsys.readouterr().err
        assert f"{params}: student.model_path: " in err and expected in err
        assert not (tmp_path / "runs").exists()

    refused(f"{folder} is not a model folder: it holds no config.json")
    (folder / "config.json").write_text('{"model_type": "llama", "hidden_size": 64')
    refused(f"{folder / 'config.json'} is not valid JSON (line 1, column")
    (folder / "config.json").write_text('{"model_type": "llama"}')
    refused(f"{folder} holds no weights (any of model.safetensors")
    (folder / "model.safetensors").write_bytes(b"")
    refused(f"{folder} holds no tokenizer")


def test_label_steps_refuse_rows_without_a_field_they_need_naming_row_and_field(
    tmp_path, student, snapshots, capsys
):
    settings = {"run": {"seed": 1, "output_root": str(tmp_path / "runs")}}
    params = tmp_path / "labels.yaml"
    params.write_text(yaml.safe_dump({**settings, "student": {"model": "tiny"}}))
    save_preparation(
        RunLayout(tmp_path / "runs" / "labels").phase0, student.params, {"skipped": "as is"}
    )
    lever = Leverage(L_local=0.5, p_student=0.0, p_forced=0.5, n=2)
    rows = [
        LabeledSnapshot.of(snapshot).model_copy(update={"U": 0.5, "leverage": lever})
        for snapshot in snapshots
    ]
    rows[2] = rows[2].model_copy(update={"U": None})
    given = tmp_path / "rows.jsonl"
    given.write_text("".join(json.dumps(row.model_dump(mode="json")) + "\n" for row in rows))
    out = tmp_path / "out"

    def label(step: str) -> str:
        args = ["--params", str(params), "--input", str(given), "--output-dir", str(out)]
        assert main(["label", step, *args]) == 2
        return capsys.readouterr().err

    for step in ("quadrants", "plots"):
        assert (
            f"{given}: row {rows[2].id} lacks the field U, which `label {step}` needs (1 of 4 "
            "rows lack a needed field); run `label uncertainty` first"
        ) in label(step)
    distribution = dict(rows[0].student_distribution)
    del distribution["toggle"]
    rows[0] = rows[0].model_copy(update={"student_distribution": distribution})
    given.write_text("".join(json.dumps(row.model_dump(mode="json")) + "\n" for row in rows))
    assert (
        f"row {rows[0].id} lacks the field student_distribution.toggle, which `label "
        "uncertainty` needs"
    ) in label("uncertainty")
    assert f"row {rows[0].id} lacks the field teacher, which `label cpt` needs" in label("cpt")
    assert not out.exists()
