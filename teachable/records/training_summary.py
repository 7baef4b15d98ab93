"""The training summary: what a folder of trained adapters holds, read and written here.

Phase 2 writes one for the matrix, Phase 5 one per selection method; Phase 3 and Phase 5 read
them to know which adapters to evaluate. Each run is one `RunEntry`; the summary adds the LoRA
hyperparameters every run shares and the split file the runs were trained on; each run also
keeps its dose and its drift and specificity at the probe states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from teachable.records.adapter_probe import AdapterProbe
from teachable.records.dose import Dose, LearningRate, Steps
from teachable.records.store import read_json, write_json
from teachable.vocabulary import Format, Quadrant, SelectionMethod

BASE = "base"  # the untrained student's name among the evaluated models

# a quadrant, the train set a baseline draws on (`shuffled`: every labeled snapshot with its
# target permuted, the control), or the method a Phase 5 run was selected by
Cell = Quadrant | Literal["all", "random", "shuffled"] | SelectionMethod


class LoraHyperparameters(BaseModel):
    """The LoRA hyperparameters a run was trained with; the `lora` parameter section is this
    schema, and every training summary records it."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha: the update is scaled by alpha / r")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        description="names of the modules that get LoRA weights",
    )
    learning_rate: LearningRate = Field(5e-4, description="AdamW learning rate")
    steps: Steps = Field(60, description="optimizer steps per training run")
    batch_size: int = Field(8, ge=1, description="examples per micro-batch")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="micro-batches accumulated per optimizer step"
    )
    seed: int = Field(0, ge=0, description="seed of the adapter's initialization and batch order")


class RunEntry(BaseModel):
    """One run of a summary: one training seed of one cell (a matrix cell such as
    `Q1_highU_highL_demo`, a baseline, or a selection method); `adapter` is relative to the
    summary's folder."""

    id: str
    cell: str
    seed: int
    quadrant: Cell
    format: Format
    n_train: int
    status: Literal["trained", "skipped"]
    reason: str | None = None
    adapter: str | None = None
    losses: list[float] = []
    seconds: float | None = None
    steps: int | None = None
    snapshots: list[str] = []
    dose: Dose | None = None
    probe: AdapterProbe | None = None
    key: str | None = None


class TrainingSummary(BaseModel):
    """`training_summary.json`: the runs, their shared LoRA hyperparameters, and the split file
    they were trained on (relative to the summary's folder)."""

    lora: LoraHyperparameters
    split: str
    runs: list[RunEntry]

    @classmethod
    def load(cls, path: Path) -> TrainingSummary:
        """Read a summary; a bad entry is an error naming the file and the run."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training summary {path} does not exist")
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            raise ValueError(f"{path}: expected a mapping with a 'runs' list")
        for index, entry in enumerate(data["runs"]):
            try:
                RunEntry.model_validate(entry)
            except ValidationError as error:
                name = entry.get("id", f"#{index}") if isinstance(entry, dict) else f"#{index}"
                raise ValueError(f"{path}: run {name}: {error}") from None
        try:
            summary = cls.model_validate(data)
        except ValidationError as error:
            raise ValueError(f"{path}: {error}") from None
        ids = [run.id for run in summary.runs]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"{path}: run ids repeat: {repeated}")
        if BASE in ids:
            raise ValueError(f"{path}: a run may not be called {BASE!r}, the untrained student")
        return summary

    @classmethod
    def entries_in(cls, path: Path) -> dict[str, RunEntry]:
        """The runs of the summary at `path` by id; none when there is no summary yet."""
        return {run.id: run for run in cls.load(path).runs} if Path(path).is_file() else {}

    def save(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))
