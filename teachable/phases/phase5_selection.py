"""Phase 5, the selection experiment (H7): which training data should a fixed budget buy?

From the train side of the Phase 2 split, each method picks `K = phase5.budget` snapshots:

- `random`: a seeded uniform draw, drawn anew for every training seed;
- `entropy`: the K with the highest U, the student's uncertainty;
- `predictor`: the K with the highest ELP_net predicted by the Phase 4 predictor from the cheap
  fields alone;
- `oracle`: the K with the highest measured ELP_net (an upper bound: it needs the rollouts);
- `learnability`: the K with the highest p(1 - p), p the student's own success rate from the
  snapshot (`leverage.p_student`): the states it solves about half of the time, a baseline from
  curriculum learning.

Ties are broken by snapshot id. The pool is the train snapshots that carry every label (U,
leverage, CPT), so all methods choose among the same snapshots; a pool smaller than the budget
lowers K for every method, and the summary says so. Each method trains once per seed of
`phase5.seeds` (LoRA initialization and data order; random also draws anew), with the same
hyperparameters (`lora`, with any value `phase5` sets in its place) in `phase5.format`, and is
evaluated like Phase 3 (`evaluate_runs`, with the `phase3` suites played as `evaluation` says)
into `phase5/selection/<method>/`: its `training_summary.json`, its adapters and `eval/`. The
base student's episodes are the same for every method: they are played once and shared between
the methods' evaluation logs. A rerun keeps finished runs and logged episodes.

`selection_summary.json` gives each method's success gain over the base student on the held-out
tasks (and on the test snapshots) and its retention drop, each with a 95% hierarchical bootstrap
interval (seeds, items, episodes: every model played the same episodes), the paired differences
between methods (seed by seed), and the plan's verdicts, three-way: predictor > entropy,
entropy > random on gain, and every method's retention drop below the 10-point limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel
from tqdm.auto import tqdm

from teachable.measure.intervals import Estimate, number, wilson
from teachable.measure.verdicts import judge
from teachable.models.student import Student
from teachable.parameters import (
    EvaluationParameters,
    LoraParameters,
    Phase3Parameters,
    Phase5Parameters,
    SelectionMethod,
)
from teachable.phases.phase2_matrix import (
    MatrixRun,
    is_finished,
    run_key,
    save_summary,
    train_run,
)
from teachable.phases.phase3_evaluation import (
    RETENTION_DROP_LIMIT,
    Evaluation,
    evaluate_runs,
    outcome_cube,
    paired_gain,
)
from teachable.phases.phase4_predictor import Predictor, PredictorResult
from teachable.records.labeled import LabeledSnapshot, load_labeled
from teachable.records.layout import MethodLayout, Phase4Layout, RunLayout
from teachable.records.store import read_json, read_jsonl, write_json, write_jsonl
from teachable.records.training_summary import BASE, RunEntry, TrainingSummary
from teachable.records.verdicts import Verdict, save_phase_verdicts
from teachable.world.splits import load_split

ORDER = (("predictor", "entropy"), ("entropy", "random"))  # the plan's order on gain


def labeled_pool(train: Sequence[LabeledSnapshot]) -> tuple[list[LabeledSnapshot], list[str]]:
    """The train snapshots every method can rank (U, leverage and CPT measured), in id order,
    and the ids of those left out."""
    complete = [row for row in train if None not in (row.U, row.leverage, row.cpt)]
    kept = {row.id for row in complete}
    return sorted(complete, key=lambda row: row.id), [row.id for row in train if row.id not in kept]


def learnability(p_student: float) -> float:
    """p(1 - p): largest for states the student solves half of the time."""
    return p_student * (1.0 - p_student)


RANKED_BY = {  # the label each ranking method sorts by, None when the row lacks it
    "entropy": lambda row: row.U,
    "oracle": lambda row: None if row.cpt is None else row.cpt.ELP_net,
    "learnability": lambda row: (
        None if row.leverage is None else learnability(row.leverage.p_student)
    ),
}


def method_scores(
    method: SelectionMethod,
    rows: Sequence[LabeledSnapshot],
    predictions: pd.DataFrame | None = None,
) -> np.ndarray:
    """What a ranking method sorts the rows by, highest first: the predictor's ELP_net (from
    `predictions`, columns id and ELP_net) or a label; an error names a row without a score."""
    if method == "predictor":
        if predictions is None:
            raise ValueError("the predictor method needs the predictor's scores (predictions)")
        predicted = predictions.set_index("id")["ELP_net"]
        scores = [predicted.get(row.id) for row in rows]
    elif method in RANKED_BY:
        scores = [RANKED_BY[method](row) for row in rows]
    else:
        raise ValueError(
            f"{method!r} is no ranking method; known: {', '.join(RANKED_BY)}, predictor"
        )
    missing = [row.id for row, score in zip(rows, scores, strict=True) if score is None]
    if missing:
        raise ValueError(f"the {method} method has no score for snapshot(s) {missing[:3]}")
    return np.asarray(scores, dtype=float)


def select(
    method: SelectionMethod,
    rows: Sequence[LabeledSnapshot],
    k: int,
    predictions: pd.DataFrame | None = None,
    seed: int | tuple[int, ...] = 0,
) -> list[LabeledSnapshot]:
    """The `k` rows a method picks: the top k of its scores, ties broken by id (best first),
    or for `random` a seeded draw without replacement from the rows in id order."""
    if not 1 <= k <= len(rows):
        raise ValueError(f"cannot select {k} of {len(rows)} snapshots")
    if method == "random":
        ordered = sorted(rows, key=lambda row: row.id)
        drawn = np.random.default_rng(seed).choice(len(ordered), k, replace=False)
        return [ordered[index] for index in drawn]
    scores = method_scores(method, rows, predictions)
    ranking = sorted(range(len(rows)), key=lambda index: (-scores[index], rows[index].id))
    return [rows[index] for index in ranking[:k]]


def plan_selections(
    phase5: Phase5Parameters,
    pool: Sequence[LabeledSnapshot],
    seed: int,
    predictions: pd.DataFrame | None = None,
) -> dict[SelectionMethod, list[MatrixRun]]:
    """Each method's runs, one per training seed, each on exactly K = min(budget, pool)
    snapshots in the chosen format; random draws from (run `seed`, training seed)."""
    if not pool:
        raise ValueError("no train snapshot carries U, leverage and CPT labels: nothing to select")
    k = min(phase5.budget, len(pool))
    return {
        method: [
            MatrixRun(
                method,
                s,
                method,
                phase5.format,
                tuple(select(method, pool, k, predictions, (seed, s))),
            )
            for s in phase5.seeds
        ]
        for method in phase5.methods
    }


def predicted_scores(phase4: Phase4Layout, pool: Sequence[LabeledSnapshot]) -> pd.DataFrame:
    """The Phase 4 predictor's predictions for the pool (id, U, L_local, ELP_net, quadrant)."""
    predictor = Predictor.load(phase4.predictor_model)
    return predictor.predict(pool)


def train_method(
    student: Student,
    runs: Sequence[MatrixRun],
    lora: LoraParameters,
    out: MethodLayout,
    split: Path,
    group: str,
) -> list[RunEntry]:
    """Train a method's runs with `lora` into `out` (keeping finished ones) and write its
    summary; losses go to Weights & Biases under `group` where it is set up."""
    earlier = TrainingSummary.entries_in(out.training_summary)
    entries = []
    for run in runs:
        key = run_key(run, lora, student)
        entry = earlier.get(run.id)
        if not is_finished(entry, key, out):
            entry = train_run(student, run, lora, out, key, group)
        entries.append(entry)
        save_summary(out, lora, split, entries)
    return entries


def share_base_episodes(sources: Sequence[Path], log: Path) -> None:
    """Copy the base student's logged episodes from earlier evaluations into `log`. They are
    keyed by everything that shapes them, so `evaluate_runs` reuses them only when they match."""
    rows = read_jsonl(log)
    known = {(row["model"], row["key"]) for row in rows}
    for source in sources:
        for row in read_jsonl(source):
            if row["model"] == BASE and (row["model"], row["key"]) not in known:
                rows.append(row)
                known.add((row["model"], row["key"]))
    if rows:
        write_jsonl(log, rows)


class PickedLabels(BaseModel):
    """What a method picked, over its runs: mean U, measured ELP_net, p(1 - p), and the share
    of its picks the oracle also picked."""

    mean_U: float | None
    mean_ELP_net: float | None
    mean_learnability: float | None
    oracle_overlap: float | None


class MethodResult(BaseModel):
    """One method: its runs (one per seed), its success on the held-out tasks (Wilson over
    episodes), its gains over the base student and its retention drop (hierarchical bootstrap
    over seeds, items and episodes)."""

    runs: list[str]
    seeds: list[int]
    k: int
    success: Estimate
    gain: Estimate
    snapshot_gain: Estimate
    retention_drop: Estimate
    per_seed_gain: dict[str, float | None]
    picked: PickedLabels


class SelectionSummary(BaseModel):
    """`selection_summary.json`: K and the pool, each method's result, the paired differences
    between methods (`first-second`, seed by seed), and the verdicts."""

    budget: int
    k: int
    k_reduced: bool
    pool_size: int
    train_snapshots: int
    left_out_unlabeled: int
    format: str
    lora: dict
    seeds: list[int]
    evaluation: dict
    predictor_seen_share: float | None
    methods: dict[str, MethodResult]
    differences: dict[str, Estimate]
    verdicts: list[Verdict]

    @classmethod
    def load(cls, path: Path) -> SelectionSummary:
        return cls.model_validate(read_json(path))


@dataclass
class SelectionReport:
    """What `run_selection` did: each method's runs, entries and evaluation, and the summary."""

    runs: dict[SelectionMethod, list[MatrixRun]]
    entries: dict[SelectionMethod, list[RunEntry]]
    evaluations: dict[SelectionMethod, Evaluation]
    summary: SelectionSummary


def run_selection(
    phase5: Phase5Parameters,
    phase3: Phase3Parameters,
    evaluation: EvaluationParameters,
    lora: LoraParameters,
    levels: Sequence[str],
    seed: int,
    student: Student,
    run: RunLayout,
    progress: bool = True,
) -> SelectionReport:
    """All of Phase 5, resumable: select from the run's Phase 2 train side (ranked by the
    Phase 4 predictor where asked), train each pick once per seed with the shared `lora`
    settings under Phase 5's overrides, evaluate with Phase 3's suites as `evaluation` says,
    and write everything into the run's Phase 5 folder and its verdicts into the run's
    `verdicts.json`."""
    out = run.phase5
    split_path = run.phase2.split
    labeled = load_labeled(run.phase1)
    split = load_split(split_path, labeled)
    pool, left_out = labeled_pool(split.train)
    predictions = None
    if pool and "predictor" in phase5.methods:
        predictions = predicted_scores(run.phase4, pool)
    runs = plan_selections(phase5, pool, seed, predictions)
    lora = phase5.over(lora)
    entries, evaluations, logs = {}, {}, []
    for method, method_runs in tqdm(runs.items(), desc="selection", disable=not progress):
        trained = out.method(method)
        entries[method] = train_method(
            student, method_runs, lora, trained, split_path, run.folder.name
        )
        share_base_episodes(logs, trained.evaluation.episodes)
        evaluations[method] = evaluate_runs(
            trained,
            labeled,
            phase3,
            evaluation,
            levels,
            seed,
            student,
            trained.evaluation,
            progress,
        )
        logs.append(trained.evaluation.episodes)
    summary = selection_summary(
        phase5, evaluation, lora, seed, run.phase4, runs, evaluations, len(split.train), pool
    )
    write_json(out.summary, summary.model_dump(mode="json"))
    save_phase_verdicts(run.verdicts, "phase5", summary.verdicts)
    return SelectionReport(runs, entries, evaluations, summary)


def all_episodes(evaluations: dict[SelectionMethod, Evaluation]) -> pd.DataFrame:
    """Every method's episodes in one frame, the base student's (shared by all) once."""
    frames = [evaluation.episodes for evaluation in evaluations.values()]
    episodes = pd.concat(frames, ignore_index=True)
    base = episodes["model"] == BASE
    first_base = episodes[base].drop_duplicates(subset=[c for c in episodes if c != "actions"])
    return pd.concat([first_base, episodes[~base]], ignore_index=True)


def negated(estimate: Estimate) -> Estimate:
    """-x with its interval turned round: a drop from a gain."""
    flip = {"value": estimate.value, "low": estimate.high, "high": estimate.low}
    return estimate.model_copy(update={name: None if v is None else -v for name, v in flip.items()})


def picked_labels(runs: Sequence[MatrixRun], oracle_ids: set[str]) -> PickedLabels:
    """What a method's runs picked, averaged over the runs."""
    rows = [row for run in runs for row in run.rows]
    return PickedLabels(
        mean_U=number(np.mean([row.U for row in rows])),
        mean_ELP_net=number(np.mean([row.cpt.ELP_net for row in rows])),
        mean_learnability=number(np.mean([RANKED_BY["learnability"](row) for row in rows])),
        oracle_overlap=number(np.mean([row.id in oracle_ids for row in rows])),
    )


def method_result(
    episodes: pd.DataFrame,
    runs: Sequence[MatrixRun],
    k: int,
    oracle_ids: set[str],
    resamples: int,
    seed: int,
) -> MethodResult:
    """One method's success, gains and retention drop over its runs."""
    ids = [run.id for run in runs]
    tasks = outcome_cube(episodes, ids, "tasks")
    played = tasks[~np.isnan(tasks)]
    base = np.nanmean(outcome_cube(episodes, [BASE], "tasks"))
    per_seed = {run_id: number(np.nanmean(tasks[i]) - base) for i, run_id in enumerate(ids)}
    return MethodResult(
        runs=ids,
        seeds=[run.seed for run in runs],
        k=k,
        success=wilson(int(played.sum()), len(played)),
        gain=paired_gain(episodes, ids, [BASE], "tasks", resamples, seed),
        snapshot_gain=paired_gain(episodes, ids, [BASE], "snapshots", resamples, seed),
        retention_drop=negated(paired_gain(episodes, ids, [BASE], "retention", resamples, seed)),
        per_seed_gain=per_seed,
        picked=picked_labels(runs, oracle_ids),
    )


def selection_verdicts(
    methods: dict[str, MethodResult], differences: dict[str, Estimate]
) -> list[Verdict]:
    """The plan's criteria, three-way: predictor > entropy and entropy > random on the gain
    (paired differences, seed by seed), and no method's retention drop above the limit."""
    verdicts = [
        judge(
            "phase5",
            f"{first}_beats_{second}",
            f"{first}-selected gains more than {second}-selected on held-out tasks",
            differences[f"{first}-{second}"],
            ">",
            0.0,
        )
        for first, second in ORDER
        if f"{first}-{second}" in differences
    ]
    verdicts += [
        judge(
            "phase5",
            f"retention_{method}",
            f"{method}-selected training drops retention success by less than "
            f"{RETENTION_DROP_LIMIT:.0%}",
            result.retention_drop,
            "<",
            RETENTION_DROP_LIMIT,
        )
        for method, result in methods.items()
    ]
    return verdicts


def selection_summary(
    phase5: Phase5Parameters,
    evaluation: EvaluationParameters,
    lora: LoraParameters,
    seed: int,
    phase4: Phase4Layout,
    runs: dict[SelectionMethod, list[MatrixRun]],
    evaluations: dict[SelectionMethod, Evaluation],
    n_train: int,
    pool: Sequence[LabeledSnapshot],
) -> SelectionSummary:
    """The `selection_summary.json` record: K, each method's result, the paired differences
    between methods and the verdicts."""
    k = min(phase5.budget, len(pool))
    oracle_ids = {row.id for row in select("oracle", pool, k)}
    episodes = all_episodes(evaluations)
    resamples = evaluation.bootstrap_resamples
    methods = {
        method: method_result(episodes, method_runs, k, oracle_ids, resamples, seed)
        for method, method_runs in runs.items()
    }
    differences = {
        f"{first}-{second}": paired_gain(
            episodes, methods[first].runs, methods[second].runs, "tasks", resamples, seed
        )
        for first, second in ORDER
        if first in methods and second in methods
    }
    return SelectionSummary(
        budget=phase5.budget,
        k=k,
        k_reduced=k < phase5.budget,
        pool_size=len(pool),
        train_snapshots=n_train,
        left_out_unlabeled=n_train - len(pool),
        format=phase5.format,
        lora=lora.model_dump(mode="json"),
        seeds=phase5.seeds,
        evaluation=evaluation.model_dump(mode="json"),
        predictor_seen_share=predictor_seen_share(phase4, pool),
        methods=methods,
        differences=differences,
        verdicts=selection_verdicts(methods, differences),
    )


def predictor_seen_share(phase4: Phase4Layout, pool: Sequence[LabeledSnapshot]) -> float | None:
    """Share of the pool from tasks the saved predictor trained on: its scores there are
    in-sample (None when Phase 4's result is not there)."""
    path = phase4.training_result
    if not path.is_file() or not pool:
        return None
    seen = set(PredictorResult.load(path).tasks)
    return number(np.mean([row.task in seen for row in pool]))
