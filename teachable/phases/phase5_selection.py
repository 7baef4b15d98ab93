"""Phase 5, the selection experiment (H7): which unlabeled snapshots should a fixed budget buy
the teacher's supervision for?

Each method picks `K` snapshots from the `pool` part of the run's split: snapshots Phase 1 never
labeled, of tasks no other part holds, so the predictor (trained on the labeled part) never saw
them. A pool row carries only what Phase 0 recorded (its state, the student's distribution, the
expert's action); no label field is read.

Each method is a `Selector` registered under its name (`models.selection`); the phase looks
it up, lets it buy its labels and score the pool, and picks:

- `random`: a seeded uniform draw, drawn anew for every training seed;
- `entropy`: the K with the highest U, read from the student's distribution recorded at the
  snapshot (`phase1.U_method`); no rollout;
- `predictor`: the K with the highest ELP_net that the Phase 4 predictor predicts from cheap
  observables; no rollout;
- `oracle`: the K with the highest measured ELP_net (an upper bound): it buys the CPT (the
  teacher's answer and Phase 1's CPT rollouts) for its candidates;
- `learnability`: the K with the highest p(1 - p), p the student's own success rate from the
  snapshot (Phase 1's `n_rollouts` base rollouts), a baseline from curriculum learning.

The candidates of `oracle` and `learnability` are `phase5.candidates` pool snapshots (one seeded
draw both share; the whole pool by default). Their labels are measured on the streams Phase 1
uses (so they equal what Phase 1 would measure), logged per method in `candidate_labels.jsonl`
(resumable while the labeling parameters stay the same), and their cost (rollouts, teacher
answers, seconds) goes into the summary. K is `phase5.budget`, lowered for every method to the
pool (or candidate) count when that is smaller, and the summary says so. Ties are broken by
snapshot id.

The teacher then answers every picked snapshot (its supervision), and each method trains once
per seed of `phase5.seeds` (LoRA initialization and data order; random also draws anew), with
the same hyperparameters (`lora`, with any value `phase5` sets in its place) in
`phase5.format`, and is evaluated like Phase 3 (`evaluate_runs`, on the split's test snapshots
and the `phase3` suites played as `evaluation` says) into `phase5/selection/<method>/`: its
`training_summary.json`, its adapters and `eval/`. The base student's episodes are the same for
every method: they are played once and shared between the methods' evaluation logs. A rerun
keeps finished runs, bought labels and logged episodes.

`selection_summary.json` gives each method's success gain over the base student on the held-out
tasks (and on the test snapshots) and its retention drop, each with a 95% hierarchical bootstrap
interval (seeds, items, episodes: every model played the same episodes), the paired differences
between methods (seed by seed), what the labels cost, and the plan's verdicts, three-way:
predictor > entropy, entropy > random on gain, and every method's retention drop below the
10-point limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from teachable.measure.gains import method_result, paired_gain, pooled_episodes
from teachable.measure.verdicts import judge
from teachable.models.conditions import stable_int, teacher_request
from teachable.models.evaluation import evaluate_runs
from teachable.models.instrument import Instrument
from teachable.models.labeling import in_groups, snapshot_uncertainty
from teachable.models.selection import (
    SELECTORS,
    CandidateRollouts,
    Pool,
    Scores,
    candidate_outcomes,
    label_buyer,
    labeling_key,
    picked_labels,
    select,
    selector,
)
from teachable.models.teachers import Teacher
from teachable.models.training_runs import (
    MatrixRun,
    is_finished,
    run_key,
    save_summary,
    trained_entries,
)
from teachable.models.workers import Workers, WorkUnit
from teachable.parameters import (
    EvaluationParameters,
    LoraParameters,
    Phase1Parameters,
    Phase3Parameters,
    Phase5Parameters,
)
from teachable.records.estimate import Estimate
from teachable.records.evaluation import RETENTION_DROP_LIMIT, Evaluation
from teachable.records.labeled import LabeledSnapshot, load_labeled
from teachable.records.layout import MethodLayout, Phase5Layout, RunLayout
from teachable.records.selection import (
    CandidateLabel,
    LabelingCost,
    MethodResult,
    SelectionSummary,
)
from teachable.records.snapshot import Snapshot
from teachable.records.store import append_jsonl, read_jsonl, write_json, write_jsonl
from teachable.records.training_summary import BASE, RunEntry, TrainingSummary
from teachable.records.verdicts import Verdict, save_phase_verdicts
from teachable.vocabulary import SelectionMethod
from teachable.world.replay import phase0_snapshots
from teachable.world.splits import Split

ORDER = (("predictor", "entropy"), ("entropy", "random"))  # the plan's order on gain


def candidate_draw(pool: Sequence[Snapshot], size: int | None, seed: int) -> list[Snapshot]:
    """The pool snapshots the label-buying methods label and rank, in id order: a seeded draw
    of `size` (the whole pool when null or no smaller than it)."""
    ordered = sorted(pool, key=lambda row: row.id)
    if size is None or size >= len(ordered):
        return ordered
    draw = np.random.default_rng((seed, stable_int("phase5 candidates")))
    return [ordered[i] for i in sorted(draw.choice(len(ordered), size, replace=False))]


def buy_labels(
    method: SelectionMethod,
    candidates: Sequence[Snapshot],
    phase1: Phase1Parameters,
    seed: int,
    workers: Workers,
    teacher: Teacher,
    log: Path,
    progress: bool = False,
) -> tuple[dict[str, CandidateLabel], LabelingCost]:
    """The method's label of every candidate, resumable: labels logged with the same labeling
    parameters are kept, the rest measured `phase1.batch_snapshots` at a time (a unit each) and
    appended as each group completes; the log is rewritten with the candidates' labels alone at
    the end. Returns the labels by id and what they cost."""
    buyer = label_buyer(method)
    key = labeling_key(phase1, seed, workers.params, teacher)
    logged = {}
    for row in read_jsonl(log):
        label = CandidateLabel.model_validate(row)
        if label.key == key:
            logged[label.id] = label
    pending = [snapshot for snapshot in candidates if snapshot.id not in logged]
    groups = in_groups(pending, phase1.batch_snapshots)
    plans = {group[0].id: buyer.plans(group, phase1, teacher) for group in groups}
    units = (
        WorkUnit(first, CandidateRollouts(tuple(c for p in plan for c in p), phase1, seed))
        for first, plan in plans.items()
    )
    desc = f"{method} labels"
    for unit, (results, seconds) in workers.map(
        candidate_outcomes, units, desc, len(groups), progress
    ):
        for label in buyer.labels(plans[unit.id], results, seconds, key):
            append_jsonl(log, label.model_dump(mode="json"))
            logged[label.id] = label
    labels = {snapshot.id: logged[snapshot.id] for snapshot in candidates}
    write_jsonl(log, [label.model_dump(mode="json") for label in labels.values()])
    cost = LabelingCost(
        candidates=len(labels),
        bought_now=len(pending),
        rollouts=sum(label.rollouts for label in labels.values()),
        teacher_answers=sum(label.teacher_answers for label in labels.values()),
        seconds=round(sum(label.seconds for label in labels.values()), 3),
    )
    return labels, cost


def budget_k(phase5: Phase5Parameters, pool: int, candidates: int) -> int:
    """K: the budget, lowered to the pool, and to the candidates when a method buys labels."""
    buying = any(selector(method).buys_labels for method in phase5.methods)
    return min(phase5.budget, pool, candidates if buying else pool)


def plan_selections(
    phase5: Phase5Parameters,
    pool: Sequence[Snapshot],
    candidates: Sequence[Snapshot],
    scores: Mapping[SelectionMethod, Scores | None],
    seed: int,
) -> dict[SelectionMethod, list[list[Snapshot]]]:
    """Each method's picks per training seed (random draws from (run `seed`, training seed);
    the others pick the same at every seed): K each, the label-buying methods among their
    candidates."""
    if not pool:
        raise ValueError("the split's pool holds no snapshot: nothing to select from")
    k = budget_k(phase5, len(pool), len(candidates))
    return {
        method: [
            select(
                method,
                candidates if selector(method).buys_labels else pool,
                k,
                scores.get(method),
                (seed, s),
            )
            for s in phase5.seeds
        ]
        for method in phase5.methods
    }


def supervised(
    picks: Mapping[SelectionMethod, list[list[Snapshot]]],
    teacher: Teacher,
    phase1: Phase1Parameters,
) -> dict[str, LabeledSnapshot]:
    """Every picked snapshot with the teacher's answer (its supervision) and its recorded U,
    by id; nothing else is measured."""
    chosen = {row.id: row for seeds in picks.values() for rows in seeds for row in rows}
    rows = list(chosen.values())
    answers = teacher.advise([teacher_request(row) for row in rows])
    return {
        row.id: LabeledSnapshot.of(row).model_copy(
            update={
                "teacher": answer,
                "U": snapshot_uncertainty(row, phase1.U_method),
                "U_method": phase1.U_method,
            }
        )
        for row, answer in zip(rows, answers, strict=True)
    }


def training_runs(
    phase5: Phase5Parameters,
    picks: Mapping[SelectionMethod, list[list[Snapshot]]],
    rows: Mapping[str, LabeledSnapshot],
) -> dict[SelectionMethod, list[MatrixRun]]:
    """Each method's runs, one per training seed, on its picks with their supervision."""
    return {
        method: [
            MatrixRun(
                method,
                s,
                method,
                phase5.format,
                tuple(rows[row.id] for row in picked),
                demo_steps=phase5.demo_steps,
            )
            for s, picked in zip(phase5.seeds, seeds, strict=True)
        ]
        for method, seeds in picks.items()
    }


def train_methods(
    workers: Workers,
    runs: Mapping[SelectionMethod, Sequence[MatrixRun]],
    lora: LoraParameters,
    instrument: Instrument,
    out: Phase5Layout,
    split: Path,
    group: str,
    progress: bool,
) -> dict[SelectionMethod, list[RunEntry]]:
    """Train every method's runs with `lora` and the `instrument`, one unit per method and seed,
    into the method's folder of `out` (keeping finished ones), and write each method's summary
    as its runs end; losses go to Weights & Biases under `group` where it is set up."""
    method_of = {run.id: method for method, method_runs in runs.items() for run in method_runs}
    entries: dict[SelectionMethod, dict[str, RunEntry]] = {}
    pending = []
    for method, method_runs in runs.items():
        trained = out.method(method)
        earlier = TrainingSummary.entries_in(trained.training_summary)
        entries[method] = {
            run.id: earlier[run.id]
            for run in method_runs
            if is_finished(
                earlier.get(run.id), run_key(run, lora, instrument, workers.params), trained
            )
        }
        pending += [run for run in method_runs if run.id not in entries[method]]

    def save(method: SelectionMethod) -> None:
        done = [entries[method][run.id] for run in runs[method] if run.id in entries[method]]
        save_summary(out.method(method), lora, split, done)

    for method in runs:
        save(method)

    def layout(run: MatrixRun) -> MethodLayout:
        return out.method(method_of[run.id])

    for entry in trained_entries(
        workers, pending, lora, instrument, layout, group, "selection training", progress
    ):
        entries[method_of[entry.id]][entry.id] = entry
        save(method_of[entry.id])
    return {
        method: [entries[method][run.id] for run in method_runs]
        for method, method_runs in runs.items()
    }


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
    summary: SelectionSummary


@dataclass
class Bought:
    """The labels the label-buying methods bought for their candidates, and their cost."""

    candidates: list[Snapshot]
    labels: dict[SelectionMethod, dict[str, CandidateLabel]]
    costs: dict[SelectionMethod, LabelingCost]


def buy_all_labels(
    phase5: Phase5Parameters,
    phase1: Phase1Parameters,
    pool: Sequence[Snapshot],
    seed: int,
    workers: Workers,
    teacher: Teacher,
    out: RunLayout,
    progress: bool,
) -> Bought:
    """The candidates and the labels each label-buying method of `phase5.methods` buys."""
    candidates = candidate_draw(pool, phase5.candidates, seed)
    labels, costs = {}, {}
    buyers = [name for name in SELECTORS if name in phase5.methods and selector(name).buys_labels]
    for method in buyers:
        log = out.phase5.method(method).candidate_labels
        labels[method], costs[method] = buy_labels(
            method, candidates, phase1, seed, workers, teacher, log, progress
        )
    return Bought(candidates, labels, costs)


def run_selection(
    phase5: Phase5Parameters,
    phase1: Phase1Parameters,
    phase3: Phase3Parameters,
    evaluation: EvaluationParameters,
    lora: LoraParameters,
    instrument: Instrument,
    levels: Sequence[str],
    seed: int,
    workers: Workers,
    teacher: Teacher,
    run: RunLayout,
    progress: bool = True,
) -> SelectionReport:
    """All of Phase 5, resumable: select from the pool of the run's split (entropy from the recorded
    distributions, the predictor's scores, labels bought for the candidates), give the picks the
    teacher's supervision, train each method once per seed with the shared `lora` settings under
    Phase 5's overrides and the `instrument`'s cell dose, anchor and probes, evaluate on the split's
    test snapshots and Phase 3's suites as `evaluation` says, and write everything into the run's
    Phase 5 folder and its verdicts into the run's `verdicts.json`. Phase 1's parameters say how U
    is read and how many rollouts a bought label takes."""
    out = run.phase5
    split = Split.load(run.split)
    pool = split.rows("pool", phase0_snapshots(split.sources, run.phase0))
    bought = buy_all_labels(phase5, phase1, pool, seed, workers, teacher, run, progress)
    ranked = Pool(pool, phase1.U_method, run.phase4.predictor_model)
    scores = {
        method: selector(method).scores(ranked, bought.labels.get(method, {}))
        for method in phase5.methods
    }
    picks = plan_selections(phase5, pool, bought.candidates, scores, seed)
    runs = training_runs(phase5, picks, supervised(picks, teacher, phase1))
    test = load_labeled(run.phase1, "test")
    lora = phase5.over(lora)
    entries = train_methods(
        workers, runs, lora, instrument, out, run.split, run.folder.name, progress
    )
    evaluations, logs = {}, []
    for method in runs:
        trained = out.method(method)
        share_base_episodes(logs, trained.evaluation.episodes)
        evaluations[method] = evaluate_runs(
            trained,
            test,
            phase3,
            evaluation,
            levels,
            seed,
            workers,
            trained.evaluation,
            progress,
        )
        logs.append(trained.evaluation.episodes)
    summary = selection_summary(phase5, evaluation, lora, runs, evaluations, len(pool), bought)
    write_json(out.summary, summary.model_dump(mode="json"))
    save_phase_verdicts(run.verdicts, "phase5", summary.verdicts)
    return SelectionReport(runs, entries, evaluations, summary)


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
    runs: dict[SelectionMethod, list[MatrixRun]],
    evaluations: dict[SelectionMethod, Evaluation],
    pool_size: int,
    bought: Bought,
) -> SelectionSummary:
    """The `selection_summary.json` record: K, the labels' cost, each method's result, the
    paired differences between methods and the verdicts."""
    k = budget_k(phase5, pool_size, len(bought.candidates))
    oracle_ids = None
    if "oracle" in runs:
        oracle_ids = {row.id for row in runs["oracle"][0].rows}
    episodes = pooled_episodes(evaluations.values())
    methods = {
        method: method_result(
            episodes,
            [run.id for run in method_runs],
            [run.seed for run in method_runs],
            k,
            picked_labels(method_runs, bought.labels, oracle_ids),
        )
        for method, method_runs in runs.items()
    }
    differences = {
        f"{first}-{second}": paired_gain(
            episodes, methods[first].runs, methods[second].runs, "tasks"
        )
        for first, second in ORDER
        if first in methods and second in methods
    }
    return SelectionSummary(
        budget=phase5.budget,
        k=k,
        k_reduced=k < phase5.budget,
        pool_size=pool_size,
        candidates=len(bought.candidates),
        labeling_cost=bought.costs,
        format=phase5.format,
        lora=lora.model_dump(mode="json"),
        seeds=phase5.seeds,
        evaluation=evaluation.model_dump(mode="json"),
        methods=methods,
        differences=differences,
        verdicts=selection_verdicts(methods, differences),
    )
