"""Training runs: one LoRA adapter trained on labeled snapshots in one supervision format at one
seed, the key that says whether a finished run is still the run asked for, and the summary its
entries go to. Phases 2 and 5 both train this way: each run is a unit of work, its adapter
published into its folder and its entry yielded as soon as it finishes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from teachable.models.instrument import Instrument
from teachable.models.student import Student, publish_folder
from teachable.models.supervision import sft_examples
from teachable.models.workers import Workers, WorkUnit, pack_folder, unpack_folder
from teachable.parameters import LoraParameters, StudentParameters
from teachable.records.adapter_probe import AdapterProbe
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import TrainingLayout
from teachable.records.training_summary import Cell, RunEntry, TrainingSummary
from teachable.vocabulary import Format


@dataclass(frozen=True)
class MatrixRun:
    """One training run: a cell (which snapshots, in which format) at one training seed. A run
    with a `skip` reason is listed but not trained; `demo_steps` is how many recovery actions
    per snapshot a format that follows the recovery trajectory trains on; `targets`, when set,
    are the actions its examples train toward in place of the expert's, in example order (a
    control's permuted targets)."""

    cell: str
    seed: int
    quadrant: Cell
    format: Format
    rows: tuple[LabeledSnapshot, ...]
    skip: str | None = None
    demo_steps: int = 1
    targets: tuple[str, ...] | None = None

    @property
    def id(self) -> str:
        return f"{self.cell}_seed{self.seed}"

    def entry(self, **outcome: object) -> RunEntry:
        """The run's row of the training summary, with what its training gave (`outcome`)."""
        return RunEntry(
            id=self.id,
            cell=self.cell,
            seed=self.seed,
            quadrant=self.quadrant,
            format=self.format,
            n_train=len(self.rows),
            snapshots=[row.id for row in self.rows],
            **outcome,
        )


def draw(rows: Sequence[LabeledSnapshot], n: int, seed: tuple[int, ...]) -> tuple:
    """`n` of `rows`, a seeded draw that keeps their order."""
    picked = np.random.default_rng(seed).choice(len(rows), n, replace=False)
    return tuple(rows[i] for i in sorted(picked))


def run_lora(run: MatrixRun, lora: LoraParameters) -> LoraParameters:
    """The shared hyperparameters with the run's seed as the LoRA seed."""
    return lora.model_copy(update={"seed": run.seed})


def run_key(
    run: MatrixRun, lora: LoraParameters, instrument: Instrument, student: StudentParameters
) -> str:
    """Everything that shapes a run's adapter, hashed: an entry with another key is retrained."""
    shaping = {
        "instrument": instrument.key(run.format),
        "format": run.format,
        "snapshots": [row.id for row in run.rows],
        "lora": run_lora(run, lora).model_dump(mode="json"),
        "student": student.model_dump(mode="json", exclude={"batch_size"}),
    }
    if run.demo_steps > 1:  # one step is the snapshot's own example, as every format trains
        shaping["demo_steps"] = run.demo_steps
    if run.targets is not None:
        shaping["targets"] = list(run.targets)
    return hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Training:
    """A unit of Phases 2 and 5: one run's adapter, trained with `lora` at the run's seed and
    with the instrument's dose, anchor and probes."""

    run: MatrixRun
    lora: LoraParameters
    instrument: Instrument


@dataclass(frozen=True)
class TrainedAdapter:
    """What a training unit hands back: the adapter's files, how its training went, and its
    drift and specificity at the probe states."""

    files: dict[str, bytes]
    losses: list[float]
    seconds: float
    steps: int
    probe: AdapterProbe


def train_adapter(student: Student, training: Training) -> TrainedAdapter:
    """The work of a training unit: a fresh adapter on the run's snapshots in its format."""
    run = training.run
    examples = sft_examples(
        run.rows, run.format, student.params.history, run.demo_steps, run.targets
    )
    lora, seen = run_lora(run, training.lora), {row.task for row in run.rows}
    with tempfile.TemporaryDirectory() as folder:
        result, probe = training.instrument.train(
            student, examples, run.format, lora, seen, Path(folder)
        )
        files = pack_folder(result.adapter_dir)
    return TrainedAdapter(files, result.losses, result.seconds, result.steps, probe)


def trained_entries(
    workers: Workers,
    runs: Sequence[MatrixRun],
    lora: LoraParameters,
    instrument: Instrument,
    out: Callable[[MatrixRun], TrainingLayout],
    group: str,
    desc: str,
    progress: bool,
) -> Iterator[RunEntry]:
    """Train `runs` as units with `lora`; as each ends, publish its adapter into its folder of
    `out(run)` and yield its entry (losses also go to Weights & Biases under `group`)."""
    units = (WorkUnit(run.id, Training(run, lora, instrument)) for run in runs)
    for unit, trained in workers.map(train_adapter, units, desc, len(runs), progress):
        run = unit.payload.run
        publish_folder(
            out(run).adapter(run.id), partial(unpack_folder, trained.files), replace=True
        )
        log_to_wandb(run, trained.losses, lora, group)
        yield run.entry(
            status="trained",
            adapter=run.id,
            losses=[round(loss, 6) for loss in trained.losses],
            seconds=round(trained.seconds, 2),
            steps=trained.steps,
            dose=instrument.dose(run.format),
            probe=trained.probe,
            key=run_key(run, lora, instrument, workers.params),
        )


def log_to_wandb(run: MatrixRun, losses: list[float], lora: LoraParameters, group: str) -> None:
    """Send the run's loss curve to Weights & Biases when `WANDB_PROJECT` is set and the
    optional `wandb` package is installed; nothing depends on it."""
    project = os.environ.get("WANDB_PROJECT")
    if not project or importlib.util.find_spec("wandb") is None:
        return
    import wandb

    config = {"format": run.format, "n_train": len(run.rows), **run_lora(run, lora).model_dump()}
    tracked = wandb.init(project=project, group=group, name=run.id, config=config, reinit=True)
    for step, loss in enumerate(losses):
        tracked.log({"loss": loss}, step=step)
    tracked.finish()


def is_finished(entry: RunEntry | None, key: str, out: TrainingLayout) -> bool:
    """Whether an earlier entry is this very run, with its adapter in place."""
    return (
        entry is not None
        and entry.status == "trained"
        and entry.key == key
        and (out.adapter(entry.adapter) / "adapter_config.json").is_file()
    )


def save_summary(
    out: TrainingLayout, lora: LoraParameters, split: Path, entries: Sequence[RunEntry]
) -> None:
    """Write the training summary of `out`: the runs, their hyperparameters and the split."""
    summary = TrainingSummary(
        lora=lora, split=os.path.relpath(split, out.folder), runs=list(entries)
    )
    summary.save(out.training_summary)
