"""Phase 1B: does the cheap patch test predict what real fine-tuning does?

For a panel of labeled snapshots (`n_per_quadrant` per quadrant), a fresh LoRA adapter is
trained with the one-snapshot dose of Phase 1A, its anchor and probes (`models.instrument`) on
the snapshot's own supervision (its `route_net` format, or the format the parameters fix), and
the student plays `n_validation_rollouts` rollouts from the snapshot before and after. Before
and after use the same seeded random streams, so the raw `delta = success after - success
before` measures the adapter, not the draws. Each snapshot's control is an adapter with the same
dose on the same example whose target is a wrong action (drawn on the snapshot's own stream),
played on the same streams: the utility `delta_vs_control = success after - the control's
success after` is what the expert's action taught beyond any training at the state. The gate:
the Spearman correlation of ELP_net with delta_vs_control must reach 0.3, and Q1 must gain more
than Q2, each judged on its 95% interval (holds, fails or inconclusive); only a failed criterion
stops a run. The raw delta's figures are reported beside them.

Beside the gate, and never judged, the comparators say which cheap label does track the
utility: Spearman's rho of L_local, of U, and of `delta_logp` (the change of log pi(a*), the
policy's log-probability of the expert action at the snapshot's unpatched prompt, caused by the
adapter) with delta_vs_control, each with its interval, and the mean change of log pi(a*) from
the true and from the control adapter, each with its interval. What noise allows is reported
too: the reliabilities of ELP_net (Phase 1's retest) and of the utility (split halves of the
validation streams), the ceiling they set on rho, and rho disattenuated by it.

Results go to `micro_training.jsonl` as each snapshot finishes (a rerun skips finished ones),
then to `micro_training_results.json` and `cpt_correlation.json`, and the gate's verdicts to the
run's `verdicts.json`. The micro-training is `models.micro_training`, the gate's statistics
`measure.cpt_gate`, and the records reports read `records.cpt_validation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from teachable.measure.cpt_gate import gate
from teachable.models.instrument import Instrument
from teachable.models.micro_training import (
    MicroTraining,
    PanelBefore,
    micro_train,
    result_key,
    success_before,
)
from teachable.models.workers import Workers, WorkUnit
from teachable.parameters import LoraParameters, Phase1BParameters
from teachable.records.cpt_validation import PHASE, CPTGate, MicroResult, result_frame
from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import Phase1BLayout
from teachable.records.store import append_jsonl, read_jsonl, write_json
from teachable.records.verdicts import save_phase_verdicts
from teachable.vocabulary import QUADRANTS


def choose_panel(
    rows: Sequence[LabeledSnapshot], n_per_quadrant: int, seed: int
) -> list[LabeledSnapshot]:
    """Up to `n_per_quadrant` snapshots with CPT labels from each quadrant, a seeded draw that
    keeps the rows' order within a quadrant."""
    rng = np.random.default_rng(seed)
    panel = []
    for quadrant in QUADRANTS:
        candidates = [row for row in rows if row.quadrant == quadrant and row.cpt is not None]
        size = min(n_per_quadrant, len(candidates))
        picked = sorted(rng.choice(len(candidates), size, replace=False)) if size else []
        panel += [candidates[index] for index in picked]
    return panel


def with_labels(result: MicroResult, row: LabeledSnapshot) -> MicroResult:
    """A result with the snapshot's current labels: new thresholds move a snapshot to another
    quadrant without changing what training it did."""
    labels = {
        "quadrant": row.quadrant,
        "ELP_net": row.cpt.ELP_net,
        "route_net": row.cpt.route_net,
        "U": row.U,
        "L_local": row.L,
    }
    return result.model_copy(update=labels)


@dataclass
class MicroTrainingReport:
    """What `validate_cpt` did: the panel's results and the gate."""

    results: list[MicroResult]
    correlation: CPTGate
    newly_trained: int


def validate_cpt(
    rows: Sequence[LabeledSnapshot],
    phase1b: Phase1BParameters,
    lora: LoraParameters,
    instrument: Instrument,
    seed: int,
    workers: Workers,
    out: Phase1BLayout,
    progress: bool = True,
    verdicts: Path | None = None,
    elp_reliability: Estimate | None = None,
) -> MicroTrainingReport:
    """All of Phase 1B for the labeled `rows`, resumable, into `out`: micro-training with the
    shared `lora` settings under Phase 1B's batch shape, with the `instrument`'s one-snapshot
    dose, anchor and probes, rollouts seeded by `seed`.
    The gate's verdicts also go into `verdicts`, the run's verdicts file, when given;
    `elp_reliability` (Phase 1's test-retest r of ELP_net) gives rho its ceiling."""
    panel = choose_panel(rows, phase1b.n_per_quadrant, seed)
    if not panel:
        raise ValueError("no labeled snapshot has both a quadrant and CPT labels: nothing to test")
    keys = {
        row.id: result_key(row, phase1b, lora, instrument, seed, workers.params) for row in panel
    }
    done = {
        entry["id"]: MicroResult.model_validate(entry)
        for entry in read_jsonl(out.results_log)
        if keys.get(entry["id"]) == entry.get("key")
    }
    pending = [row for row in panel if row.id not in done]
    if pending:
        first = WorkUnit("success before training", PanelBefore(tuple(pending), phase1b, seed))
        [(_, before)] = workers.map(success_before, [first], "panel before", 1, progress)
        units = (
            WorkUnit(
                row.id,
                MicroTraining(row, before[row.id], phase1b, lora, instrument, seed, keys[row.id]),
            )
            for row in pending
        )
        for _, result in workers.map(micro_train, units, "micro-training", len(pending), progress):
            append_jsonl(out.results_log, result.model_dump(mode="json"))
            done[result.id] = result
    results = [with_labels(done[row.id], row) for row in panel]
    write_json(out.results, [result.model_dump(mode="json") for result in results])
    resamples = phase1b.bootstrap_resamples
    correlation = gate(result_frame(results), seed, resamples, elp_reliability)
    write_json(out.correlation, correlation.model_dump(mode="json"))
    if verdicts is not None:
        save_phase_verdicts(verdicts, PHASE, correlation.verdicts)
    return MicroTrainingReport(results, correlation, len(pending))
