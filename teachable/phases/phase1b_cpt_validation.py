"""Phase 1B: does the cheap patch test predict what real fine-tuning does?

For a panel of labeled snapshots (`n_per_quadrant` per quadrant), a fresh LoRA adapter is
trained for `n_steps` steps on the snapshot's own supervision (its `route_net` format, or the
format the parameters fix), and the student plays `n_validation_rollouts` rollouts from the
snapshot before and after. Before and after use the same seeded random streams, so the utility
`delta = success after - success before` measures the adapter, not the draws. The gate: the
Spearman correlation of ELP_net with delta must reach 0.3, and Q1 must gain more than Q2, each
judged on its 95% interval (holds, fails or inconclusive); only a failed criterion stops a run.

Beside the gate, and never judged, the comparators say which cheap label does track delta:
Spearman's rho of L_local, of U, and of `delta_logp` (the change of log pi(a*), the policy's
log-probability of the expert action at the snapshot's unpatched prompt, caused by the adapter)
with delta, each with its interval, and the mean `delta_logp` with its interval.

Results go to `micro_training.jsonl` as each snapshot finishes (a rerun skips finished ones),
then to `micro_training_results.json` and `cpt_correlation.json`, and the gate's verdicts to the
run's `verdicts.json`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.special import log_softmax

from teachable.measure.intervals import difference_of_means, hierarchical_bootstrap, spearman
from teachable.measure.verdicts import combined, judge
from teachable.models.lora import TrainResult, train_lora
from teachable.models.rollouts import prompt_for, run_episodes, success_rate
from teachable.models.student import Student
from teachable.models.supervision import sft_example
from teachable.models.workers import Workers, WorkUnit, workers_of
from teachable.parameters import LoraParameters, Phase1BParameters, StudentParameters
from teachable.phases.phase1_labels import RolloutCondition
from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import Phase1BLayout
from teachable.records.store import append_jsonl, read_json, read_jsonl, write_json
from teachable.records.verdicts import Outcome, Verdict, save_phase_verdicts
from teachable.vocabulary import ACTIONS, QUADRANTS, Format, Quadrant
from teachable.world.text_world import TextWorld

CONDITION = "validation"  # the rollouts' stream family, the same before and after training


PHASE = "phase1b"  # the verdicts' phase in the run's verdicts.json


SPEARMAN_TARGET = 0.3


MEASURED = (
    "success before and after on the validation streams; log pi(a*) before and after at the "
    "unpatched snapshot prompt"
)  # what a result holds: results measured otherwise are made again


Comparator = Literal["L_local", "U", "delta_logp"]


COMPARATORS: dict[Comparator, str] = {
    "L_local": "leverage L_local (Phase 1 rollouts)",
    "U": "the student's uncertainty U at the snapshot",
    "delta_logp": "change of log pi(a*) at the snapshot caused by the micro-training",
}


class MicroResult(BaseModel):
    """One panel snapshot: its labels, the format trained on, the real utility (`delta`), and
    the policy's log-probability of the expert action at the snapshot before and after."""

    id: str
    quadrant: Quadrant
    level: str
    ELP_net: float
    route_net: Format
    U: float
    L_local: float | None
    format: Format
    target: str
    before: float
    after: float
    delta: float
    logp_before: float
    logp_after: float
    delta_logp: float
    n_rollouts: int
    losses: list[float]
    seconds: float
    key: str


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


def micro_lora(phase1b: Phase1BParameters, lora: LoraParameters) -> LoraParameters:
    """The `lora` section with Phase 1B's steps and learning rate, one example per step."""
    return lora.model_copy(
        update={
            "steps": phase1b.n_steps,
            "learning_rate": phase1b.learning_rate,
            "batch_size": 1,
            "gradient_accumulation_steps": 1,
        }
    )


def trained_format(row: LabeledSnapshot, phase1b: Phase1BParameters) -> Format:
    """The snapshot's best format over the placebo, unless the parameters fix one."""
    chosen = phase1b.format
    return row.cpt.route_net if chosen == "route_net" else chosen


def result_key(
    row: LabeledSnapshot,
    phase1b: Phase1BParameters,
    lora: LoraParameters,
    seed: int,
    student: StudentParameters,
) -> str:
    """Everything that shapes a snapshot's result, hashed: a result with another key is
    stale and is made again."""
    example = sft_example(row, trained_format(row, phase1b), student.history)
    shaping = {
        "seed": seed,
        "student": student.model_dump(mode="json", exclude={"batch_size"}),
        "lora": micro_lora(phase1b, lora).model_dump(mode="json"),
        "rollouts": phase1b.model_dump(
            include={"n_validation_rollouts", "rollout_max_steps", "temperature"}
        ),
        "prompt": [example.prompt.observation, example.prompt.patch, example.target],
        "measured": MEASURED,
    }
    return hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def validation_success(
    student: Student, rows: Sequence[LabeledSnapshot], phase1b: Phase1BParameters, seed: int
) -> dict[str, float]:
    """Success rate of the student from each snapshot, every rollout in one batched call."""
    conditions = [RolloutCondition(row, CONDITION, phase1b.n_validation_rollouts) for row in rows]
    specs = [spec for condition in conditions for spec in condition.specs(seed, CONDITION)]
    episodes = run_episodes(
        student, specs, phase1b.rollout_max_steps, phase1b.temperature, student.params.history
    )
    n = phase1b.n_validation_rollouts
    return {
        row.id: round(success_rate(episodes[index * n : (index + 1) * n]), 6)
        for index, row in enumerate(rows)
    }


def expert_logprobs(
    student: Student, rows: Sequence[LabeledSnapshot], history: int
) -> dict[str, float]:
    """log pi(a*) per snapshot: the log-probability of the expert action under the student's
    policy (temperature 1, over the six actions) at the snapshot's unpatched prompt, as the
    student acts there; one batched scoring call."""
    prompts = [prompt_for(TextWorld.restore(row.state), history) for row in rows]
    policy = log_softmax(student.action_logprobs(prompts), axis=1)
    return {
        row.id: round(float(policy[index, ACTIONS.index(row.expert_action)]), 6)
        for index, row in enumerate(rows)
    }


def micro_adapter(
    student: Student, row: LabeledSnapshot, phase1b: Phase1BParameters, lora: LoraParameters
) -> TrainResult:
    """A fresh adapter trained on the snapshot's own supervision alone (kept in memory)."""
    example = sft_example(row, trained_format(row, phase1b), student.params.history)
    return train_lora(student, [example], micro_lora(phase1b, lora))


@dataclass(frozen=True)
class MicroTraining:
    """A unit of Phase 1B: one snapshot's micro-training, with the student's success there
    before it (measured with the whole panel's rollouts)."""

    row: LabeledSnapshot
    before: float
    phase1b: Phase1BParameters
    lora: LoraParameters
    seed: int
    key: str


@dataclass(frozen=True)
class PanelBefore:
    """A unit of Phase 1B: the student's success from each panel snapshot, before training."""

    rows: tuple[LabeledSnapshot, ...]
    phase1b: Phase1BParameters
    seed: int


def success_before(student: Student, unit: PanelBefore) -> dict[str, float]:
    """The work of the `before` unit: every panel rollout in one batched call."""
    return validation_success(student, unit.rows, unit.phase1b, unit.seed)


def micro_train(student: Student, unit: MicroTraining) -> MicroResult:
    """The work of a micro-training unit: train a fresh adapter on the snapshot's supervision,
    then replay its rollouts, and score the expert action at the snapshot with and without the
    adapter (each alone, so a resumed panel scores it the same way)."""
    row, before, phase1b, lora, seed = unit.row, unit.before, unit.phase1b, unit.lora, unit.seed
    history = student.params.history
    logp_before = expert_logprobs(student, [row], history)[row.id]
    trained = micro_adapter(student, row, phase1b, lora)
    after = validation_success(trained.student, [row], phase1b, seed)[row.id]
    logp_after = expert_logprobs(trained.student, [row], history)[row.id]
    return MicroResult(
        id=row.id,
        quadrant=row.quadrant,
        level=row.level,
        ELP_net=row.cpt.ELP_net,
        route_net=row.cpt.route_net,
        U=row.U,
        L_local=row.L,
        format=trained_format(row, phase1b),
        target=row.expert_action,
        before=before,
        after=after,
        delta=round(after - before, 6),
        logp_before=logp_before,
        logp_after=logp_after,
        delta_logp=round(logp_after - logp_before, 6),
        n_rollouts=phase1b.n_validation_rollouts,
        losses=[round(loss, 6) for loss in trained.losses],
        seconds=round(trained.seconds, 2),
        key=unit.key,
    )


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
    seed: int,
    student: Student | Workers,
    out: Phase1BLayout,
    progress: bool = True,
    verdicts: Path | None = None,
) -> MicroTrainingReport:
    """All of Phase 1B for the labeled `rows`, resumable, into `out`: micro-training with the
    shared `lora` settings under Phase 1B's steps and learning rate, rollouts seeded by `seed`.
    The gate's verdicts also go into `verdicts`, the run's verdicts file, when given."""
    panel = choose_panel(rows, phase1b.n_per_quadrant, seed)
    if not panel:
        raise ValueError("no labeled snapshot has both a quadrant and CPT labels: nothing to test")
    workers = workers_of(student)
    keys = {row.id: result_key(row, phase1b, lora, seed, workers.params) for row in panel}
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
            WorkUnit(row.id, MicroTraining(row, before[row.id], phase1b, lora, seed, keys[row.id]))
            for row in pending
        )
        for _, result in workers.map(micro_train, units, "micro-training", len(pending), progress):
            append_jsonl(out.results_log, result.model_dump(mode="json"))
            done[result.id] = result
    results = [with_labels(done[row.id], row) for row in panel]
    write_json(out.results, [result.model_dump(mode="json") for result in results])
    correlation = gate(result_frame(results), seed, phase1b.bootstrap_resamples)
    write_json(out.correlation, correlation.model_dump(mode="json"))
    if verdicts is not None:
        save_phase_verdicts(verdicts, PHASE, correlation.verdicts)
    return MicroTrainingReport(results, correlation, len(pending))


def result_frame(results: Sequence[MicroResult]) -> pd.DataFrame:
    """One line per panel snapshot, as the gate, its comparators and the charts read it."""
    columns = [
        "id",
        "quadrant",
        "level",
        "ELP_net",
        "route_net",
        "U",
        "L_local",
        "format",
        "before",
        "after",
        "delta",
        "logp_before",
        "logp_after",
        "delta_logp",
    ]
    frame = pd.DataFrame([r.model_dump(include=set(columns)) for r in results])
    return frame.reindex(columns=columns).astype({"L_local": float})


class QuadrantPanel(BaseModel):
    """One quadrant of the panel: rho of ELP_net and delta within it, and its mean delta."""

    spearman: Estimate
    mean_delta: Estimate


class CPTGate(BaseModel):
    """`cpt_correlation.json`: the gate's figures with their intervals and n, its two verdicts,
    and its outcome: `fails` when a verdict fails, `holds` when both hold, else `inconclusive`.
    `comparators` (rho of each other cheap label with delta) and `mean_delta_logp` are
    reported beside it and never judged."""

    n: int
    spearman: Estimate
    per_quadrant: dict[Quadrant, QuadrantPanel]
    q1_minus_q2: Estimate
    verdicts: list[Verdict]
    outcome: Outcome
    comparators: dict[Comparator, Estimate] = {}
    mean_delta_logp: Estimate | None = None

    @classmethod
    def load(cls, path: Path) -> CPTGate:
        return cls.model_validate(read_json(path))


def _deltas(frame: pd.DataFrame, quadrant: Quadrant) -> np.ndarray:
    return frame.loc[frame["quadrant"] == quadrant, "delta"].to_numpy(float)


def comparator_rho(frame: pd.DataFrame, label: str, seed: int, resamples: int) -> Estimate:
    """Spearman's rho of `label` and delta over the panel rows that carry the label."""
    pairs = frame[[label, "delta"]].astype(float).dropna()
    return spearman(pairs[label], pairs["delta"], resamples, seed)


def gate(frame: pd.DataFrame, seed: int, resamples: int = 1000) -> CPTGate:
    """The gate on a panel (columns quadrant, ELP_net, delta): Spearman's rho of ELP_net and
    delta must reach 0.3, and the mean delta of Q1 must exceed Q2's; each criterion is judged
    on its interval. Each comparator column the panel holds (L_local, U, delta_logp) gets its
    rho with delta, and delta_logp its mean, each with its interval; none is judged."""
    x, y = frame["ELP_net"].to_numpy(float), frame["delta"].to_numpy(float)
    rho = spearman(x, y, resamples, seed)
    per_quadrant = {
        quadrant: QuadrantPanel(
            spearman=spearman(
                frame.loc[frame["quadrant"] == quadrant, "ELP_net"].to_numpy(float),
                _deltas(frame, quadrant),
                resamples,
                seed,
            ),
            mean_delta=hierarchical_bootstrap(_deltas(frame, quadrant), resamples, seed),
        )
        for quadrant in QUADRANTS
    }
    q1_minus_q2 = difference_of_means(
        _deltas(frame, "Q1_highU_highL"), _deltas(frame, "Q2_highU_lowL"), resamples, seed
    )
    rho_claim = f"Spearman rho(ELP_net, delta) >= {SPEARMAN_TARGET}"
    verdicts = [
        judge(PHASE, "rho", rho_claim, rho, ">=", SPEARMAN_TARGET),
        judge(PHASE, "q1_minus_q2", "mean delta of Q1 - Q2 > 0", q1_minus_q2, ">", 0.0),
    ]
    comparators = {
        label: comparator_rho(frame, label, seed, resamples)
        for label in COMPARATORS
        if label in frame
    }
    mean_delta_logp = None
    if "delta_logp" in frame:
        changes = frame["delta_logp"].dropna().to_numpy(float)
        mean_delta_logp = hierarchical_bootstrap(changes, resamples, seed)
    return CPTGate(
        n=len(frame),
        spearman=rho,
        per_quadrant=per_quadrant,
        q1_minus_q2=q1_minus_q2,
        verdicts=verdicts,
        outcome=combined(verdicts),
        comparators=comparators,
        mean_delta_logp=mean_delta_logp,
    )
