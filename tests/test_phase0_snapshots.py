"""Phase 0 snapshots: mining, sampling, replay and validation of snapshot files."""

import json
from pathlib import Path

import pytest

from teachable.models.rollouts import Episode, EpisodeSpec, Step
from teachable.models.student import Student
from teachable.parameters import Parameters
from teachable.phases.phase0_snapshots import (
    ExpertTrajectory,
    collect_expert_snapshots,
    collect_student_failures,
    mine_failures,
    sample_expert_states,
)
from teachable.records.env_state import EnvState
from teachable.records.snapshot import SnapshotError
from teachable.vocabulary import ACTIONS
from teachable.world.replay import load_replayed_snapshots
from teachable.world.tasks import PURPOSES, purpose_of, task_suite
from teachable.world.text_world import TextWorld

UNIFORM = [1 / len(ACTIONS)] * len(ACTIONS)


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> Parameters:
    root = tmp_path_factory.mktemp("runs")
    return Parameters.model_validate(
        {
            "run": {"name": "phase0-test", "output_root": str(root), "seed": 3},
            "student": {"model": "tiny"},
            "env": {"levels": ["GoToLocal", "PickupLoc"]},
            "phase0": {
                "n_tasks": 8,
                "max_steps": 10,
                "max_snapshots": 6,
                "expert": {"n_tasks": 4, "sample_rate": 0.5},
            },
        }
    )


@pytest.fixture(scope="module")
def experiment_a(student: Student, params: Parameters):
    return collect_student_failures(
        student,
        params.phase0,
        params.env.levels,
        params.run.seed,
        params.layout.phase0,
        progress=False,
    )


def _episode(task: EnvState, actions: list[str], observations: list[str], success: bool):
    steps = [
        Step(observation=o, distribution=UNIFORM, entropy=1.0, action=a, expert_action="go forward")
        for a, o in zip(actions, observations, strict=True)
    ]
    return Episode(EpisodeSpec(task), mission="go to the red ball", steps=steps, success=success)


def test_failure_snapshots_replay_and_come_from_failures(experiment_a, params) -> None:
    episodes, snapshots = experiment_a
    assert len(episodes) == params.phase0.n_tasks
    assert 0 < len(snapshots) <= params.phase0.max_snapshots
    failed_tasks = {e.spec.start.task for e in episodes if not e.success}
    for snapshot in snapshots:
        assert snapshot.task in failed_tasks
        assert snapshot.student_action != snapshot.expert_action
        assert not snapshot.episode_success
        assert TextWorld.restore(snapshot.state).observation == snapshot.observation
        assert sum(snapshot.student_distribution.values()) == pytest.approx(1, abs=1e-4)
    path = params.run_dir / "phase0" / "failure_snapshots.json"
    assert [s.id for s in load_replayed_snapshots(path)] == [s.id for s in snapshots]


def test_rollouts_file_records_every_step(experiment_a, params) -> None:
    episodes, _ = experiment_a
    rows = json.loads((params.run_dir / "phase0" / "rollouts.json").read_text())
    assert len(rows) == len(episodes)
    for row, episode in zip(rows, episodes, strict=True):
        assert row["steps"] == len(row["trace"]) == len(row["actions"])
        assert row["success"] == episode.success
        world = TextWorld.restore(EnvState(row["task"]["env_id"], row["task"]["seed"]))
        for step in row["trace"]:
            assert step["observation"] == world.observation
            assert step["expert_action"] in (*ACTIONS, None)
            assert set(step["distribution"]) == set(ACTIONS)
            if not world.done:
                world.step(step["action"])
        assert world.success == row["success"]


def test_mining_deduplicates_and_caps() -> None:
    task = EnvState("BabyAI-GoToLocal-v0", 11)
    looping = _episode(task, ["turn left"] * 8, ["A", "B", "C", "D"] * 2, success=False)
    solved = _episode(EnvState("BabyAI-GoToLocal-v0", 12), ["turn left"], ["A"], success=True)
    mined = mine_failures([looping, solved], max_snapshots=100, seed=0)
    assert [s.observation for s in mined] == ["A", "B", "C", "D"]
    assert len({s.id for s in mined}) == 4
    assert all(s.task == task.task for s in mined)
    capped = mine_failures([looping], max_snapshots=3, seed=0)
    assert len(capped) == 3
    assert {s.id for s in capped} < {s.id for s in mined}


def test_mining_skips_steps_where_student_agrees_with_expert() -> None:
    task = EnvState("BabyAI-GoToLocal-v0", 5)
    episode = _episode(task, ["go forward", "turn left"], ["A", "B"], success=False)
    assert [s.observation for s in mine_failures([episode], 10, 0)] == ["B"]


def test_expert_sample_rate_is_respected() -> None:
    trajectories = [
        ExpertTrajectory(EnvState("BabyAI-GoToLocal-v0", seed), ("go forward",) * 20, True)
        for seed in range(100)
    ]
    for rate in (0.2, 0.5):
        picked = sample_expert_states(trajectories, rate, seed=0)
        assert abs(len(picked) / 2000 - rate) < 0.03
        assert all(action == "go forward" for _, action, _ in picked)


def test_experiment_b_writes_replayable_expert_snapshots(student, params) -> None:
    out = params.layout.phase0
    out_dir = out.folder
    trajectories, snapshots = collect_expert_snapshots(
        student, params.phase0.expert, params.env.levels, params.run.seed, out
    )
    assert len(trajectories) == params.phase0.expert.n_tasks
    assert all(t.success for t in trajectories)
    assert (out_dir / "expert_trajectories" / "all_trajectories_bot.json").is_file()
    loaded = load_replayed_snapshots(out_dir / "snapshots_expert.json")
    assert [s.id for s in loaded] == [s.id for s in snapshots]
    for snapshot in loaded:
        assert snapshot.source == "expert"
        world = TextWorld.restore(snapshot.state)
        assert world.expert_action() == snapshot.expert_action


def _write_rows(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "snapshots.json"
    path.write_text(json.dumps(rows))
    return path


def test_missing_field_is_rejected_with_id_and_field(experiment_a, tmp_path) -> None:
    row = experiment_a[1][0].model_dump(mode="json")
    del row["expert_action"]
    with pytest.raises(SnapshotError) as error:
        load_replayed_snapshots(_write_rows(tmp_path, [row]))
    assert row["id"] in str(error.value)
    assert "expert_action" in str(error.value)


def test_non_replaying_state_is_rejected_with_id(experiment_a, tmp_path) -> None:
    row = experiment_a[1][0].model_dump(mode="json")
    row["env_state"]["seed"] += 1
    with pytest.raises(SnapshotError) as error:
        load_replayed_snapshots(_write_rows(tmp_path, [row]))
    assert row["id"] in str(error.value)
    assert "env_state" in str(error.value)


def test_task_purposes_never_share_a_task(params) -> None:
    suites = {
        purpose: task_suite(purpose, 6, params.env.levels, params.run.seed).tasks
        for purpose in PURPOSES[:4]
    }
    for purpose, tasks in suites.items():
        assert all(purpose_of(task) == purpose for task in tasks)
    all_tasks = [task.task for tasks in suites.values() for task in tasks]
    assert len(all_tasks) == len(set(all_tasks))
