"""Phase 3 evaluation: the base student and every trained run, sampled on shared seeds, on what
no run trained on.

Each model plays, for at most `phase3.max_steps` steps, every item of three suites:

- `tasks`: `n_tasks` held-out tasks (their own purpose in `world.tasks`, so no warm-up, rollout or
  expert task can be among them; checked again against every task of the run's split before
  any episode runs);
- `snapshots`: up to `n_snapshots_per_quadrant` test snapshots of each quadrant: the `test` part
  of the run's split, which Phase 1 gave U and leverage (and so a quadrant) and nothing else;
  each episode starts at the snapshot's env state;
- `retention`: a fixed set of retention-purpose tasks on the training levels and on
  `retention_levels` (levels outside training). Every model plays all of them, whether the base
  solves them or not, so a run can lose success there (a positive drop) or gain it (a negative
  one).

Every item is played `evaluation.episodes_per_item` times at `evaluation.temperature` (mode
`sampled`). Episode e of an item draws its actions from a stream seeded by (run seed, item key,
e), the same for every model, so two models differ on an episode only by what they learned:
their differences are paired (common random numbers). With `evaluation.greedy` every item is
also played once at temperature 0 (mode `greedy`), reported beside the sampled figures.

Runs are replicated over training seeds: a cell (a run entry's `cell`) is its runs, one per
seed. The tables have a row per run (`unit` = `run`) and per cell (`cell`), besides the base
(`base`): success rates with their Wilson interval over the episodes, and gains and drops as
means of paired differences with a hierarchical bootstrap interval (seeds, then items, then
episodes), each with its n (`<figure>_n`, the paired episodes it rests on).

All of a model's episodes of one mode go through one `run_episodes` call, so the scorer sees
one large batch per step; trained runs are LoRA adapters loaded over the one shared base. Each
model is one unit of the workers `execution` names (an adapter travels to them as its files'
bytes); the driver appends its episodes to `model_episodes.jsonl` as soon as it finishes, keyed
by everything that shapes them, so a rerun evaluates only the models not done yet, and the
base's episodes can be shared between evaluations of the same items.

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
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from teachable.measure.intervals import hierarchical_bootstrap, number, wilson
from teachable.measure.verdicts import judge, outcome
from teachable.models.rollouts import Episode, EpisodeSpec, run_episodes
from teachable.models.student import Student
from teachable.models.workers import Workers, WorkUnit, pack_folder, unpack_folder, workers_of
from teachable.parameters import EvaluationParameters, Phase3Parameters, StudentParameters
from teachable.phases.phase1_labels import stable_int
from teachable.records.env_state import EnvState
from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import EvaluationLayout, TrainingLayout
from teachable.records.snapshot import level_of
from teachable.records.store import append_jsonl, read_jsonl, write_json, write_jsonl
from teachable.records.training_summary import BASE, RunEntry, TrainingSummary
from teachable.records.verdicts import Verdict
from teachable.vocabulary import QUADRANTS, Quadrant
from teachable.world.splits import Split
from teachable.world.tasks import purpose_of, task_suite
from teachable.world.text_world import TextWorld

PHASE = "phase3"


LOOP_VISITS = 3


RETENTION_DROP_LIMIT = 0.10


SUITES = ("tasks", "snapshots", "retention")


PlayMode = Literal["sampled", "greedy"]


MODES: tuple[PlayMode, ...] = ("sampled", "greedy")


COMPARED_QUADRANTS = ("Q1_highU_highL", "Q2_highU_lowL")  # the plan expects Q1 to gain most


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
class Unit:
    """What a table row measures: the base, one run (one training seed of a cell), or a cell
    (its runs over the seeds); `runs` are the evaluated models it pools, none when every run
    was skipped."""

    kind: Literal["base", "run", "cell"]
    name: str
    cell: str
    seed: int | None
    quadrant: str | None
    format: str | None
    n_train: int
    runs: tuple[str, ...]

    def columns(self) -> dict:
        """The row's description: what was trained, on how many seeds, and its status."""
        status = "base" if self.kind == "base" else "evaluated" if self.runs else "skipped"
        return {
            "unit": self.kind,
            "model": self.name,
            "cell": self.cell,
            "seed": self.seed,
            "seeds": len(self.runs),
            "quadrant": self.quadrant,
            "format": self.format,
            "n_train": self.n_train,
            "status": status,
        }


def units(runs: Sequence[RunEntry]) -> list[Unit]:
    """The base, every run of a summary (skipped ones too), then every cell, in the summary's
    order; a cell's runs are its trained seeds in seed order."""
    base = Unit("base", BASE, BASE, None, None, None, 0, (BASE,))
    singles = [
        Unit(
            "run",
            run.id,
            run.cell,
            run.seed,
            run.quadrant,
            run.format,
            run.n_train,
            () if run.status == "skipped" else (run.id,),
        )
        for run in runs
    ]
    cells = []
    for cell in dict.fromkeys(run.cell for run in runs):
        members = sorted((run for run in runs if run.cell == cell), key=lambda run: run.seed)
        first = members[0]
        trained = tuple(run.id for run in members if run.status == "trained")
        cells.append(
            Unit("cell", cell, cell, None, first.quadrant, first.format, first.n_train, trained)
        )
    return [base, *singles, *cells]


def unit_table(runs: Sequence[RunEntry]) -> pd.DataFrame:
    """One row per unit: the base, each run, each cell, with what it was trained on."""
    return pd.DataFrame([unit.columns() for unit in units(runs)])


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


EPISODE_COLUMNS = [
    "model",
    "suite",
    "key",
    "episode",
    "mode",
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
]


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
    """A unit of Phases 3 and 5: one model, the base student or the base with an adapter (its
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


# --- paired outcomes ---------------------------------------------------------------------------


def of_suite(episodes: pd.DataFrame, suite: str, mode: PlayMode) -> pd.DataFrame:
    """The episodes of one suite in one play mode."""
    return episodes[(episodes["suite"] == suite) & (episodes["mode"] == mode)]


def outcome_cube(
    episodes: pd.DataFrame, models: Sequence[str], suite: str, mode: PlayMode = "sampled"
) -> np.ndarray:
    """Success (1.0 or 0.0) of each model on each episode of a suite, shaped (models, items,
    episodes): items in sorted key order over every model's episodes in `episodes`, so cubes of
    different models line up; NaN where a model did not play."""
    played = of_suite(episodes, suite, mode)
    keys = sorted(set(played["key"]))
    n_episodes = int(played["episode"].max()) + 1 if len(played) else 0
    cube = np.full((len(models), len(keys), n_episodes), np.nan)
    items = played["key"].map({key: i for i, key in enumerate(keys)}).to_numpy(dtype=int)
    index = played["episode"].to_numpy(dtype=int)
    success = played["success"].to_numpy(dtype=float)
    for m, model in enumerate(models):
        mine = (played["model"] == model).to_numpy()
        cube[m, items[mine], index[mine]] = success[mine]
    return cube


def paired_gain(
    episodes: pd.DataFrame,
    models: Sequence[str],
    reference: Sequence[str],
    suite: str,
    resamples: int,
    seed: int,
    mode: PlayMode = "sampled",
) -> Estimate:
    """Mean success of `models` minus `reference` on a suite, paired episode by episode, with
    a hierarchical bootstrap interval (seeds, items, episodes). Either side may be one model
    (the base, set against every run of the other side); else both hold as many, paired in order
    (seed by seed)."""
    if len(models) != len(reference) and 1 not in (len(models), len(reference)):
        raise ValueError(
            f"{len(models)} models against {len(reference)} references: pair one by one or "
            "against a single reference"
        )
    differences = outcome_cube(episodes, models, suite, mode) - outcome_cube(
        episodes, reference, suite, mode
    )
    return hierarchical_bootstrap(differences, resamples, seed)


def success_rate(
    episodes: pd.DataFrame, models: Sequence[str], suite: str, mode: PlayMode
) -> Estimate:
    """Success over every episode the models played on a suite, with its Wilson interval."""
    played = of_suite(episodes, suite, mode)
    played = played[played["model"].isin(models)]
    return wilson(int(played["success"].sum()), len(played))


def n_items(episodes: pd.DataFrame, suite: str, mode: PlayMode) -> int:
    """How many items of a suite were played."""
    return int(of_suite(episodes, suite, mode)["key"].nunique())


def estimate_columns(name: str, estimate: Estimate) -> dict:
    """An estimate as table columns: `name`, `name_low`, `name_high` and `name_n`."""
    return {
        name: estimate.value,
        f"{name}_low": estimate.low,
        f"{name}_high": estimate.high,
        f"{name}_n": estimate.n,
    }


def estimate_in(row: Mapping, name: str) -> Estimate:
    """The estimate `estimate_columns` wrote into a table row."""
    return Estimate(
        value=number(row[name]),
        low=number(row[f"{name}_low"]),
        high=number(row[f"{name}_high"]),
        n=int(row[f"{name}_n"]),
        method="hierarchical bootstrap (seeds, items, episodes)",
    )


def in_mode(mode: PlayMode, columns: Mapping) -> dict:
    """A play mode's columns: the sampled ones as they are, the greedy ones as `greedy_...`."""
    prefix = "" if mode == "sampled" else f"{mode}_"
    return {prefix + name: value for name, value in columns.items()}


def modes_of(episodes: pd.DataFrame) -> list[PlayMode]:
    """The play modes the episodes hold, sampled first."""
    return [mode for mode in MODES if (episodes["mode"] == mode).any()]


# --- tables ------------------------------------------------------------------------------------


def suite_figures(
    episodes: pd.DataFrame, unit: Unit, suite: str, resamples: int, seed: int
) -> dict:
    """A unit's items, success (Wilson) and paired gain over the base on a suite, per mode."""
    columns = {}
    for mode in modes_of(episodes):
        figures = {
            "n_items": n_items(episodes, suite, mode),
            **estimate_columns("success", success_rate(episodes, unit.runs, suite, mode)),
            **estimate_columns(
                "gain", paired_gain(episodes, unit.runs, [BASE], suite, resamples, seed, mode)
            ),
        }
        columns |= in_mode(mode, figures)
    return columns


def overall_table(
    episodes: pd.DataFrame, units: Sequence[Unit], resamples: int, seed: int
) -> pd.DataFrame:
    """Success on the held-out tasks and the gain over the base, per run and per cell; skipped
    runs and cells keep their row, without numbers."""
    return pd.DataFrame(
        [
            unit.columns()
            | (suite_figures(episodes, unit, "tasks", resamples, seed) if unit.runs else {})
            for unit in units
        ]
    )


def per_quadrant_table(
    episodes: pd.DataFrame, units: Sequence[Unit], resamples: int, seed: int
) -> pd.DataFrame:
    """Success from each quadrant's test snapshots and the gain over the base there, per
    evaluated run and cell; every quadrant has a row (no figures where it has no snapshot)."""
    rows = []
    for unit in units:
        if not unit.runs:
            continue
        for quadrant in QUADRANTS:
            chosen = episodes[episodes["quadrant"] == quadrant]
            figures = suite_figures(chosen, unit, "snapshots", resamples, seed)
            rows.append(unit.columns() | {"eval_quadrant": quadrant} | figures)
    return pd.DataFrame(rows)


def quadrant_cells(units: Sequence[Unit]) -> list[Unit]:
    """The evaluated cells trained on one quadrant (not the baselines or selection methods)."""
    return [u for u in units if u.kind == "cell" and u.quadrant in QUADRANTS and u.runs]


def transfer_matrix(
    episodes: pd.DataFrame, units: Sequence[Unit], resamples: int, seed: int
) -> pd.DataFrame:
    """Gain over the base of each quadrant x format cell on each quadrant's test snapshots,
    with its interval over seeds, snapshots and episodes; then per train quadrant every
    format's runs together (`format` = "mean"). `diagonal` marks train = eval."""
    cells = quadrant_cells(units)
    groups = [(cell.format, cell.quadrant, cell.name, cell.runs) for cell in cells]
    for quadrant in QUADRANTS:
        pooled = tuple(run for cell in cells if cell.quadrant == quadrant for run in cell.runs)
        if pooled:
            groups.append(("mean", quadrant, "", pooled))
    rows = []
    for format, train, cell, runs in groups:
        for quadrant in QUADRANTS:
            chosen = episodes[episodes["quadrant"] == quadrant]
            gain = paired_gain(chosen, runs, [BASE], "snapshots", resamples, seed)
            rows.append(
                {
                    "format": format,
                    "train_quadrant": train,
                    "eval_quadrant": quadrant,
                    "cell": cell,
                    "seeds": len(runs),
                    **estimate_columns("gain", gain),
                    "diagonal": train == quadrant,
                }
            )
    return pd.DataFrame(rows)


def transfer_cubes(episodes: pd.DataFrame, runs: Sequence[Unit]) -> tuple[np.ndarray, np.ndarray]:
    """Gains over the base on each test snapshot for each (format, seed) of the given quadrant
    runs, shaped (pairs, items, episodes): of the run trained on the snapshot's quadrant (the
    diagonal), and the mean of the runs trained on the other quadrants (off it); NaN where no
    such run exists."""
    snapshots = of_suite(episodes, "snapshots", "sampled")
    keys = sorted(set(snapshots["key"]))
    quadrant_of = dict(zip(snapshots["key"], snapshots["quadrant"], strict=True))
    base = outcome_cube(episodes, [BASE], "snapshots")[0]
    groups = sorted({(run.format, run.seed) for run in runs})
    diagonal = np.full((len(groups), *base.shape), np.nan)
    off = np.full_like(diagonal, np.nan)
    for g, group in enumerate(groups):
        trained = {run.quadrant: run.name for run in runs if (run.format, run.seed) == group}
        cube = outcome_cube(episodes, list(trained.values()), "snapshots") - base
        gains = dict(zip(trained, cube, strict=True))
        for i, key in enumerate(keys):
            own = quadrant_of[key]
            if own in gains:
                diagonal[g, i] = gains[own][i]
            others = [gain[i] for quadrant, gain in gains.items() if quadrant != own]
            if others:
                off[g, i] = np.mean(others, axis=0)
    return diagonal, off


def transfer_summary(
    episodes: pd.DataFrame, units: Sequence[Unit], resamples: int, seed: int
) -> pd.DataFrame:
    """Per format, and for every format together (`mean`): the gain on the test snapshots of
    the run trained on their quadrant (diagonal), the mean gain of the runs trained on the
    other quadrants (off-diagonal), and the paired difference, each with its interval over
    (format, seed) pairs, snapshots and episodes. `diagonal_ahead` is the three-way outcome of
    difference > 0 (the plan expects it to hold)."""
    runs = [u for u in units if u.kind == "run" and u.quadrant in QUADRANTS and u.runs]
    formats = list(dict.fromkeys(run.format for run in runs))
    rows = []
    for format in [*formats, "mean"] if formats else []:
        diagonal, off = transfer_cubes(episodes, [r for r in runs if format in (r.format, "mean")])
        difference = hierarchical_bootstrap(diagonal - off, resamples, seed)
        rows.append(
            {
                "format": format,
                **estimate_columns(
                    "diagonal_gain", hierarchical_bootstrap(diagonal, resamples, seed)
                ),
                **estimate_columns(
                    "off_diagonal_gain", hierarchical_bootstrap(off, resamples, seed)
                ),
                **estimate_columns("difference", difference),
                "diagonal_ahead": outcome(difference, ">", 0.0),
            }
        )
    return pd.DataFrame(rows)


def quadrant_comparison(
    episodes: pd.DataFrame, units: Sequence[Unit], resamples: int, seed: int
) -> Estimate:
    """How much more success on the held-out tasks the runs trained on Q1 have than those
    trained on Q2, paired by format and seed (the base cancels out of the two gains)."""
    first, second = COMPARED_QUADRANTS
    runs = {(u.quadrant, u.format, u.seed): u.name for u in units if u.kind == "run" and u.runs}
    pairs = sorted((f, s) for (q, f, s) in runs if q == first and (second, f, s) in runs)
    return paired_gain(
        episodes,
        [runs[(first, *pair)] for pair in pairs],
        [runs[(second, *pair)] for pair in pairs],
        "tasks",
        resamples,
        seed,
    )


def retention_table(
    episodes: pd.DataFrame,
    units: Sequence[Unit],
    training_levels: Sequence[str],
    resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Success before (the base) and after (each evaluated run and cell) on the fixed retention
    set, per level and over all, and the paired drop before - after with its interval: negative
    when the run got better. `drop_within_limit` is the three-way outcome of drop < 10 points."""
    retention = episodes[episodes["suite"] == "retention"]
    levels = list(dict.fromkeys(retention["level"]))
    rows = []
    for unit in units:
        if unit.kind == "base" or not unit.runs:
            continue
        for level in [*levels, "all"]:
            chosen = retention if level == "all" else retention[retention["level"] == level]
            row = unit.columns() | {
                "level": level,
                "training_level": None if level == "all" else level in training_levels,
            }
            for mode in modes_of(episodes):
                drop = paired_gain(chosen, [BASE], unit.runs, "retention", resamples, seed, mode)
                figures = {
                    "n_items": n_items(chosen, "retention", mode),
                    **estimate_columns("before", success_rate(chosen, [BASE], "retention", mode)),
                    **estimate_columns("after", success_rate(chosen, unit.runs, "retention", mode)),
                    **estimate_columns("drop", drop),
                    "drop_within_limit": outcome(drop, "<", RETENTION_DROP_LIMIT),
                }
                row |= in_mode(mode, figures)
            rows.append(row)
    return pd.DataFrame(rows)


def stuckness_table(episodes: pd.DataFrame) -> pd.DataFrame:
    """Loop rate, mean steps without progress and timeout rate per model and play mode, on the
    held-out tasks and on the test snapshots."""
    played = episodes[episodes["suite"].isin(["tasks", "snapshots"])]
    return (
        played.groupby(["model", "suite", "mode"], sort=False)
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
    """Per evaluated cell: gain over the base on held-out tasks against the retention drop over
    all levels, with their intervals; `pareto` marks the cells no other cell beats on both
    (more gain, less drop)."""
    cells = overall[(overall["unit"] == "cell") & (overall["status"] == "evaluated")]
    table = cells[["cell", "quadrant", "format", "seeds", "gain", "gain_low", "gain_high"]]
    table = table.reset_index(drop=True)
    drops = retention[(retention["unit"] == "cell") & (retention["level"] == "all")]
    drops = drops.set_index("cell")
    for column in ("drop", "drop_low", "drop_high"):
        table[column] = table["cell"].map(drops[column]).astype(float)
    table["pareto"] = pareto_mask(table["gain"], table["drop"])
    return table


@dataclass
class Evaluation:
    """Phase 3's tables, as written under its output folder, and its episodes."""

    units: pd.DataFrame
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


def phase3_verdicts(evaluation: Evaluation) -> list[Verdict]:
    """The plan's Phase 3 criteria, each read three-way from its interval: every trained cell
    gains over the base on the held-out tasks, every format's transfer diagonal is ahead of
    its off-diagonal, every cell's retention drop stays under 10 points, and the Q1 cells gain
    more than the Q2 cells."""
    overall = evaluation.overall
    cells = overall[(overall["unit"] == "cell") & (overall["status"] == "evaluated")]
    verdicts = [
        judge(
            PHASE,
            f"{row['cell']} gain over base",
            "success on the held-out tasks above the base's (end-to-end success > baseline)",
            estimate_in(row, "gain"),
            ">",
            0.0,
        )
        for _, row in cells.iterrows()
    ]
    summary = evaluation.transfer_summary
    formats = summary[summary["format"] != "mean"] if len(summary) else summary
    verdicts += [
        judge(
            PHASE,
            f"transfer diagonal - off-diagonal ({row['format']})",
            "runs gain more on test snapshots of the quadrant they trained on than of the others",
            estimate_in(row, "difference"),
            ">",
            0.0,
        )
        for _, row in formats.iterrows()
    ]
    retention = evaluation.retention
    drops = retention[(retention["unit"] == "cell") & (retention["level"] == "all")]
    verdicts += [
        judge(
            PHASE,
            f"{row['cell']} retention drop",
            "success on the retention tasks drops by less than 10 points (no catastrophic "
            "forgetting)",
            estimate_in(row, "drop"),
            "<",
            RETENTION_DROP_LIMIT,
        )
        for _, row in drops.iterrows()
    ]
    first, second = COMPARED_QUADRANTS
    verdicts.append(
        judge(
            PHASE,
            f"{first} - {second} success",
            "the Q1 cells gain more on the held-out tasks than the Q2 cells (paired by format "
            "and seed)",
            Estimate.model_validate(evaluation.record["quadrant_comparison"]),
            ">",
            0.0,
        )
    )
    return verdicts


def tabulate(
    levels: Sequence[str],
    runs: Sequence[RunEntry],
    rows: Sequence[dict],
    resamples: int,
    seed: int,
) -> Evaluation:
    """The tables from each model's logged episodes; `seed` seeds every bootstrap."""
    measured = units(runs)
    episodes = pd.DataFrame(
        [{"model": row["model"], **episode} for row in rows for episode in row["episodes"]],
        columns=EPISODE_COLUMNS,
    )
    base = episodes[(episodes["model"] == BASE) & (episodes["mode"] == "sampled")]
    counts = base.groupby("suite")["key"].nunique()
    comparison = quadrant_comparison(episodes, measured, resamples, seed)
    return Evaluation(
        units=unit_table(runs),
        episodes=episodes,
        overall=overall_table(episodes, measured, resamples, seed),
        per_quadrant=per_quadrant_table(episodes, measured, resamples, seed),
        transfer=transfer_matrix(episodes, measured, resamples, seed),
        transfer_summary=transfer_summary(episodes, measured, resamples, seed),
        retention=retention_table(episodes, measured, levels, resamples, seed),
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
    base: Student | Workers,
    out: EvaluationLayout,
    progress: bool = True,
) -> Evaluation:
    """Evaluate the `base` student and every trained run of a training folder's summary
    (skipped runs are listed as such) on the held-out tasks of the training `levels`, the `test`
    snapshots (with their quadrants; all from the test part of the split the summary names), and
    the retention tasks, as `evaluation` says;
    write the evaluation suite's tables and records into `out`. The verdicts are left to the
    caller (`phase3_verdicts`): Phase 5 evaluates its methods here too."""
    started = time.perf_counter()
    summary = TrainingSummary.load(trained.training_summary)
    adapters = adapter_folders(summary, trained)
    split = Split.load(trained.folder / summary.split)
    items = evaluation_items(phase3, levels, seed, split, test)
    play = Play(phase3.max_steps, evaluation, seed)

    models = {BASE: None, **adapters}
    log = out.episodes
    rows, played = models_episodes(play, models, items, workers_of(base), log, progress)
    write_jsonl(log, rows)  # rows of earlier parameters or runs are dropped

    result = tabulate(levels, summary.runs, rows, evaluation.bootstrap_resamples, seed)
    result.record.update(
        training_summary=str(trained.training_summary),
        temperature=evaluation.temperature,
        evaluated_now=played,
        seconds=round(time.perf_counter() - started, 1),
    )
    save_evaluation(result, out)
    return result


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
