"""Phase 1B's records: one micro-trained panel snapshot with its wrong-target control
(`MicroResult`, a line of `micro_training.jsonl`), the panel as the frame the gate and the
charts read, and the gate itself (`CPTGate`, `cpt_correlation.json`) with its target, the raw
delta's figures and the comparators it reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel

from teachable.records.adapter_probe import AdapterProbe
from teachable.records.dose import Dose
from teachable.records.estimate import Estimate
from teachable.records.store import read_json
from teachable.records.verdicts import Outcome, Verdict
from teachable.vocabulary import Format, Quadrant

PHASE = "phase1b"  # the verdicts' phase in the run's verdicts.json


SPEARMAN_TARGET = 0.3


UTILITY = "delta_vs_control"  # the gate's utility: the true minus the control micro-training


RAW = "delta"  # the raw utility, success after minus before, reported beside the gate's


Comparator = Literal["L_local", "U", "delta_logp"]


COMPARATORS: dict[Comparator, str] = {
    "L_local": "leverage L_local (Phase 1 rollouts)",
    "U": "the student's uncertainty U at the snapshot",
    "delta_logp": "change of log pi(a*) at the snapshot caused by the micro-training",
}


class MicroResult(BaseModel):
    """One panel snapshot: its labels, the format trained on, the raw utility (`delta`), the
    policy's log-probability of the expert action at the snapshot before and after, and the
    control: the same dose on the same example with a wrong action (`control_target`) as its
    target, played on the same streams. `delta_vs_control` (after minus the control's after)
    is the paired utility the gate reads; `control_delta_logp` is the control's change of
    log pi(a*), which a wrong target should not raise. `halves` is delta_vs_control on the first
    and on the second half of the validation streams (its split-half reliability; None in
    results made before it was kept). `probe` is the adapter's drift and specificity at the
    probe states; both adapters are trained with `dose`."""

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
    control_target: str
    control_after: float
    control_delta: float
    delta_vs_control: float
    control_logp_after: float
    control_delta_logp: float
    halves: list[float] | None = None
    dose: Dose
    probe: AdapterProbe
    n_rollouts: int
    losses: list[float]
    seconds: float
    key: str


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
        "control_target",
        "control_after",
        "control_delta",
        "delta_vs_control",
        "control_logp_after",
        "control_delta_logp",
    ]
    frame = pd.DataFrame([r.model_dump(include=set(columns)) for r in results])
    frame = frame.reindex(columns=columns).astype({"L_local": float})
    halves = [r.halves or [None, None] for r in results]
    return frame.assign(
        drift=[r.probe.drift.value for r in results],
        specificity=[r.probe.specificity.value for r in results],
        first_half=[first for first, _ in halves],
        second_half=[second for _, second in halves],
    ).astype({"first_half": float, "second_half": float})


class QuadrantPanel(BaseModel):
    """One quadrant of the panel: rho of ELP_net and the gate's utility within it, its mean
    utility (`delta_vs_control`) and its mean raw delta."""

    spearman: Estimate
    mean_delta_vs_control: Estimate
    mean_delta: Estimate


class CPTGate(BaseModel):
    """`cpt_correlation.json`: the gate's figures on its utility (`delta_vs_control`) with their
    intervals and n, its two verdicts, and its outcome: `fails` when a verdict fails, `holds`
    when both hold, else `inconclusive`. Reported beside it and never judged: the same figures
    on the raw delta (`raw_spearman`, `raw_q1_minus_q2`), `comparators` (rho of each other
    cheap label with the utility), the mean change of log pi(a*) from the true
    (`mean_delta_logp`) and from the control micro-training (`mean_control_delta_logp`), and
    what noise allows: the `reliability` of ELP_net (Phase 1's test-retest) and of the utility
    (split halves of the validation streams), the `ceiling` they set on rho
    (sqrt of their product), and rho `disattenuated` by it, labeled as such."""

    n: int
    spearman: Estimate
    per_quadrant: dict[Quadrant, QuadrantPanel]
    q1_minus_q2: Estimate
    verdicts: list[Verdict]
    outcome: Outcome
    raw_spearman: Estimate
    raw_q1_minus_q2: Estimate
    comparators: dict[Comparator, Estimate] = {}
    mean_delta_logp: Estimate | None = None
    mean_control_delta_logp: Estimate | None = None
    reliability: dict[str, Estimate | None] = {}
    ceiling: float | None = None
    disattenuated: Estimate | None = None

    @classmethod
    def load(cls, path: Path) -> CPTGate:
        return cls.model_validate(read_json(path))
