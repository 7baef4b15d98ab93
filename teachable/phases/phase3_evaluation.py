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
means of paired differences (`measure.intervals.hierarchical_mean`: over several seeds the
crossed seeds x items t, for one run Tango's score interval), each with its n (`<figure>_n`,
the paired episodes it rests on) given as its parts (`<figure>_seeds`, `_items`, `_episodes`)
and its discordant pairs (`<figure>_discordant`).

Phase 2's `control_shuffled_demo` is evaluated like any cell. The overall and per-quadrant tables
give every other run and cell, beside its gain over the base (`gain`), its gain over the
control (`gain_vs_control`): its runs against the control's runs of the same training seeds,
episode by episode on the same streams. The control's own rows, the base's, and every row when
Phase 2 skipped the control, have none; what a cell gains over the control is what its right
targets add to training on the same dose.

All of a model's episodes of one mode go through one `run_episodes` call, so the scorer sees
one large batch per step; trained runs are LoRA adapters loaded over the one shared base. Each
model is one unit of the workers `execution` names (an adapter travels to them as its files'
bytes); the driver appends its episodes to `model_episodes.jsonl` as soon as it finishes, keyed
by everything that shapes them, so a rerun evaluates only the models not done yet, and the
base's episodes can be shared between evaluations of the same items. Loops, steps without
progress and timeouts are defined in `measure.stuckness`.

This module runs the phase and judges its verdicts; playing the models is `models.evaluation`,
the tables are `measure.gains`, `measure.transfer` and `measure.stuckness`, and the record they
make is `records.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from teachable.measure.gains import (
    COMPARED_QUADRANTS,
    estimate_in,
    over_control,
)
from teachable.measure.verdicts import judge
from teachable.models.evaluation import evaluate_runs
from teachable.models.workers import Workers
from teachable.parameters import EvaluationParameters, Phase3Parameters
from teachable.records.estimate import Estimate
from teachable.records.evaluation import CONTROL, RETENTION_DROP_LIMIT, Evaluation
from teachable.records.labeled import load_labeled
from teachable.records.layout import RunLayout
from teachable.records.verdicts import Verdict, save_phase_verdicts

PHASE = "phase3"


@dataclass
class MatrixEvaluation:
    """Phase 3's result: the evaluation of the matrix's runs and the verdicts judged on it."""

    evaluation: Evaluation
    verdicts: list[Verdict]


def phase3_verdicts(evaluation: Evaluation) -> list[Verdict]:
    """The plan's Phase 3 criteria, each read three-way from its interval: every trained cell
    gains over the base on the held-out tasks, and over the shuffled-target control where it
    was trained, every format's transfer diagonal is ahead of its off-diagonal, every cell's
    retention drop stays under 10 points, and the Q1 cells gain more than the Q2 cells."""
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
    verdicts += [
        judge(
            PHASE,
            f"{row['cell']} gain over {CONTROL}",
            "success on the held-out tasks above the shuffled-target control's, paired by seed "
            "(the right targets, not the training itself, make the gain)",
            estimate_in(row, "gain_vs_control"),
            ">",
            0.0,
        )
        for _, row in over_control(cells).iterrows()
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


def evaluate_matrix(
    *,
    layout: RunLayout,
    phase3: Phase3Parameters,
    evaluation: EvaluationParameters,
    levels: Sequence[str],
    seed: int,
    workers: Workers,
    progress: bool = True,
) -> MatrixEvaluation:
    """Evaluate the workers' base student and every run Phase 2 trained on the held-out tasks
    of the training `levels`, Phase 1's test snapshots and the retention tasks; write the
    tables into Phase 3's folder and the verdicts into the run's verdicts file."""
    result = evaluate_runs(
        layout.phase2,
        load_labeled(layout.phase1, "test"),
        phase3,
        evaluation,
        levels,
        seed,
        workers,
        layout.phase3,
        progress,
    )
    verdicts = phase3_verdicts(result)
    save_phase_verdicts(layout.verdicts, PHASE, verdicts)
    return MatrixEvaluation(result, verdicts)
