"""Phase 3 evaluation: the base student and every trained run, greedy, on what no run trained on.

Each model plays, at temperature 0 and for at most `phase3.max_steps` steps:

- `tasks`: `n_tasks` held-out tasks (their own purpose in `world.tasks`, so no warm-up, rollout or
  expert task can be among them; checked again against the Phase 2 split and the labeled
  snapshots before any episode runs);
- `snapshots`: up to `n_snapshots_per_quadrant` test snapshots of each quadrant (the test side
  of the Phase 2 split), each episode starting at the snapshot's env state;
- `retention`: tasks the base student solves, drawn from the retention purpose on the training
  levels and on `retention_levels` (levels outside training). The base plays every candidate;
  the tasks it solves form the retention set the trained runs replay.

All of a model's episodes go through one `run_episodes` call, so the scorer sees one large batch
per step; trained runs are LoRA adapters loaded over the one shared base. Each model's episodes
are appended to `model_episodes.jsonl` as soon as it finishes, keyed by everything that shapes
them, so a rerun evaluates only the models not done yet.

Stuckness is read from the agent states an episode passes through. An agent state is the
agent's position, direction, what it carries and the cell it faces (so that opening a door
counts as a change). An episode *loops* when one agent state occurs `LOOP_VISITS` (3) or more
times, the start included. A step *makes progress* when it leads to an agent state not seen
before in the episode; the steps that do not are the episode's steps without progress. An
episode *times out* when the step budget runs out before the level ends.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from tqdm.auto import tqdm

from teachable.models.rollouts import Episode, EpisodeSpec, run_episodes
from teachable.models.student import Student
from teachable.parameters import Phase3Parameters
from teachable.records.env_state import EnvState
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import EvaluationLayout, TrainingLayout
from teachable.records.quadrants import QUADRANTS, Quadrant
from teachable.records.snapshot import level_of
from teachable.records.store import append_jsonl, read_jsonl, write_json, write_jsonl
from teachable.records.training_summary import (
    BASE,
    RunEntry,
    TrainingSummary,
)
from teachable.world.splits import TaskSplit, load_split
from teachable.world.tasks import purpose_of, task_suite
from teachable.world.text_world import TextWorld

LOOP_VISITS = 3


RETENTION_DROP_LIMIT = 0.10


SUITES = ("tasks", "snapshots", "retention")


SUMMARY_COLUMNS = [
    "format",
    "diagonal_gain",
    "off_diagonal_gain",
    "difference",
    "diagonal_ahead",
    "n_diagonal",
    "n_off_diagonal",
]


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


def model_table(runs: Sequence[RunEntry]) -> pd.DataFrame:
    """One row per model, the base first: what it was trained on (a quadrant, or `all` and
    `random` for the baselines) and whether it is evaluated."""
    rows = [{"model": BASE, "quadrant": None, "format": None, "n_train": 0, "status": "base"}]
    rows += [
        {
            "model": run.id,
            "quadrant": run.quadrant,
            "format": run.format,
            "n_train": run.n_train,
            "status": "skipped" if run.status == "skipped" else "evaluated",
        }
        for run in runs
    ]
    return pd.DataFrame(rows)


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


def check_unseen(
    tasks: Sequence[EnvState], purpose: str, split: TaskSplit, labeled: Sequence[LabeledSnapshot]
) -> None:
    """Every task must come from `purpose` and be no task of the split or the labeled snapshots
    (the warm-up's tasks have purposes of their own)."""
    seen = {task: "the Phase 2 split" for task in split.train_tasks + split.test_tasks}
    seen.update({row.task: "the labeled snapshots" for row in labeled if row.task not in seen})
    for task in tasks:
        if purpose_of(task) != purpose:
            raise ValueError(f"task {task.task} was drawn for {purpose_of(task)}, not {purpose}")
        if task.task in seen:
            raise ValueError(f"{purpose} task {task.task} is also a task of {seen[task.task]}")


def snapshot_items(split: TaskSplit, per_quadrant: int) -> list[EvaluationItem]:
    """The first `per_quadrant` test snapshots of each quadrant, in the split's order; a test
    snapshot whose task was trained on is an error."""
    trained = set(split.train_tasks)
    leaked = [row.id for row in split.test if row.task in trained]
    if leaked:
        raise ValueError(f"test snapshot(s) {leaked} belong to tasks of the training side")
    items = []
    for quadrant in QUADRANTS:
        rows = [row for row in split.test if row.quadrant == quadrant][:per_quadrant]
        items += [EvaluationItem("snapshots", row.state, quadrant, row.id) for row in rows]
    return items


def retention_candidates(
    phase3: Phase3Parameters, levels: Sequence[str], seed: int
) -> list[EnvState]:
    """Retention-purpose tasks on the training levels, and as many on `retention_levels`."""
    n = phase3.retention_tasks
    tasks = task_suite("retention", n, levels, seed).tasks
    if phase3.retention_levels and n:
        tasks += task_suite("retention", n, phase3.retention_levels, seed).tasks
    return list(dict.fromkeys(tasks))


def evaluation_items(
    phase3: Phase3Parameters,
    levels: Sequence[str],
    seed: int,
    split: TaskSplit,
    labeled: Sequence[LabeledSnapshot],
) -> list[EvaluationItem]:
    """Everything the base plays: held-out tasks, test snapshots, retention candidates."""
    heldout = task_suite("heldout", phase3.n_tasks, levels, seed).tasks
    retention = retention_candidates(phase3, levels, seed)
    check_unseen(heldout, "heldout", split, labeled)
    check_unseen(retention, "retention", split, labeled)
    return [
        *(EvaluationItem("tasks", task) for task in heldout),
        *snapshot_items(split, phase3.n_snapshots_per_quadrant),
        *(EvaluationItem("retention", task) for task in retention),
    ]


@dataclass(frozen=True)
class AgentState:
    """Where the agent is, where it faces, what it carries and the cell in front of it
    (minigrid's (type, color, state) encodings; None for nothing)."""

    position: tuple[int, int]
    direction: int
    carrying: tuple[int, int, int] | None
    ahead: tuple[int, int, int] | None


def agent_state(world: TextWorld) -> AgentState:
    """The world's agent state now."""
    env = world.env.unwrapped
    front = env.grid.get(*env.front_pos)
    return AgentState(
        position=(int(env.agent_pos[0]), int(env.agent_pos[1])),
        direction=int(env.agent_dir),
        carrying=None if env.carrying is None else tuple(env.carrying.encode()),
        ahead=None if front is None else tuple(front.encode()),
    )


def agent_trace(start: EnvState, actions: Sequence[str]) -> tuple[list[AgentState], bool]:
    """The agent states of an episode, the start included, and whether the level ended."""
    world = TextWorld.restore(start)
    states = [agent_state(world)]
    for action in actions:
        world.step(action)
        states.append(agent_state(world))
    return states, world.done


def has_loop(states: Sequence[AgentState], visits: int = LOOP_VISITS) -> bool:
    """Whether one agent state occurs `visits` or more times in the episode."""
    return bool(states) and max(Counter(states).values()) >= visits


def steps_without_progress(states: Sequence[AgentState]) -> int:
    """How many steps led back to an agent state already seen in the episode."""
    seen, stalled = set(states[:1]), 0
    for state in states[1:]:
        stalled += state in seen
        seen.add(state)
    return stalled


def episode_record(item: EvaluationItem, episode: Episode) -> dict:
    """One episode's row in `model_episodes.jsonl`: where it started, how it went."""
    states, ended = agent_trace(item.start, episode.actions)
    return {
        "suite": item.suite,
        "key": item.key,
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


def episodes_key(max_steps: int, student: Student, items: Sequence[EvaluationItem]) -> str:
    """Everything that shapes a model's episodes: weights, prompts, budget and starts."""
    shaping = {
        "student": student.params.model_dump(mode="json", exclude={"batch_size"}),
        "adapter": None if student.adapter is None else folder_digest(student.adapter),
        "max_steps": max_steps,
        "items": [[item.suite, item.key, item.start.model_dump(mode="json")] for item in items],
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def play(
    max_steps: int, student: Student, items: Sequence[EvaluationItem], progress: bool
) -> list[dict]:
    """Every item played greedily in one batched `run_episodes` call."""
    episodes = run_episodes(
        student,
        [EpisodeSpec(item.start) for item in items],
        max_steps,
        temperature=0.0,
        history=student.params.history,
        progress=progress,
    )
    return [episode_record(item, episode) for item, episode in zip(items, episodes, strict=True)]


def model_episodes(
    max_steps: int,
    name: str,
    student: Student,
    items: Sequence[EvaluationItem],
    done: dict[tuple[str, str], dict],
    log: Path,
    progress: bool,
) -> dict:
    """A model's episodes: from the log when its key matches, else played and logged."""
    key = episodes_key(max_steps, student, items)
    if (name, key) in done:
        return done[(name, key)]
    started = time.perf_counter()
    row = {
        "model": name,
        "key": key,
        "episodes": play(max_steps, student, items, progress),
    }
    row["seconds"] = round(time.perf_counter() - started, 1)
    append_jsonl(log, row)
    return row


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a success rate; NaNs without episodes."""
    if n == 0:
        return float("nan"), float("nan")
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def success_summary(frame: pd.DataFrame) -> dict:
    """Count, successes, rate with its 95% interval, and mean steps of some episodes."""
    n, successes = len(frame), int(frame["success"].sum())
    low, high = wilson_interval(successes, n)
    return {
        "n": n,
        "successes": successes,
        "success_rate": successes / n if n else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "mean_steps": float(frame["steps"].mean()) if n else float("nan"),
    }


def overall_table(episodes: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Success on the held-out tasks per model, with its interval and its gain over the base;
    skipped runs keep their row, without numbers."""
    tasks = episodes[episodes["suite"] == "tasks"]
    rows = []
    for model in models.itertuples(index=False):
        measured = model.status != "skipped"
        summary = success_summary(tasks[tasks["model"] == model.model]) if measured else {}
        rows.append({**model._asdict(), **summary})
    table = pd.DataFrame(rows).rename(columns={"n": "n_tasks"})
    base = table.loc[table["model"] == BASE, "success_rate"].iloc[0]
    table["gain_over_base"] = table["success_rate"] - base
    return table


def per_quadrant_table(episodes: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Success from each quadrant's test snapshots per evaluated model, and the gain over the
    base there; every quadrant has a row (NaN where it has no test snapshot)."""
    snapshots = episodes[episodes["suite"] == "snapshots"]
    rows = []
    for model in models[models["status"] != "skipped"].itertuples(index=False):
        for quadrant in QUADRANTS:
            chosen = snapshots[
                (snapshots["model"] == model.model) & (snapshots["quadrant"] == quadrant)
            ]
            rows.append(
                {
                    "model": model.model,
                    "train_quadrant": model.quadrant,
                    "format": model.format,
                    "eval_quadrant": quadrant,
                    **success_summary(chosen),
                }
            )
    table = pd.DataFrame(rows).rename(columns={"n": "n_snapshots"})
    base = table[table["model"] == BASE].set_index("eval_quadrant")["success_rate"]
    table["base_success_rate"] = table["eval_quadrant"].map(base)
    table["gain_over_base"] = table["success_rate"] - table["base_success_rate"]
    return table


def transfer_matrix(per_quadrant: pd.DataFrame) -> pd.DataFrame:
    """Gain over the base of each quadrant × format run on each quadrant's test snapshots,
    and the mean over formats (`format` = "mean"); `diagonal` marks train = eval."""
    runs = per_quadrant[per_quadrant["train_quadrant"].isin(QUADRANTS)]
    cells = runs[["format", "train_quadrant", "eval_quadrant", "model", "gain_over_base"]]
    mean = (
        cells.groupby(["train_quadrant", "eval_quadrant"], as_index=False)["gain_over_base"]
        .mean()
        .assign(format="mean", model="")
    )
    matrix = pd.concat([cells, mean[cells.columns]], ignore_index=True)
    matrix = matrix.rename(columns={"gain_over_base": "gain"})
    matrix["diagonal"] = matrix["train_quadrant"] == matrix["eval_quadrant"]
    return matrix


def transfer_summary(matrix: pd.DataFrame) -> pd.DataFrame:
    """Per format: mean gain on the diagonal (trained and evaluated on one quadrant) and off
    it, and whether the diagonal is ahead (the plan expects it to be)."""
    rows = []
    for format, cells in matrix.dropna(subset=["gain"]).groupby("format", sort=False):
        diagonal = cells.loc[cells["diagonal"], "gain"]
        off = cells.loc[~cells["diagonal"], "gain"]
        difference = diagonal.mean() - off.mean()
        rows.append(
            {
                "format": format,
                "diagonal_gain": diagonal.mean(),
                "off_diagonal_gain": off.mean(),
                "difference": difference,
                "diagonal_ahead": bool(difference > 0),
                "n_diagonal": len(diagonal),
                "n_off_diagonal": len(off),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def retention_table(
    episodes: pd.DataFrame, models: pd.DataFrame, training_levels: Sequence[str]
) -> pd.DataFrame:
    """Success before (the base) and after (each model) on the retention set, the tasks the
    base solved, per level and over all; `drop_flag` marks a drop above 10 points."""
    retention = episodes[episodes["suite"] == "retention"]
    base = retention[retention["model"] == BASE]
    kept = set(base.loc[base["success"], "key"])
    levels = list(dict.fromkeys(base["level"]))
    rows = []
    for model in models[models["status"] != "skipped"].itertuples(index=False):
        played = retention[(retention["model"] == model.model) & retention["key"].isin(kept)]
        for level in [*levels, "all"]:
            chosen = played if level == "all" else played[played["level"] == level]
            candidates = base if level == "all" else base[base["level"] == level]
            before = base[base["key"].isin(chosen["key"])]["success"].mean()
            after = chosen["success"].mean()
            rows.append(
                {
                    "model": model.model,
                    "level": level,
                    "training_level": None if level == "all" else level in training_levels,
                    "n_candidates": len(candidates),
                    "n_tasks": len(chosen),
                    "before": before,
                    "after": after,
                    "drop": before - after,
                    "drop_flag": bool(before - after > RETENTION_DROP_LIMIT),
                }
            )
    return pd.DataFrame(rows)


def stuckness_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Loop rate, mean steps without progress and timeout rate per model, on the held-out
    tasks and on the test snapshots."""
    played = episodes[episodes["suite"].isin(["tasks", "snapshots"])]
    return (
        played.groupby(["model", "suite"], sort=False)
        .agg(
            n_episodes=("success", "size"),
            loop_rate=("loop", "mean"),
            mean_steps_without_progress=("steps_without_progress", "mean"),
            timeout_rate=("timeout", "mean"),
            success_rate=("success", "mean"),
        )
        .reset_index()
    )


def pareto_mask(gain: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """True where no other point has as much gain or more and as little drop or less, and
    strictly better on one of them; a point with a NaN is never on the front."""
    gain, drop = np.asarray(gain, dtype=float), np.asarray(drop, dtype=float)
    known = ~(np.isnan(gain) | np.isnan(drop))
    mask = np.zeros(len(gain), dtype=bool)
    for i in np.flatnonzero(known):
        as_good = known & (gain >= gain[i]) & (drop <= drop[i])
        better = (gain > gain[i]) | (drop < drop[i])
        mask[i] = not (as_good & better).any()
    return mask


def frontier(overall: pd.DataFrame, retention: pd.DataFrame) -> pd.DataFrame:
    """Per trained run: gain over the base on held-out tasks against the retention drop, with
    `pareto` marking the runs no other run beats on both (more gain, less drop)."""
    drops = retention[retention["level"] == "all"].set_index("model")["drop"]
    runs = overall[overall["status"] == "evaluated"]
    table = runs[["model", "quadrant", "format", "gain_over_base"]].reset_index(drop=True)
    table["retention_drop"] = table["model"].map(drops).astype(float)
    table["pareto"] = pareto_mask(table["gain_over_base"], table["retention_drop"])
    return table


@dataclass
class Evaluation:
    """Phase 3's tables, as written under its output folder, and its episodes."""

    models: pd.DataFrame
    episodes: pd.DataFrame
    overall: pd.DataFrame
    per_quadrant: pd.DataFrame
    transfer: pd.DataFrame
    transfer_summary: pd.DataFrame
    retention: pd.DataFrame
    stuckness: pd.DataFrame
    record: dict

    @property
    def frontier(self) -> pd.DataFrame:
        return frontier(self.overall, self.retention)


def evaluate_runs(
    trained: TrainingLayout,
    labeled: Sequence[LabeledSnapshot],
    phase3: Phase3Parameters,
    levels: Sequence[str],
    seed: int,
    base: Student,
    out: EvaluationLayout,
    progress: bool = True,
) -> Evaluation:
    """Evaluate the `base` student and every trained run of a training folder's summary
    (skipped runs are listed as such) on the held-out tasks of the training `levels`, the test
    snapshots of the split the runs trained on, and the retention tasks; write the evaluation
    suite's tables and records into `out`."""
    started = time.perf_counter()
    summary = TrainingSummary.load(trained.training_summary)
    adapters = adapter_folders(summary, trained)
    split = load_split(trained.folder / summary.split, labeled)
    items = evaluation_items(phase3, levels, seed, split, labeled)

    log = out.episodes
    done = {(row["model"], row["key"]): row for row in read_jsonl(log)}
    base_row = model_episodes(phase3.max_steps, BASE, base, items, done, log, progress)
    solved = {
        row["key"] for row in base_row["episodes"] if row["suite"] == "retention" and row["success"]
    }
    run_items = [item for item in items if item.suite != "retention" or item.key in solved]
    rows = [base_row]
    for run_id, folder in tqdm(adapters.items(), desc="models", disable=not progress):
        student = base.with_adapter(folder)
        rows.append(
            model_episodes(phase3.max_steps, run_id, student, run_items, done, log, progress)
        )
    write_jsonl(log, rows)  # rows of earlier parameters or runs are dropped

    evaluation = tabulate(levels, summary.runs, rows)
    evaluation.record.update(
        training_summary=str(trained.training_summary),
        evaluated_now=[row["model"] for row in rows if (row["model"], row["key"]) not in done],
        seconds=round(time.perf_counter() - started, 1),
    )
    save_evaluation(evaluation, out)
    return evaluation


def tabulate(levels: Sequence[str], runs: Sequence[RunEntry], rows: Sequence[dict]) -> Evaluation:
    """The tables from each model's logged episodes."""
    models = model_table(runs)
    episodes = pd.DataFrame(
        [{"model": row["model"], **episode} for row in rows for episode in row["episodes"]],
        columns=[
            "model",
            "suite",
            "key",
            "env_id",
            "level",
            "seed",
            "quadrant",
            "success",
            "steps",
            "loop",
            "steps_without_progress",
            "timeout",
            "actions",
        ],
    )
    per_quadrant = per_quadrant_table(episodes, models)
    transfer = transfer_matrix(per_quadrant)
    counts = episodes[episodes["model"] == BASE]["suite"].value_counts()
    return Evaluation(
        models=models,
        episodes=episodes,
        overall=overall_table(episodes, models),
        per_quadrant=per_quadrant,
        transfer=transfer,
        transfer_summary=transfer_summary(transfer),
        retention=retention_table(episodes, models, levels),
        stuckness=stuckness_table(episodes),
        record={
            "n_items": {suite: int(counts.get(suite, 0)) for suite in SUITES},
            "evaluated": [row["model"] for row in rows],
            "skipped": [
                {"id": run.id, "reason": run.reason} for run in runs if run.status == "skipped"
            ],
            "seconds_per_model": {row["model"]: row.get("seconds") for row in rows},
        },
    )


def save_evaluation(evaluation: Evaluation, out: EvaluationLayout) -> None:
    out.folder.mkdir(parents=True, exist_ok=True)
    evaluation.overall.to_csv(out.overall, index=False)
    evaluation.per_quadrant.to_csv(out.per_quadrant, index=False)
    evaluation.transfer.to_csv(out.transfer, index=False)
    evaluation.retention.to_csv(out.retention, index=False)
    evaluation.stuckness.to_csv(out.stuckness, index=False)
    summary = evaluation.transfer_summary.to_json(orient="records")
    write_json(out.transfer_summary, json.loads(summary))
    write_json(out.record, evaluation.record)
