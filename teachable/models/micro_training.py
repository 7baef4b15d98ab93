"""Micro-training: one fresh LoRA adapter trained for a few steps on a single snapshot's own
supervision, and what it changes there: the student's success on the snapshot's validation
streams (the same seeded streams before and after) and the log-probability of the expert's
action at its unpatched prompt. Each has a control: the same dose on the same example with a
wrong action as target, played on the same streams, so that the true minus the control
micro-training measures what the expert's action taught, not what any training at the state
does. Phase 1B's units of work and the key of their results."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import log_softmax

from teachable.measure.labels import rate
from teachable.models.conditions import RolloutCondition, outcomes, stable_int
from teachable.models.instrument import Instrument
from teachable.models.lora import TrainResult
from teachable.models.rollouts import prompt_for, run_episodes
from teachable.models.student import Student
from teachable.models.supervision import sft_example
from teachable.parameters import LoraParameters, Phase1BParameters, StudentParameters
from teachable.records.adapter_probe import AdapterProbe
from teachable.records.cpt_validation import MicroResult
from teachable.records.labeled import LabeledSnapshot
from teachable.vocabulary import ACTIONS, Format
from teachable.world.text_world import TextWorld

CONDITION = "validation"  # the rollouts' stream family, the same before and after training


CONTROL = "control target"  # the stream family the control's wrong action is drawn on


MEASURED = (
    "success before and after on the validation streams; log pi(a*) before and after at the "
    "unpatched snapshot prompt; a wrong-target control with the same dose, on the same streams; "
    "drift and specificity of the adapter at the probe states"
)  # what a result holds: results measured otherwise are made again


def trained_format(row: LabeledSnapshot, phase1b: Phase1BParameters) -> Format:
    """The snapshot's best format over the placebo, unless the parameters fix one."""
    chosen = phase1b.format
    return row.cpt.route_net if chosen == "route_net" else chosen


def control_target(row: LabeledSnapshot, seed: int) -> str:
    """The control's target: an action other than the expert's, drawn uniformly on the
    snapshot's own stream of the run seed, so every run with that seed draws the same one."""
    wrong = [action for action in ACTIONS if action != row.expert_action]
    draw = np.random.default_rng((seed, stable_int(row.id), stable_int(CONTROL)))
    return wrong[int(draw.integers(len(wrong)))]


def result_key(
    row: LabeledSnapshot,
    phase1b: Phase1BParameters,
    lora: LoraParameters,
    instrument: Instrument,
    seed: int,
    student: StudentParameters,
) -> str:
    """Everything that shapes a snapshot's result, hashed: a result with another key is
    stale and is made again."""
    format = trained_format(row, phase1b)
    example = sft_example(row, format, student.history)
    shaping = {
        "instrument": instrument.key(format),
        "seed": seed,
        "student": student.model_dump(mode="json", exclude={"batch_size"}),
        "lora": phase1b.over(lora).model_dump(mode="json"),
        "rollouts": phase1b.model_dump(
            include={"n_validation_rollouts", "max_steps", "temperature"}
        ),
        "prompt": [example.prompt.observation, example.prompt.patch, example.target],
        "control": control_target(row, seed),
        "measured": MEASURED,
    }
    return hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def validation_outcomes(
    student: Student, rows: Sequence[LabeledSnapshot], phase1b: Phase1BParameters, seed: int
) -> dict[str, np.ndarray]:
    """Success (1) or not (0) of each of the student's validation rollouts from each snapshot,
    in stream order, every rollout in one batched call."""
    conditions = [RolloutCondition(row, CONDITION, phase1b.n_validation_rollouts) for row in rows]
    specs = [spec for condition in conditions for spec in condition.specs(seed, CONDITION)]
    episodes = run_episodes(
        student, specs, phase1b.max_steps, phase1b.temperature, student.params.history
    )
    n = phase1b.n_validation_rollouts
    return {
        row.id: outcomes(episodes[index * n : (index + 1) * n]) for index, row in enumerate(rows)
    }


def split_halves(after: np.ndarray, control_after: np.ndarray) -> list[float]:
    """The utility (after minus the control's after) on the first and on the second half of the
    validation streams: two measurements of it whose agreement over the panel is its split-half
    reliability."""
    half = len(after) // 2
    return [rate(after[:half] - control_after[:half]), rate(after[half:] - control_after[half:])]


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
    student: Student,
    row: LabeledSnapshot,
    phase1b: Phase1BParameters,
    lora: LoraParameters,
    instrument: Instrument,
    target: str | None = None,
) -> tuple[TrainResult, AdapterProbe | None]:
    """A fresh adapter trained with the instrument's one-snapshot dose and anchor on the
    snapshot's own supervision alone (kept in memory), and its drift and specificity; with a
    `target`, on the same example answering `target` instead of the expert's action (the
    control, which is not probed)."""
    format = trained_format(row, phase1b)
    example = sft_example(row, format, student.params.history)
    if target is not None:
        example = replace(example, target=target)
    lora = phase1b.over(lora)
    return instrument.train(student, [example], format, lora, {row.task}, probed=target is None)


@dataclass(frozen=True)
class MicroTraining:
    """A unit of Phase 1B: one snapshot's micro-training, with the student's success there
    before it (measured with the whole panel's rollouts)."""

    row: LabeledSnapshot
    before: float
    phase1b: Phase1BParameters
    lora: LoraParameters
    instrument: Instrument
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
    played = validation_outcomes(student, unit.rows, unit.phase1b, unit.seed)
    return {snapshot: rate(successes) for snapshot, successes in played.items()}


def micro_train(student: Student, unit: MicroTraining) -> MicroResult:
    """The work of a micro-training unit: train a fresh adapter on the snapshot's supervision
    and its control on a wrong target, replay the rollouts with each on the same streams, and
    score the expert action at the snapshot without and with each adapter (each alone, so a
    resumed panel scores it the same way)."""
    row, before, phase1b, lora, seed = unit.row, unit.before, unit.phase1b, unit.lora, unit.seed
    history = student.params.history
    logp_before = expert_logprobs(student, [row], history)[row.id]
    trained, probe = micro_adapter(student, row, phase1b, lora, unit.instrument)
    after = validation_outcomes(trained.student, [row], phase1b, seed)[row.id]
    logp_after = expert_logprobs(trained.student, [row], history)[row.id]
    wrong = control_target(row, seed)
    control, _ = micro_adapter(student, row, phase1b, lora, unit.instrument, wrong)
    control_after = validation_outcomes(control.student, [row], phase1b, seed)[row.id]
    control_logp_after = expert_logprobs(control.student, [row], history)[row.id]
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
        after=rate(after),
        delta=round(rate(after) - before, 6),
        logp_before=logp_before,
        logp_after=logp_after,
        delta_logp=round(logp_after - logp_before, 6),
        control_target=wrong,
        control_after=rate(control_after),
        control_delta=round(rate(control_after) - before, 6),
        delta_vs_control=rate(after - control_after),
        halves=split_halves(after, control_after),
        control_logp_after=control_logp_after,
        control_delta_logp=round(control_logp_after - logp_before, 6),
        dose=unit.instrument.dose(trained_format(row, phase1b)),
        probe=probe,
        n_rollouts=phase1b.n_validation_rollouts,
        losses=[round(loss, 6) for loss in trained.losses],
        seconds=round(trained.seconds + control.seconds, 2),
        key=unit.key,
    )
