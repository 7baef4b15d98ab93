"""The training dose on a real run's student and snapshots: drift and specificity of the old
unanchored doses against the dose Phase 1A chose, with true and with shuffled targets, for a
one-snapshot micro-training and an `n_train`-snapshot cell.

Reads a run folder whose Phases 0, 1 and 1A have run: its prepared student, labeled snapshots,
anchor and probe states, and the doses `dose.json` chose (on the calibration half of the probes,
in the demo format). Each dose is trained at each of `--seeds` on snapshots Phase 1A did not
choose on, with true and with shuffled targets, and reported on the check half of the probes: drift
(KL per probe state), specificity, the change of log pi(target) at the trained states and of
log pi(a*) at the labeled and at the retention probe states, each with its 95% interval and n.

    .venv/bin/python benchmarks/training_dose.py --run runs/pilot [--snapshots 4]
        [--n-train 10] [--anchor-per-step 8] [--seeds 1 2 3] [--also cell:1e-3,12,5 ...]
        [--rows also] [--kinds micro]

`--also KIND:LR,STEPS,ANCHOR` measures a further dose of that kind beside the old and the
chosen one (a dose the run's grid did not hold); `--rows` keeps only some of the three, and
`--kinds` some of the two kinds.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from teachable.measure.specificity import drift_and_specificity
from teachable.models.dose_calibration import (
    Measurement,
    ProbedTraining,
    Trainee,
    calibration_rows,
    measurement,
    probe_training,
)
from teachable.models.micro_training import control_target
from teachable.models.student import Student
from teachable.models.workers import torch_threads
from teachable.parameters import LoraParameters
from teachable.phases.phase0_warmup import load_prepared_student
from teachable.records.adapter_probe import AdapterProbe
from teachable.records.dose import Dose, DoseCalibration, load_reference_states
from teachable.records.labeled import load_labeled
from teachable.records.layout import RunLayout

OLD = {  # the doses the pilot and the mini trained with before the instrument was calibrated
    "micro": Dose(learning_rate=1e-3, steps=4, anchor_weight=0.0),
    "cell": Dose(learning_rate=5e-4, steps=10, anchor_weight=0.0),
}


def shuffled(unit: ProbedTraining, seed: int) -> ProbedTraining:
    """The same training with wrong targets: a wrong action for a single snapshot (as Phase
    1B's control), the targets permuted among the snapshots of a cell (as Phase 2's)."""
    rows = unit.rows
    if len(rows) == 1:
        return replace(unit, targets=(control_target(rows[0], seed),))
    order = np.random.default_rng(seed).permutation(len(rows))
    return replace(unit, targets=tuple(rows[i].expert_action for i in order))


def extra_dose(text: str) -> tuple[str, Dose]:
    """`cell:1e-3,12,5` as the kind and its dose."""
    kind, _, numbers = text.partition(":")
    rate, steps, anchor = numbers.split(",")
    return kind, Dose(learning_rate=float(rate), steps=int(steps), anchor_weight=float(anchor))


def pooled(
    measured: Measurement, student: Student, shuffle: bool
) -> tuple[AdapterProbe, AdapterProbe]:
    """Drift and specificity over the measurement's trainings, and the same at the retention
    probe states alone."""
    units = [shuffled(unit, 0) if shuffle else unit for unit in measured.units]
    results = [probe_training(student, replace(unit, retention=True)) for unit in units]
    overall = drift_and_specificity(measured.by_seed([result.changes for result in results]))
    return overall, drift_and_specificity(measured.by_seed([r.retention for r in results]))


def machine() -> str:
    """The CPU's model name and its vector extensions that matter for torch on CPU."""
    path = Path("/proc/cpuinfo")
    fields = dict(
        line.split(":", 1)
        for line in (path.read_text() if path.is_file() else "").splitlines()
        if ":" in line
    )
    model = fields.get("model name\t", "").strip()
    flags = fields.get("flags\t\t", "").split()
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model or platform.machine()} ({', '.join(wanted) or 'no AVX2'})"


def line(kind: str, label: str, targets: str, probe: AdapterProbe, retention: AdapterProbe) -> str:
    return (
        f"| {kind} | {label} | {targets} | {probe.drift.text()} | {probe.specificity.text()} | "
        f"{probe.target_change.text(2)} | {probe.expert_change.text(2)} | "
        f"{retention.expert_change.text(2)} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder past Phase 1A")
    parser.add_argument("--snapshots", type=int, default=4, help="snapshots trained alone")
    parser.add_argument("--n-train", type=int, default=10, help="snapshots of a cell")
    parser.add_argument("--anchor-per-step", type=int, default=8, help="anchor states a step")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1], help="LoRA seeds each dose is trained at"
    )
    parser.add_argument(
        "--also", type=extra_dose, nargs="*", default=[], help="KIND:LR,STEPS,ANCHOR doses"
    )
    parser.add_argument(
        "--rows",
        nargs="*",
        choices=("old", "chosen", "also"),
        default=("old", "chosen", "also"),
        help="which doses to measure",
    )
    parser.add_argument(
        "--kinds",
        nargs="*",
        choices=("micro", "cell"),
        default=("micro", "cell"),
        help="which kinds of training to measure",
    )
    args = parser.parse_args()
    run = RunLayout(args.run.resolve())
    student = load_prepared_student(run.phase0)
    anchors = load_reference_states(run.phase1a.anchor_states)
    probes = load_reference_states(run.phase1a.probe_states)
    rows = load_labeled(run.phase1)
    size = max(args.snapshots, args.n_train)
    _, checked_on = calibration_rows(rows, probes, size, seed=0)  # as Phase 1A splits them
    lora = LoraParameters(r=16, alpha=32)
    kinds = {  # Phase 1B's batch of one example, the mini's Phase 2 batch of four
        name: Trainee(name, ("demo",), lora.model_copy(update={"batch_size": batch}), None, size)
        for name, batch, size in (("micro", 1, args.snapshots), ("cell", 4, args.n_train))
        if name in args.kinds
    }
    print(f"machine: {machine()}, {args.threads} torch threads")
    print(
        f"run {run.folder.name}: {len(anchors)} anchor states, {len(probes)} probe states, "
        f"{len(checked_on)} snapshots to check on"
    )
    per_step = args.anchor_per_step
    calibration = DoseCalibration.load(run.phase1a.dose)
    chosen = {name: calibration.dose(name, "demo") for name in kinds}
    started = time.perf_counter()
    with torch_threads(args.threads):
        print(
            "\n| kind | dose | targets | drift (check probes) | specificity | "
            "change of log pi(target), trained | change of log pi(a*), probes | "
            "change of log pi(a*), retention |\n|---|---|---|---|---|---|---|---|"
        )
        for name, kind in kinds.items():
            extra = [("also", dose) for kind_name, dose in args.also if kind_name == name]
            doses = [("old", OLD[name]), ("chosen", chosen[name]), *extra]
            for label, dose in [(label, dose) for label, dose in doses if label in args.rows]:
                measured = measurement(
                    kind, "demo", dose, checked_on, anchors, probes, per_step, "check", args.seeds
                )
                for shuffle in (False, True):
                    probe, retention = pooled(measured, student, shuffle)
                    targets = "shuffled" if shuffle else "true"
                    print(line(name, f"{label}: {dose.label()}", targets, probe, retention))
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
