"""The training instrument: how one kind of training after the warm-up trains and is probed.

It holds the dose of each format (calibrated by Phase 1A, or pinned by the phase's
parameters), the anchor replay set with how many anchor states a step draws, and the probe set.
`train` trains one adapter with it and measures its drift and specificity at once, so every
adapter of Phases 1B, 2 and 5 carries those figures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from teachable.models.lora import SFTExample, TrainResult, train_lora
from teachable.models.probes import probe_adapter
from teachable.models.reference_states import Task, anchor_for, probes_for
from teachable.models.student import Student
from teachable.parameters import LoraParameters
from teachable.records.adapter_probe import AdapterProbe
from teachable.records.dose import (
    Dose,
    DoseCalibration,
    Kind,
    ReferenceState,
    load_reference_states,
)
from teachable.records.layout import Phase1ALayout
from teachable.vocabulary import Format


@dataclass(frozen=True)
class Instrument:
    """Doses by format, the anchor replay set and its draw per step, and the probe set."""

    doses: Mapping[Format, Dose]
    anchors: tuple[ReferenceState, ...]
    per_step: int
    probes: tuple[ReferenceState, ...]

    def dose(self, format: Format) -> Dose:
        if format not in self.doses:
            known = ", ".join(self.doses)
            raise KeyError(f"no dose for the {format} format; calibrated formats: {known}")
        return self.doses[format]

    def key(self, format: Format) -> dict:
        """What a training in `format` takes from the instrument, for a run's key."""
        anchors = json.dumps([state.model_dump(mode="json") for state in self.anchors])
        return {
            "dose": self.dose(format).model_dump(mode="json"),
            "anchors": hashlib.sha1(anchors.encode()).hexdigest()[:16],
            "per_step": self.per_step,
        }

    def train(
        self,
        student: Student,
        examples: Sequence[SFTExample],
        format: Format,
        lora: LoraParameters,
        trained_on: set[Task],
        output_dir: Path | None = None,
        probed: bool = True,
    ) -> tuple[TrainResult, AdapterProbe | None]:
        """A fresh adapter on `examples` with the format's dose and anchor, and (unless not
        `probed`) its drift and specificity at the probe states of tasks outside `trained_on`."""
        history = student.params.history
        dose = self.dose(format)
        anchor = anchor_for(self.anchors, dose, self.per_step, history)
        result = train_lora(student, examples, dose.lora(lora), output_dir, anchor=anchor)
        if not probed:
            return result, None
        probes = probes_for(self.probes, trained_on, history)
        return result, probe_adapter(student, result.student, probes, examples)


def load_instrument(
    folder: Phase1ALayout,
    kind: Kind,
    formats: Sequence[Format],
    pinned: Dose | None,
    per_step: int,
) -> Instrument:
    """The instrument Phase 1A calibrated for `kind` in `formats`; `pinned` overrides every
    format's dose."""
    calibration = DoseCalibration.load(folder.dose)
    doses = {format: pinned or calibration.dose(kind, format) for format in formats}
    return Instrument(
        doses,
        tuple(load_reference_states(folder.anchor_states)),
        per_step,
        tuple(load_reference_states(folder.probe_states)),
    )
