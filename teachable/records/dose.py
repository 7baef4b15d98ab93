"""The training dose and its calibration, read and written here.

A dose is how hard one training pushes: learning rate, optimizer steps and the weight of the
anchor that holds the rest of the policy. Two kinds of training take a dose: `micro`, one
snapshot (Phase 1B), and `cell`, many snapshots (the Phase 2 cells and the Phase 5 methods).
The calibration phase measures drift and specificity over a grid of doses per kind and format,
chooses one per kind and format, checks the choice on probe states it was not chosen on, and
writes it all to `dose.json`; the reference states (anchor replay set and probe set) it used go
beside it, so every later training holds and probes the same states.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from teachable.records.adapter_probe import AdapterProbe
from teachable.records.env_state import EnvState
from teachable.records.store import read_json, read_jsonl, write_json, write_jsonl
from teachable.records.verdicts import Outcome, Verdict
from teachable.vocabulary import Format

# every count of optimizer steps and every learning rate a parameter file sets is one of these
Steps = Annotated[int, Field(ge=1)]
LearningRate = Annotated[float, Field(gt=0)]

Hyperparameters = TypeVar("Hyperparameters", bound=BaseModel)  # LoRA hyperparameters

PHASE = "phase1a"  # the verdicts' phase in the run's verdicts.json

Kind = Literal["micro", "cell"]

KINDS: tuple[Kind, ...] = ("micro", "cell")

Half = Literal["calibration", "check"]  # probe states a dose is chosen on, and checked on


class Dose(BaseModel):
    """How hard one training pushes: its learning rate, its steps, and its anchor's weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: LearningRate = Field(description="AdamW learning rate")
    steps: Steps = Field(description="optimizer steps")
    anchor_weight: float = Field(
        ge=0.0, description="weight of the KL to the warmed policy at anchor states; 0: none"
    )

    def lora(self, lora: Hyperparameters) -> Hyperparameters:
        """LoRA hyperparameters `lora` with this dose's learning rate and steps."""
        update = {"learning_rate": self.learning_rate, "steps": self.steps}
        return lora.model_copy(update=update)

    def label(self) -> str:
        """`lr 1e-03, 10 steps, anchor 5`."""
        return f"lr {self.learning_rate:.0e}, {self.steps} steps, anchor {self.anchor_weight:g}"


class ReferenceState(BaseModel):
    """An expert state the policy is held or probed at: the state, the bot's action there,
    where its task comes from (`part`), and which probe half it belongs to."""

    state: EnvState
    action: str
    part: Literal["warmup", "labeled", "retention"]
    half: Half | None = None


class DosePoint(BaseModel):
    """One dose of the grid for one kind and format, measured on the calibration probes:
    drift and specificity pooled over its `n_trainings` trainings."""

    kind: Kind
    format: Format
    dose: Dose
    probe: AdapterProbe
    n_trainings: int
    within_budget: bool


class DoseChoice(BaseModel):
    """The dose a kind and format trains with: `calibrated` (the grid's point with the largest
    specificity within the drift budget) or `pinned` by the parameters; `check` is that dose
    trained anew at each check seed on other snapshots and probed on the check half, and
    `retention` the same at its retention states alone (demo cells: do-no-harm)."""

    kind: Kind
    format: Format
    dose: Dose
    source: Literal["calibrated", "pinned"]
    check: AdapterProbe
    retention: AdapterProbe | None = None


class DoseCalibration(BaseModel):
    """`dose.json`: the whole dose-response curve, the chosen doses, and the verdicts on them
    (a specific dose exists; the chosen dose does no harm); `outcome` is the gate."""

    drift_budget: float
    points: list[DosePoint]
    chosen: list[DoseChoice]
    verdicts: list[Verdict]
    outcome: Outcome

    def dose(self, kind: Kind, format: Format) -> Dose:
        """The dose a training of `kind` in `format` uses."""
        for choice in self.chosen:
            if choice.kind == kind and choice.format == format:
                return choice.dose
        calibrated = ", ".join(f"{choice.kind}/{choice.format}" for choice in self.chosen)
        raise KeyError(f"no dose for {kind} training in {format}; calibrated: {calibrated}")

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))

    @classmethod
    def load(cls, path: Path) -> DoseCalibration:
        """The run's calibrated doses; a clear error when the calibration has not run."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run the dose calibration (phase 1a)")
        try:
            return cls.model_validate(read_json(path))
        except ValidationError as error:
            raise ValueError(f"{path}: {error}") from None


def save_reference_states(path: Path, states: Sequence[ReferenceState]) -> None:
    write_jsonl(path, [state.model_dump(mode="json") for state in states])


def load_reference_states(path: Path) -> list[ReferenceState]:
    """Reference states written by the calibration; a clear error when it has not run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the dose calibration (phase 1a)")
    return [ReferenceState.model_validate(row) for row in read_jsonl(path)]
