"""Phase 1B: does the cheap patch test predict what real fine-tuning does?

For a panel of labeled snapshots (`n_per_quadrant` per quadrant), a fresh LoRA adapter is
trained for `n_steps` steps on the snapshot's own supervision (its `route_net` format, or the
format the parameters fix), and the student plays `n_validation_rollouts` rollouts from the
snapshot before and after. Before and after use the same seeded random streams, so the utility
`delta = success after - success before` measures the adapter, not the draws. The gate: the
Spearman correlation of ELP_net with delta must reach 0.3, and Q1 must gain more than Q2.

Results go to `micro_training.jsonl` as each snapshot finishes (a rerun skips finished ones),
then to `micro_training_results.json` and `cpt_correlation.json`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy import stats
from tqdm.auto import tqdm

from teachable.models.lora import TrainResult, train_lora
from teachable.models.rollouts import run_episodes, success_rate
from teachable.models.student import Student
from teachable.models.supervision import sft_example
from teachable.parameters import LoraParameters, Phase1BParameters
from teachable.phases.phase1_labels import RolloutCondition
from teachable.records.labeled import Format, LabeledSnapshot
from teachable.records.layout import Phase1BLayout
from teachable.records.quadrants import QUADRANTS, Quadrant
from teachable.records.store import append_jsonl, read_jsonl, write_json

CONDITION = "validation"  # the rollouts' stream family, the same before and after training


SPEARMAN_TARGET = 0.3


CONFIDENCE = 0.95


class MicroResult(BaseModel):
    """One panel snapshot: its CPT labels, the format trained on, and the real utility."""

    id: str
    quadrant: Quadrant
    level: str
    ELP_net: float
    route_net: Format
    format: Format
    target: str
    before: float
    after: float
    delta: float
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
    student: Student,
) -> str:
    """Everything that shapes a snapshot's result, hashed: a result with another key is
    stale and is made again."""
    example = sft_example(row, trained_format(row, phase1b), student.params.history)
    shaping = {
        "seed": seed,
        "student": student.params.model_dump(mode="json", exclude={"batch_size"}),
        "lora": micro_lora(phase1b, lora).model_dump(mode="json"),
        "rollouts": phase1b.model_dump(
            include={"n_validation_rollouts", "rollout_max_steps", "temperature"}
        ),
        "prompt": [example.prompt.observation, example.prompt.patch, example.target],
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


def micro_adapter(
    student: Student, row: LabeledSnapshot, phase1b: Phase1BParameters, lora: LoraParameters
) -> TrainResult:
    """A fresh adapter trained on the snapshot's own supervision alone (kept in memory)."""
    example = sft_example(row, trained_format(row, phase1b), student.params.history)
    return train_lora(student, [example], micro_lora(phase1b, lora))


def micro_train(
    student: Student,
    row: LabeledSnapshot,
    before: float,
    phase1b: Phase1BParameters,
    lora: LoraParameters,
    seed: int,
    key: str,
) -> MicroResult:
    """Train a fresh adapter on the snapshot's supervision, then replay its rollouts."""
    trained = micro_adapter(student, row, phase1b, lora)
    after = validation_success(trained.student, [row], phase1b, seed)[row.id]
    return MicroResult(
        id=row.id,
        quadrant=row.quadrant,
        level=row.level,
        ELP_net=row.cpt.ELP_net,
        route_net=row.cpt.route_net,
        format=trained_format(row, phase1b),
        target=row.expert_action,
        before=before,
        after=after,
        delta=round(after - before, 6),
        n_rollouts=phase1b.n_validation_rollouts,
        losses=[round(loss, 6) for loss in trained.losses],
        seconds=round(trained.seconds, 2),
        key=key,
    )


def with_labels(result: MicroResult, row: LabeledSnapshot) -> MicroResult:
    """A result with the snapshot's current labels: new thresholds move a snapshot to another
    quadrant without changing what training it did."""
    labels = {"quadrant": row.quadrant, "ELP_net": row.cpt.ELP_net, "route_net": row.cpt.route_net}
    return result.model_copy(update=labels)


@dataclass
class MicroTrainingReport:
    """What `validate_cpt` did: the panel's results and the gate's verdict."""

    results: list[MicroResult]
    correlation: dict
    newly_trained: int


def validate_cpt(
    rows: Sequence[LabeledSnapshot],
    phase1b: Phase1BParameters,
    lora: LoraParameters,
    seed: int,
    student: Student,
    out: Phase1BLayout,
    progress: bool = True,
) -> MicroTrainingReport:
    """All of Phase 1B for the labeled `rows`, resumable, into `out`: micro-training with the
    shared `lora` settings under Phase 1B's steps and learning rate, rollouts seeded by `seed`."""
    panel = choose_panel(rows, phase1b.n_per_quadrant, seed)
    if not panel:
        raise ValueError("no labeled snapshot has both a quadrant and CPT labels: nothing to test")
    keys = {row.id: result_key(row, phase1b, lora, seed, student) for row in panel}
    done = {
        result.id: result
        for result in map(MicroResult.model_validate, read_jsonl(out.results_log))
        if keys.get(result.id) == result.key
    }
    pending = [row for row in panel if row.id not in done]
    if pending:
        before = validation_success(student, pending, phase1b, seed)
        for row in tqdm(pending, desc="micro-training", unit="snapshot", disable=not progress):
            result = micro_train(student, row, before[row.id], phase1b, lora, seed, keys[row.id])
            append_jsonl(out.results_log, result.model_dump(mode="json"))
            done[row.id] = result
    results = [with_labels(done[row.id], row) for row in panel]
    write_json(out.results, [result.model_dump(mode="json") for result in results])
    correlation = gate(result_frame(results), seed, phase1b.bootstrap_resamples)
    write_json(out.correlation, correlation)
    return MicroTrainingReport(results, correlation, len(pending))


def result_frame(results: Sequence[MicroResult]) -> pd.DataFrame:
    """One line per panel snapshot, as the gate and the charts read it."""
    columns = ["id", "quadrant", "level", "ELP_net", "route_net", "format", "before", "after"]
    frame = pd.DataFrame([r.model_dump(include=set(columns) | {"delta"}) for r in results])
    return frame.reindex(columns=[*columns, "delta"])


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho, NaN where it is undefined (fewer than 3 points or a constant side)."""
    if len(x) < 3:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def _number(value: float) -> float | None:
    """A JSON-ready float: None for NaN."""
    return None if np.isnan(value) else round(float(value), 6)


def spearman_summary(x: np.ndarray, y: np.ndarray, seed: int, resamples: int) -> dict:
    """Spearman's rho of x and y with its p-value and a percentile bootstrap interval over
    paired resamples; resamples with a constant side have no rho and are left out (their share
    is `undefined_resamples`)."""
    rho = _spearman(x, y)
    summary = {"rho": _number(rho), "p_value": None, "ci_low": None, "ci_high": None}
    summary |= {"confidence": CONFIDENCE, "n": len(x), "undefined_resamples": None}
    if np.isnan(rho):
        return summary
    with warnings.catch_warnings():  # resamples with a constant side are expected here
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        summary["p_value"] = _number(stats.spearmanr(x, y).pvalue)
        boot = stats.bootstrap(
            (x, y),
            _spearman,
            paired=True,
            vectorized=False,
            n_resamples=resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    distribution = boot.bootstrap_distribution
    defined = distribution[~np.isnan(distribution)]
    tail = (1 - CONFIDENCE) / 2 * 100
    if len(defined):
        low, high = np.percentile(defined, [tail, 100 - tail])
        summary["ci_low"], summary["ci_high"] = _number(low), _number(high)
    summary["undefined_resamples"] = round(1 - len(defined) / len(distribution), 4)
    return summary


def q1_vs_q2(frame: pd.DataFrame) -> dict:
    """Mean delta of Q1 minus that of Q2, with a one-sided Mann-Whitney U test (Q1 greater)."""
    q1 = frame.loc[frame["quadrant"] == "Q1_highU_highL", "delta"].to_numpy(float)
    q2 = frame.loc[frame["quadrant"] == "Q2_highU_lowL", "delta"].to_numpy(float)
    comparison = {"n_Q1": len(q1), "n_Q2": len(q2), "difference": None}
    comparison |= {"mann_whitney_U": None, "p_value": None}
    if len(q1) and len(q2):
        test = stats.mannwhitneyu(q1, q2, alternative="greater")
        comparison["difference"] = _number(q1.mean() - q2.mean())
        comparison["mann_whitney_U"] = _number(test.statistic)
        comparison["p_value"] = _number(test.pvalue)
    return comparison


def gate(frame: pd.DataFrame, seed: int, resamples: int = 1000) -> dict:
    """The `cpt_correlation.json` verdict from a panel (columns quadrant, ELP_net, delta):
    `passed` when Spearman's rho of ELP_net and delta is at least 0.3 and the mean delta of
    Q1 exceeds that of Q2; `reasons` says what failed."""
    x, y = frame["ELP_net"].to_numpy(float), frame["delta"].to_numpy(float)
    overall = spearman_summary(x, y, seed, resamples)
    per_quadrant = {}
    for quadrant in QUADRANTS:
        part = frame[frame["quadrant"] == quadrant]
        summary = spearman_summary(
            part["ELP_net"].to_numpy(float), part["delta"].to_numpy(float), seed, resamples
        )
        per_quadrant[quadrant] = {
            **summary,
            "mean_delta": _number(part["delta"].mean()) if len(part) else None,
        }
    comparison = q1_vs_q2(frame)
    reasons = []
    if overall["rho"] is None:
        reasons.append(f"Spearman's rho is undefined on {len(frame)} point(s)")
    elif overall["rho"] < SPEARMAN_TARGET:
        reasons.append(f"Spearman's rho {overall['rho']:.3f} < {SPEARMAN_TARGET}")
    if comparison["difference"] is None:
        reasons.append("Q1 or Q2 has no panel snapshot: their mean deltas cannot be compared")
    elif comparison["difference"] <= 0:
        reasons.append(f"mean delta of Q1 does not exceed Q2's ({comparison['difference']:+.3f})")
    return {
        "n": len(frame),
        "spearman": overall,
        "mean_delta": {q: summary["mean_delta"] for q, summary in per_quadrant.items()},
        "per_quadrant": per_quadrant,
        "q1_vs_q2": comparison,
        "spearman_target": SPEARMAN_TARGET,
        "passed": not reasons,
        "reasons": reasons,
    }
