"""Phase 2: the training matrix. One LoRA adapter per quadrant and supervision format, two
baselines and a shuffled-target control, each trained once per seed of `phase2.seeds`, all with
identical hyperparameters.

Phase 2 trains on the labeled snapshots, the `labeled` part of the run's split (`split.json`,
made by Phase 1); it does not split again, and refuses a snapshot of a task outside that part.
Phase 3 evaluates on the split's `test` part. Every cell trains on `phase2.n_train` snapshots
for the same number of steps, so cells differ in what they train on, not in how much:

- `<quadrant>_<format>`: `n_train` of the quadrant's snapshots, drawn per seed; the three
  formats of a quadrant share the draw, so they differ only by format. A quadrant with fewer
  snapshots is skipped, with its reason;
- `baseline_random_demo`: `n_train` of all labeled snapshots, drawn per seed;
- `baseline_all_demo`: every labeled snapshot (it and the control are the cells that train on
  more);
- `control_shuffled_demo`: `baseline_all_demo`'s rows and examples, with their targets permuted
  among the examples by a draw per seed, so it keeps the states, the mix of actions and the
  dose and loses only which action goes with which state; Phase 3 reports every gain over the
  base and over this control. With `demo_steps` > 1 the target of every step of the recovery
  trajectories is permuted, not only the snapshots' own: the control then trains on exactly
  `baseline_all_demo`'s states, and no true later action teaches the recovery it must not. A
  target may land on its own example by chance, as in any permutation; the permuted targets
  are part of the run's key. With fewer than 2 labeled snapshots it is skipped.

A run is one cell at one seed (`<cell>_seed<seed>`); the seed sets the LoRA initialization, the
data order and the draw. Each run is an independent unit of work (`models.training_runs`): its
adapter goes to `<run_id>/` and its entry to `training_summary.json` as soon as it finishes, and
a rerun keeps every run whose adapter and entry match what it would train now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from teachable.models.instrument import Instrument
from teachable.models.supervision import sft_targets
from teachable.models.training_runs import (
    MatrixRun,
    draw,
    is_finished,
    run_key,
    save_summary,
    trained_entries,
)
from teachable.models.workers import Workers
from teachable.parameters import LoraParameters, Phase2Parameters
from teachable.records.evaluation import CONTROL
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import TrainingLayout
from teachable.records.training_summary import RunEntry, TrainingSummary
from teachable.vocabulary import QUADRANTS
from teachable.world.splits import Split


def plan_matrix(
    train: Sequence[LabeledSnapshot], phase2: Phase2Parameters, seed: int
) -> list[MatrixRun]:
    """Every run, seed by seed in a fixed order: quadrants x `phase2.formats`, then the two
    baselines, then the shuffled-target control.
    The draws of seed `s` come from (run `seed`, `s`, which cell), whatever the other seeds."""
    n, steps = phase2.n_train, phase2.demo_steps
    targets = sft_targets(train, "demo", steps)
    runs = []
    for s in phase2.seeds:
        for index, quadrant in enumerate(QUADRANTS):
            rows = [row for row in train if row.quadrant == quadrant]
            if len(rows) < n:
                reason = (
                    f"{len(rows)} labeled snapshot(s) in {quadrant}, fewer than phase2.n_train={n}"
                )
                runs += [
                    MatrixRun(f"{quadrant}_{f}", s, quadrant, f, tuple(rows), reason)
                    for f in phase2.formats
                ]
                continue
            drawn = draw(rows, n, (seed, s, index))
            runs += [
                MatrixRun(f"{quadrant}_{f}", s, quadrant, f, drawn, demo_steps=steps)
                for f in phase2.formats
            ]
        runs.append(
            MatrixRun("baseline_all_demo", s, "all", "demo", tuple(train), demo_steps=steps)
        )
        if len(train) < n:
            reason = f"{len(train)} labeled snapshot(s), fewer than phase2.n_train={n}"
            runs.append(MatrixRun("baseline_random_demo", s, "random", "demo", (), reason))
        else:
            drawn = draw(train, n, (seed, s, len(QUADRANTS)))
            runs.append(
                MatrixRun("baseline_random_demo", s, "random", "demo", drawn, demo_steps=steps)
            )
        if len(train) < 2:
            reason = f"{len(train)} labeled snapshot(s): no other target to permute with"
            runs.append(MatrixRun(CONTROL, s, "shuffled", "demo", tuple(train), reason))
        else:
            order = np.random.default_rng((seed, s, len(QUADRANTS) + 1)).permutation(len(targets))
            shuffled = tuple(targets[i] for i in order)
            runs.append(
                MatrixRun(
                    CONTROL, s, "shuffled", "demo", tuple(train), demo_steps=steps, targets=shuffled
                )
            )
    return runs


@dataclass
class MatrixReport:
    """What `train_matrix` did: the snapshots it trained on, one entry per run and how many it
    trained now."""

    rows: list[LabeledSnapshot]
    entries: list[RunEntry]
    newly_trained: int


def train_matrix(
    rows: Sequence[LabeledSnapshot],
    phase2: Phase2Parameters,
    lora: LoraParameters,
    instrument: Instrument,
    seed: int,
    workers: Workers,
    out: TrainingLayout,
    run_name: str,
    split: Path,
    progress: bool = True,
) -> MatrixReport:
    """All of Phase 2 for the labeled `rows`, resumable, into `out`: the shared `lora` settings
    under Phase 2's overrides with the `instrument`'s cell dose, anchor and probes, the draws
    made with `seed`, and the losses logged under `run_name` where Weights & Biases is set up.
    Every row must lie in the labeled part of the run's split, saved at `split`, which the
    training summary names."""
    Split.load(split).check_within("labeled", rows, "phase 2")
    runs = plan_matrix(rows, phase2, seed)
    earlier = TrainingSummary.entries_in(out.training_summary)
    lora = phase2.over(lora)
    entries: dict[str, RunEntry] = {}
    pending = []
    for run in runs:
        if run.skip is not None:
            entries[run.id] = run.entry(status="skipped", reason=run.skip)
        elif is_finished(earlier.get(run.id), run_key(run, lora, instrument, workers.params), out):
            entries[run.id] = earlier[run.id]
        else:
            pending.append(run)

    def save() -> None:
        known = earlier | entries  # earlier entries of runs not trained yet survive a kill
        save_summary(out, lora, split, [known[r.id] for r in runs if r.id in known])

    save()
    for entry in trained_entries(
        workers, pending, lora, instrument, lambda _: out, run_name, "training matrix", progress
    ):
        entries[entry.id] = entry
        save()
    return MatrixReport(list(rows), [entries[run.id] for run in runs], len(pending))
