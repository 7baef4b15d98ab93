"""Evaluation: the base student and the trained runs of a training folder playing the same items
(held-out tasks, test snapshots, retention tasks) on shared random streams, each model one unit
of the workers, its episodes logged as it ends and tabulated into the evaluation record. Phase 3
evaluates the matrix this way, Phase 5 each selection method.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from teachable.measure.gains import (
    modes_of,
    overall_table,
    per_quadrant_table,
    quadrant_comparison,
    retention_table,
)
from teachable.measure.stuckness import has_loop, steps_without_progress, stuckness_table
from teachable.measure.transfer import transfer_matrix, transfer_summary
from teachable.models.conditions import stable_int
from teachable.models.rollouts import Episode, EpisodeSpec, run_episodes
from teachable.models.student import Student
from teachable.models.workers import Workers, WorkUnit, pack_folder, unpack_folder
from teachable.parameters import EvaluationParameters, Phase3Parameters, StudentParameters
from teachable.records.env_state import EnvState
from teachable.records.evaluation import (
    EPISODE_COLUMNS,
    MODES,
    SUITES,
    Evaluation,
    PlayMode,
    save_evaluation,
    unit_table,
    units,
)
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import EvaluationLayout, TrainingLayout
from teachable.records.snapshot import level_of
from teachable.records.store import append_jsonl, read_jsonl, write_jsonl
from teachable.records.training_summary import BASE, RunEntry, TrainingSummary
from teachable.vocabulary import QUADRANTS, Quadrant
from teachable.world.agent_state import agent_trace
from teachable.world.splits import Split
from teachable.world.tasks import purpose_of, task_suite


def adapter_folders(summary: TrainingSummary, trained: TrainingLayout) -> dict[str, Path]:
    """Each trained run's adapter folder, checked before any work: a missing one is an error
    naming the run and the path."""
    path = trained.training_summary
    folders = {}
    for run in summary.runs:
        if run.status == "skipped":
            continue
        if run.adapter is None:
            raise ValueError(f"{path}: run {run.id} was trained but names no adapter")
        folder = trained.adapter(run.adapter)
        if not folder.is_dir():
            raise FileNotFoundError(f"{path}: run {run.id}: adapter folder {folder} does not exist")
        if not (folder / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"{path}: run {run.id}: adapter folder {folder} holds no adapter_config.json"
            )
        folders[run.id] = folder
    return folders


@dataclass(frozen=True)
class EvaluationItem:
    """One episode start: a task of a suite, or a test snapshot of a quadrant."""

    suite: str
    start: EnvState
    quadrant: Quadrant | None = None
    snapshot_id: str | None = None

    @property
    def key(self) -> str:
        return self.snapshot_id or f"{self.start.env_id}:{self.start.seed}"


def check_unseen(tasks: Sequence[EnvState], purpose: str, split: Split) -> None:
    """Every task must come from `purpose` and be no task of the run's split (the warm-up's
    tasks have purposes of their own)."""
    part_of = split.part_of
    for task in tasks:
        if purpose_of(task) != purpose:
            raise ValueError(f"task {task.task} was drawn for {purpose_of(task)}, not {purpose}")
        if task.task in part_of:
            raise ValueError(
                f"{purpose} task {task.task} is also a task of the split's {part_of[task.task]} "
                "part"
            )


def snapshot_items(
    split: Split, test: Sequence[LabeledSnapshot], per_quadrant: int
) -> list[EvaluationItem]:
    """The first `per_quadrant` test snapshots of each quadrant, in their order; a snapshot
    of a task outside the split's test part is an error."""
    split.check_within("test", test, "phase 3's test snapshots")
    items = []
    for quadrant in QUADRANTS:
        rows = [row for row in test if row.quadrant == quadrant][:per_quadrant]
        items += [EvaluationItem("snapshots", row.state, quadrant, row.id) for row in rows]
    return items


def retention_tasks(phase3: Phase3Parameters, levels: Sequence[str], seed: int) -> list[EnvState]:
    """The fixed retention set: retention-purpose tasks on the training levels, and as many on
    `retention_levels`."""
    n = phase3.retention_tasks
    tasks = task_suite("retention", n, levels, seed).tasks
    if phase3.retention_levels and n:
        tasks += task_suite("retention", n, phase3.retention_levels, seed).tasks
    return list(dict.fromkeys(tasks))


def evaluation_items(
    phase3: Phase3Parameters,
    levels: Sequence[str],
    seed: int,
    split: Split,
    test: Sequence[LabeledSnapshot],
) -> list[EvaluationItem]:
    """Everything every model plays: held-out tasks, test snapshots, retention tasks."""
    heldout = task_suite("heldout", phase3.n_tasks, levels, seed).tasks
    retention = retention_tasks(phase3, levels, seed)
    check_unseen(heldout, "heldout", split)
    check_unseen(retention, "retention", split)
    return [
        *(EvaluationItem("tasks", task) for task in heldout),
        *snapshot_items(split, test, phase3.n_snapshots_per_quadrant),
        *(EvaluationItem("retention", task) for task in retention),
    ]


def episode_seed(run_seed: int, key: str, episode: int) -> tuple[int, int, int]:
    """The random stream of episode `episode` of an item: the same for every model."""
    return (run_seed, stable_int(key), episode)


def episode_record(item: EvaluationItem, index: int, mode: PlayMode, episode: Episode) -> dict:
    """One episode's row in `model_episodes.jsonl`: where it started, which episode of the item
    in which play mode, how it went."""
    states, ended = agent_trace(item.start, episode.actions)
    return {
        "suite": item.suite,
        "key": item.key,
        "episode": index,
        "mode": mode,
        "env_id": item.start.env_id,
        "level": level_of(item.start.env_id),
        "seed": item.start.seed,
        "quadrant": item.quadrant,
        "success": episode.success,
        "steps": len(episode.steps),
        "loop": has_loop(states),
        "steps_without_progress": steps_without_progress(states),
        "timeout": not ended,
        "actions": episode.actions,
    }


def folder_digest(folder: Path) -> str:
    """Hash of every file in an adapter folder: a retrained adapter is a new model."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Play:
    """How every model plays the items: the step budget, the evaluation settings, and the run
    seed the episodes' streams are drawn from."""

    max_steps: int
    evaluation: EvaluationParameters
    seed: int

    @property
    def modes(self) -> tuple[PlayMode, ...]:
        return MODES if self.evaluation.greedy else MODES[:1]

    def key(
        self, student: StudentParameters, adapter: Path | None, items: Sequence[EvaluationItem]
    ) -> str:
        """Everything that shapes a model's episodes: weights, prompts, play and starts."""
        shaping = {
            "student": student.model_dump(mode="json", exclude={"batch_size"}),
            "adapter": None if adapter is None else folder_digest(adapter),
            "max_steps": self.max_steps,
            "seed": self.seed,
            "evaluation": self.evaluation.model_dump(mode="json", exclude={"bootstrap_resamples"}),
            "items": [[item.suite, item.key, item.start.model_dump(mode="json")] for item in items],
        }
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def play_mode(
    play: Play, mode: PlayMode, student: Student, items: Sequence[EvaluationItem], progress: bool
) -> list[dict]:
    """Every item's episodes of one mode in one batched `run_episodes` call: sampled ones at
    the evaluation temperature on the items' shared streams, a greedy one at temperature 0."""
    if mode == "sampled":
        temperature, count = play.evaluation.temperature, play.evaluation.episodes_per_item
    else:
        temperature, count = 0.0, 1
    starts = [(item, index) for item in items for index in range(count)]
    episodes = run_episodes(
        student,
        [EpisodeSpec(item.start, episode_seed(play.seed, item.key, i)) for item, i in starts],
        play.max_steps,
        temperature=temperature,
        history=student.params.history,
        progress=progress,
    )
    return [
        episode_record(item, index, mode, episode)
        for (item, index), episode in zip(starts, episodes, strict=True)
    ]


@dataclass(frozen=True)
class ModelPlay:
    """A unit of an evaluation: one model, the base student or the base with an adapter (its
    files, so a worker needs no shared file system), playing every item."""

    play: Play
    items: tuple[EvaluationItem, ...]
    adapter: dict[str, bytes] | None


def play_model(student: Student, unit: ModelPlay) -> tuple[list[dict], float]:
    """The work of an evaluation unit: the model's episodes in every mode, and their seconds."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        if unit.adapter is not None:
            unpack_folder(unit.adapter, Path(folder))
            student = student.with_adapter(folder)
        episodes = [
            record
            for mode in unit.play.modes
            for record in play_mode(unit.play, mode, student, unit.items, progress=False)
        ]
    return episodes, round(time.perf_counter() - started, 1)


def adapter_files(folder: Path | None) -> dict[str, bytes] | None:
    """An adapter folder's files, to travel with its unit (None for the base student)."""
    return None if folder is None else pack_folder(folder)


def models_episodes(
    play: Play,
    models: Mapping[str, Path | None],
    items: Sequence[EvaluationItem],
    workers: Workers,
    log: Path,
    progress: bool,
) -> tuple[list[dict], list[str]]:
    """Each model's episodes (`models` maps a name to its adapter folder, None for the base):
    from the log when its key matches, else played as a unit and logged as it ends. Returns
    the rows in the order of `models`, and the names played now."""
    keys = {name: play.key(workers.params, adapter, items) for name, adapter in models.items()}
    logged = {(row["model"], row["key"]): row for row in read_jsonl(log)}
    rows = {name: logged[(name, key)] for name, key in keys.items() if (name, key) in logged}
    to_play = [name for name in models if name not in rows]
    units = (
        WorkUnit(name, ModelPlay(play, tuple(items), adapter_files(models[name])))
        for name in to_play
    )
    for unit, (episodes, seconds) in workers.map(
        play_model, units, "models", len(to_play), progress
    ):
        row = {"model": unit.id, "key": keys[unit.id], "episodes": episodes, "seconds": seconds}
        append_jsonl(log, row)
        rows[unit.id] = row
    return [rows[name] for name in models], to_play


def tabulate(
    levels: Sequence[str],
    runs: Sequence[RunEntry],
    rows: Sequence[dict],
) -> Evaluation:
    """The tables from each model's logged episodes."""
    measured = units(runs)
    episodes = pd.DataFrame(
        [{"model": row["model"], **episode} for row in rows for episode in row["episodes"]],
        columns=EPISODE_COLUMNS,
    )
    base = episodes[(episodes["model"] == BASE) & (episodes["mode"] == "sampled")]
    counts = base.groupby("suite")["key"].nunique()
    comparison = quadrant_comparison(episodes, measured)
    return Evaluation(
        units=unit_table(runs),
        episodes=episodes,
        overall=overall_table(episodes, measured),
        per_quadrant=per_quadrant_table(episodes, measured),
        transfer=transfer_matrix(episodes, measured),
        transfer_summary=transfer_summary(episodes, measured),
        retention=retention_table(episodes, measured, levels),
        stuckness=stuckness_table(episodes),
        record={
            "n_items": {suite: int(counts.get(suite, 0)) for suite in SUITES},
            "episodes_per_item": int(base["episode"].max()) + 1 if len(base) else 0,
            "modes": modes_of(episodes),
            "evaluated": [row["model"] for row in rows],
            "skipped": [
                {"id": run.id, "reason": run.reason} for run in runs if run.status == "skipped"
            ],
            "seconds_per_model": {row["model"]: row.get("seconds") for row in rows},
            "quadrant_comparison": comparison.model_dump(mode="json"),
        },
    )


def evaluate_runs(
    trained: TrainingLayout,
    test: Sequence[LabeledSnapshot],
    phase3: Phase3Parameters,
    evaluation: EvaluationParameters,
    levels: Sequence[str],
    seed: int,
    workers: Workers,
    out: EvaluationLayout,
    progress: bool = True,
) -> Evaluation:
    """Evaluate the workers' base student and every trained run of a training folder's summary
    (skipped runs are listed as such) on the held-out tasks of the training `levels`, the `test`
    snapshots (with their quadrants; all from the test part of the split the summary names), and
    the retention tasks, as `evaluation` says; write the evaluation's tables and records into
    `out`. The verdicts are left to the caller."""
    started = time.perf_counter()
    summary = TrainingSummary.load(trained.training_summary)
    adapters = adapter_folders(summary, trained)
    split = Split.load(trained.folder / summary.split)
    items = evaluation_items(phase3, levels, seed, split, test)
    play = Play(phase3.max_steps, evaluation, seed)

    models = {BASE: None, **adapters}
    log = out.episodes
    rows, played = models_episodes(play, models, items, workers, log, progress)
    write_jsonl(log, rows)  # rows of earlier parameters or runs are dropped

    result = tabulate(levels, summary.runs, rows)
    result.record.update(
        training_summary=str(trained.training_summary),
        temperature=evaluation.temperature,
        evaluated_now=played,
        seconds=round(time.perf_counter() - started, 1),
    )
    save_evaluation(result, out)
    return result
