"""Label reliability as Phase 1 records it: which labels are retested, and `reliability.json`
(the panel's ids, the stream family of its second labeling, and each label's test-retest r),
written and validated here; the Phase 4 and paper reports read it through `load_reliability`."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from teachable.records.estimate import Estimate
from teachable.records.labeled import LabeledSnapshot
from teachable.records.layout import Phase1Layout
from teachable.records.store import read_json, write_json

RELIABLE_LABELS = {
    "U": lambda row: row.U,
    "L_local": lambda row: row.L,
    "ELP_net": lambda row: None if row.cpt is None else row.cpt.ELP_net,
}


U_BY_CONSTRUCTION = (
    "U is read from the distribution recorded at the snapshot, not from rollouts: its retest "
    "is the same number, so r = 1 by construction (wherever U varies over the panel)"
)


class Reliability(BaseModel):
    """`reliability.json`: the panel's ids, the stream family of its second labeling, the
    test-retest r of each label, and notes on labels whose r needs reading."""

    model_config = ConfigDict(extra="forbid")

    panel: list[str]
    stream_family: str
    estimates: dict[str, Estimate]
    notes: dict[str, str]


def save_reliability(
    out: Phase1Layout,
    panel: Sequence[LabeledSnapshot],
    estimates: dict[str, Estimate],
    stream_family: str,
) -> None:
    """Write `reliability.json` for the panel retested on the streams of `stream_family`."""
    record = Reliability(
        panel=[row.id for row in panel],
        stream_family=stream_family,
        estimates=estimates,
        notes={"U": U_BY_CONSTRUCTION},
    )
    write_json(out.reliability, record.model_dump(mode="json"))


def load_reliability(out: Phase1Layout) -> dict[str, Estimate]:
    """The test-retest r of each label (U, L_local, ELP_net) from `reliability.json`: the
    share of a label's variance that is not rollout noise, the ceiling of a predictor's R² on
    it. Empty when no panel was labeled (`phase1.reliability_panel` 0)."""
    if not out.reliability.is_file():
        return {}
    return Reliability.model_validate(read_json(out.reliability)).estimates
