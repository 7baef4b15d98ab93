"""Phase 5, the selection experiment (H7): which training data should a fixed budget buy?

From the train side of the Phase 2 split, each method picks `K = phase5.budget` snapshots:

- `random`: a seeded uniform draw, once per seed of `phase5.random_seeds`;
- `entropy`: the K with the highest U, the student's uncertainty;
- `predictor`: the K with the highest ELP_net predicted by the Phase 4 predictor from the cheap
  fields alone;
- `oracle`: the K with the highest measured ELP_net (an upper bound: it needs the rollouts);
- `learnability`: the K with the highest p(1 - p), p the student's own success rate from the
  snapshot (`leverage.p_student`): the states it solves about half of the time, a baseline from
  curriculum learning.

Ties are broken by snapshot id. The pool is the train snapshots that carry every label (U,
leverage, CPT), so all methods choose among the same snapshots; a pool smaller than the budget
lowers K for every method, and the summary says so. Each pick trains one LoRA run with the same
hyperparameters (`lora`, with any value `phase5` sets in its place) in `phase5.format`, and is
evaluated like Phase 3 (`evaluate_runs`, with the `phase3` counts) into
`phase5/selection/<method>/`: its `training_summary.json`, its adapters and `eval/`. The base
student's episodes are the same for every method: they are played once and shared between the
methods' evaluation logs. A rerun keeps finished runs and logged episodes.

`selection_summary.json` gives each method's success gain over the base student on the held-out
tasks (and on the test snapshots), with a 95% paired bootstrap interval over the items both
played, its retention drop, and the plan's verdicts: predictor > entropy > random on gain, and
no method forgetting more than the 10-point retention limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from teachable.models.student import Student
from teachable.parameters import (
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
)
from teachable.phases.phase4_predictor import Predictor, PredictorResult
from teachable.records.labeled import LabeledSnapshot, load_labeled
from teachable.records.layout import MethodLayout, Phase4Layout, RunLayout
from teachable.records.store import read_jsonl, write_json, write_jsonl
from teachable.records.training_summary import BASE, RunEntry, TrainingSummary
from teachable.world.splits import load_split

SUITES = ("tasks", "snapshots")  # held-out tasks (the verdicts' suite) and test snapshots


CONFIDENCE = 0.95


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
    seed: int = 0,
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


def run_id(method: SelectionMethod, seed: int | None) -> str:
    return method if seed is None else f"{method}_seed{seed}"


def plan_selections(
    phase5: Phase5Parameters,
    pool: Sequence[LabeledSnapshot],
    predictions: pd.DataFrame | None = None,
) -> dict[SelectionMethod, list[MatrixRun]]:
    """Each method's runs (one, or one per random seed), each on exactly K = min(budget, pool)
    snapshots in the chosen format."""
    if not pool:
        raise ValueError("no train snapshot carries U, leverage and CPT labels: nothing to select")
    k = min(phase5.budget, len(pool))
    plans = {}
    for method in phase5.methods:
        seeds = phase5.random_seeds if method == "random" else [None]
        plans[method] = [
            MatrixRun(
                run_id(method, seed),
                method,
                phase5.format,
                tuple(select(method, pool, k, predictions, seed or 0)),
            )
            for seed in seeds
        ]
    return plans


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


@dataclass
class SelectionReport:
    """What `run_selection` did: each method's runs, entries and evaluation, and the summary."""

    runs: dict[SelectionMethod, list[MatrixRun]]
    entries: dict[SelectionMethod, list[RunEntry]]
    evaluations: dict[SelectionMethod, Evaluation]
    summary: dict


def run_selection(
    phase5: Phase5Parameters,
    phase3: Phase3Parameters,
    lora: LoraParameters,
    levels: Sequence[str],
    seed: int,
    student: Student,
    run: RunLayout,
    progress: bool = True,
) -> SelectionReport:
    """All of Phase 5, resumable: select from the run's Phase 2 train side (ranked by the
    Phase 4 predictor where asked), train each pick with the shared `lora` settings under
    Phase 5's overrides, evaluate with Phase 3's suite on the training `levels`, and write
    everything into the run's Phase 5 folder."""
    out = run.phase5
    split_path = run.phase2.split
    labeled = load_labeled(run.phase1)
    split = load_split(split_path, labeled)
    pool, left_out = labeled_pool(split.train)
    predictions = None
    if pool and "predictor" in phase5.methods:
        predictions = predicted_scores(run.phase4, pool)
    runs = plan_selections(phase5, pool, predictions)
    lora = phase5.over(lora)
    entries, evaluations, logs = {}, {}, []
    for method, method_runs in tqdm(runs.items(), desc="selection", disable=not progress):
        trained = out.method(method)
        entries[method] = train_method(
            student, method_runs, lora, trained, split_path, run.folder.name
        )
        share_base_episodes(logs, trained.evaluation.episodes)
        evaluations[method] = evaluate_runs(
            trained, labeled, phase3, levels, seed, student, trained.evaluation, progress
        )
        logs.append(trained.evaluation.episodes)
    summary = selection_summary(
        phase5, lora, seed, run.phase4, runs, evaluations, len(split.train), left_out, pool
    )
    write_json(out.summary, summary)
    return SelectionReport(runs, entries, evaluations, summary)


def _number(value: float | None) -> float | None:
    """A JSON-ready float: None for a missing value or NaN."""
    return None if value is None or np.isnan(value) else round(float(value), 6)


def outcome_table(evaluation: Evaluation, suite: str) -> pd.DataFrame:
    """Success (1 or 0) per item of a suite (rows, by key) and model (columns)."""
    played = evaluation.episodes[evaluation.episodes["suite"] == suite]
    return played.assign(success=played["success"].astype(float)).pivot_table(
        index="key", columns="model", values="success", aggfunc="mean"
    )


def paired_gain(base: np.ndarray, trained: np.ndarray, resamples: int, seed: int) -> dict:
    """Mean success gain over the base on the items both played, with a percentile bootstrap
    interval that resamples the items (the pairs stay together)."""
    base, trained = np.asarray(base, dtype=float), np.asarray(trained, dtype=float)
    gain = {"n": len(base), "base_success_rate": None, "success_rate": None, "gain": None}
    gain |= {"ci_low": None, "ci_high": None}
    if not len(base):
        return gain
    difference = trained - base
    draws = np.random.default_rng(seed).integers(0, len(base), size=(resamples, len(base)))
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(difference[draws].mean(axis=1), [tail, 100 - tail])
    gain |= {
        "base_success_rate": _number(base.mean()),
        "success_rate": _number(trained.mean()),
        "gain": _number(difference.mean()),
        "ci_low": _number(low),
        "ci_high": _number(high),
    }
    return gain


def method_gain(
    evaluation: Evaluation, run_ids: Sequence[str], suite: str, resamples: int, seed: int
) -> dict:
    """A method's gain on a suite; with several runs (random seeds) each item's success is
    averaged over the runs first, and each run's own gain and their spread are added."""
    table = outcome_table(evaluation, suite)
    if table.empty:
        return paired_gain(np.array([]), np.array([]), resamples, seed)
    base = table[BASE].to_numpy()
    gain = paired_gain(base, table[list(run_ids)].mean(axis=1).to_numpy(), resamples, seed)
    if len(run_ids) > 1:
        per_run = {run: float(table[run].mean() - base.mean()) for run in run_ids}
        gain["per_run"] = {run: _number(value) for run, value in per_run.items()}
        gain["spread_std"] = _number(np.std(list(per_run.values()), ddof=1))
    return gain


def method_retention(evaluation: Evaluation, run_ids: Sequence[str]) -> dict:
    """Success on the retention set (tasks the base solves) before and after, averaged over
    the method's runs, and whether the drop passes the 10-point limit."""
    overall = evaluation.retention[evaluation.retention["level"] == "all"].set_index("model")
    runs = overall.loc[list(run_ids)]
    drop = _number(runs["drop"].mean())
    retention = {
        "n_tasks": int(runs["n_tasks"].max()),
        "before": _number(runs["before"].mean()),
        "after": _number(runs["after"].mean()),
        "drop": drop,
        "drop_flag": None if drop is None else drop > RETENTION_DROP_LIMIT,
    }
    if len(run_ids) > 1:
        retention["per_run"] = {run: _number(runs.loc[run, "drop"]) for run in run_ids}
    return retention


def picked_labels(runs: Sequence[MatrixRun], oracle_ids: set[str]) -> dict:
    """What a method picked, averaged over its runs: mean U, measured ELP_net, p(1 - p), and
    the share of its picks the oracle also picked."""
    rows = [row for run in runs for row in run.rows]
    return {
        "mean_U": _number(np.mean([row.U for row in rows])),
        "mean_ELP_net": _number(np.mean([row.cpt.ELP_net for row in rows])),
        "mean_learnability": _number(np.mean([RANKED_BY["learnability"](row) for row in rows])),
        "oracle_overlap": _number(np.mean([row.id in oracle_ids for row in rows])),
    }


def ahead(gains: dict[str, float | None], first: str, second: str) -> dict:
    """Whether `first` gains strictly more than `second`; None when one was not measured."""
    a, b = gains.get(first), gains.get(second)
    passed = None if a is None or b is None else a > b
    difference = None if passed is None else _number(a - b)
    return {"passed": passed, first: a, second: b, "difference": difference}


def verdicts(methods: dict[str, dict]) -> dict:
    """The plan's pass criteria: predictor > entropy > random on the held-out tasks' gain, and
    no method's retention drop above the 10-point limit."""
    gains = {method: record["tasks"]["gain"] for method, record in methods.items()}
    drops = {method: record["retention"]["drop"] for method, record in methods.items()}
    known = [drop for drop in drops.values() if drop is not None]
    comparable = None if len(known) < len(drops) else max(known) <= RETENTION_DROP_LIMIT
    checks = {
        "predictor_beats_entropy": ahead(gains, "predictor", "entropy"),
        "entropy_beats_random": ahead(gains, "entropy", "random"),
        "retention_comparable": {
            "passed": comparable,
            "limit": RETENTION_DROP_LIMIT,
            "largest_drop": max(known) if known else None,
            "drops": drops,
        },
    }
    return {**checks, "passed": all(check["passed"] is True for check in checks.values())}


def predictor_seen_share(phase4: Phase4Layout, pool: Sequence[LabeledSnapshot]) -> float | None:
    """Share of the pool from tasks the predictor trained or picked its epoch on: its scores
    there are in-sample (None when Phase 4's result is not there)."""
    path = phase4.training_result
    if not path.is_file() or not pool:
        return None
    tasks = PredictorResult.load(path).tasks
    seen = {tuple(task) for split in ("train", "validation") for task in tasks[split]}
    return _number(np.mean([row.task in seen for row in pool]))


def selection_summary(
    phase5: Phase5Parameters,
    lora: LoraParameters,
    seed: int,
    phase4: Phase4Layout,
    runs: dict[SelectionMethod, list[MatrixRun]],
    evaluations: dict[SelectionMethod, Evaluation],
    n_train: int,
    left_out: Sequence[str],
    pool: Sequence[LabeledSnapshot],
) -> dict:
    """The `selection_summary.json` record: K, each method's gains, retention and picks, and
    the verdicts."""
    k = min(phase5.budget, len(pool))
    oracle_ids = {row.id for row in select("oracle", pool, k)}
    methods = {}
    for method, method_runs in runs.items():
        ids = [run.id for run in method_runs]
        evaluation = evaluations[method]
        gains = {
            suite: method_gain(evaluation, ids, suite, phase5.bootstrap_resamples, seed)
            for suite in SUITES
        }
        methods[method] = {
            "runs": ids,
            "k": k,
            **gains,
            "retention": method_retention(evaluation, ids),
            "picked": picked_labels(method_runs, oracle_ids),
        }
    return {
        "budget": phase5.budget,
        "k": k,
        "k_reduced": k < phase5.budget,
        "pool_size": len(pool),
        "train_snapshots": n_train,
        "left_out_unlabeled": len(left_out),
        "format": phase5.format,
        "lora": lora.model_dump(mode="json"),
        "random_seeds": phase5.random_seeds,
        "interval": (
            f"{CONFIDENCE:.0%} percentile bootstrap of the mean paired gain over the suite's "
            f"items ({phase5.bootstrap_resamples} resamples); random averages each item's "
            "success over its seeds first"
        ),
        "predictor_seen_share": predictor_seen_share(phase4, pool),
        "methods": methods,
        "verdicts": verdicts(methods),
    }
