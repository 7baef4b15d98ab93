"""Parameter sets: one YAML file per run, one section per phase, validated before any work.

A YAML file under `parameters/` is loaded into `Parameters`. Unknown keys, wrong types and
impossible values raise `ParameterError` naming the file and the dotted key.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

KNOWN_LEVELS = (
    "GoTo",
    "GoToLocal",
    "GoToObj",
    "GoToObjDoor",
    "GoToRedBall",
    "GoToRedBallGrey",
    "GoToRedBallNoDists",
    "GoToDoor",
    "GoToSeq",
    "Open",
    "OpenDoor",
    "OpenRedDoor",
    "OpenTwoDoors",
    "Pickup",
    "PickupLoc",
    "PickupDist",
    "PickupAbove",
    "PutNextLocal",
    "PutNext",
    "Unlock",
    "UnlockLocal",
    "UnlockPickup",
    "KeyCorridor",
    "ActionObjDoor",
    "FindObjS5",
    "BossLevel",
    "Synth",
    "SynthLoc",
)


class ParameterError(ValueError):
    """A parameter file is invalid; the message names the file and the key."""


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunParameters(Section):
    """Run identity. A relative `output_root` is relative to the parameter file's folder."""

    name: str | None = None
    seed: int = Field(0, ge=0)
    output_root: Path = Path("../runs")


class StudentParameters(Section):
    model: str = "default"
    model_path: str | None = None
    adapter: str | None = None
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(32, ge=1)
    history: int = Field(0, ge=0)
    tiny_seed: int = Field(0, ge=0)


def known_levels(levels: list[str]) -> list[str]:
    """`levels` unchanged, or an error naming the ones BabyAI does not have."""
    unknown = [name for name in levels if name not in KNOWN_LEVELS]
    if unknown:
        raise ValueError(f"unknown level(s) {unknown}; known: {', '.join(KNOWN_LEVELS)}")
    return levels


class EnvParameters(Section):
    levels: list[str] = Field(default_factory=lambda: ["GoToLocal", "PickupLoc", "OpenDoor"])

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, levels: list[str]) -> list[str]:
        if not levels:
            raise ValueError("at least one level is needed")
        return known_levels(levels)


class TeacherParameters(Section):
    backend: Literal["bot", "openai"] = "bot"
    model: str = "gpt-4o-mini"
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(256, ge=1)
    base_url: str | None = None
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0)
    cache_dir: Path | None = None  # default: <run dir>/teacher_cache; relative to the file
    price_per_1k_input: float = Field(0.00015, ge=0.0)  # USD, gpt-4o-mini
    price_per_1k_output: float = Field(0.0006, ge=0.0)


class LoraParameters(Section):
    """Hyperparameters of the one LoRA SFT function every phase trains through."""

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    learning_rate: float = Field(5e-4, gt=0)
    steps: int = Field(60, ge=1)
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)


class WarmupParameters(Section):
    """Behaviour cloning on bot trajectories that turns the raw default into a partial expert."""

    enabled: bool = True
    n_tasks: int = Field(60, ge=1)
    steps: int = Field(120, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(8, ge=1)
    patched_fraction: float = Field(0.0, ge=0.0, le=1.0)
    eval_tasks: int = Field(20, ge=1)
    max_steps: int = Field(20, ge=1)


class ExpertSamplingParameters(Section):
    n_tasks: int = Field(20, ge=0)
    sample_rate: float = Field(0.5, gt=0.0, le=1.0)
    max_steps: int = Field(40, ge=1)


class Phase0Parameters(Section):
    warmup: WarmupParameters = Field(default_factory=WarmupParameters)
    n_tasks: int = Field(40, ge=1)
    max_steps: int = Field(15, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    max_snapshots: int = Field(200, ge=1)
    expert: ExpertSamplingParameters = Field(default_factory=ExpertSamplingParameters)


class Phase1Parameters(Section):
    """Labeling: which snapshots, how many rollouts per label, and how quadrants are cut.

    Thresholds: `auto` takes the `U_quantile` and `L_quantile` of the labeled snapshots,
    `fixed` takes `U_threshold` and `L_threshold`; a value at a threshold counts as high.
    """

    snapshots: Literal["failure", "expert", "both"] = "failure"
    max_snapshots: int | None = Field(None, ge=1)
    n_rollouts: int = Field(8, ge=1)
    n_per_condition: int = Field(8, ge=1)
    max_steps: int = Field(15, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    U_method: Literal["entropy", "margin", "top1"] = "entropy"
    L_upper: bool = False
    skip_leverage: bool = False
    skip_cpt: bool = False
    batch_snapshots: int = Field(8, ge=1)
    thresholds: Literal["auto", "fixed"] = "auto"
    U_quantile: float = Field(0.5, ge=0.0, le=1.0)
    L_quantile: float = Field(0.5, ge=0.0, le=1.0)
    U_threshold: float | None = Field(None, ge=0.0, le=1.0)
    L_threshold: float | None = Field(None, ge=-1.0, le=1.0)
    min_per_quadrant: int = Field(100, ge=0)

    @model_validator(mode="after")
    def _fixed_thresholds_given(self) -> Phase1Parameters:
        if self.thresholds == "fixed" and (self.U_threshold is None or self.L_threshold is None):
            raise ValueError("thresholds: fixed needs both U_threshold and L_threshold")
        return self


class Phase1BParameters(Section):
    """CPT validation: one micro-trained LoRA adapter per panel snapshot, its real change in
    success set against the snapshot's ELP_net. `continue_on_failed_gate` lets a pilot go on
    past a failed gate (the runner says so loudly); by default a failed gate stops the run."""

    n_per_quadrant: int = Field(50, ge=1)
    n_steps: int = Field(2, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    format: Literal["route_net", "demo", "hint", "contrast"] = "route_net"
    n_validation_rollouts: int = Field(3, ge=1)
    rollout_max_steps: int = Field(15, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    bootstrap_resamples: int = Field(1000, ge=100)
    continue_on_failed_gate: bool = False


class Phase2Parameters(Section):
    """Training matrix: a test split by task, then one LoRA run per quadrant x format and two
    baselines, all with the `lora` hyperparameters; a value set here overrides `lora`'s for
    every run (the plan's --batch-size and --gradient-accumulation-steps)."""

    test_fraction: float = Field(0.3, gt=0.0, lt=1.0)
    min_train: int = Field(5, ge=1)
    steps: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    gradient_accumulation_steps: int | None = Field(None, ge=1)


class Phase3Parameters(Section):
    """Evaluation, greedy: `n_tasks` held-out tasks, up to `n_snapshots_per_quadrant` held-out
    test snapshots per quadrant, and `retention_tasks` candidate tasks on the training levels and
    as many on `retention_levels` (levels outside training), kept where the base succeeds."""

    n_tasks: int = Field(200, ge=1)
    n_snapshots_per_quadrant: int = Field(100, ge=0)
    max_steps: int = Field(15, ge=1)
    retention_tasks: int = Field(50, ge=0)
    retention_levels: list[str] = Field(default_factory=lambda: ["GoToObj", "OpenRedDoor"])

    _known_retention_levels = field_validator("retention_levels")(known_levels)


class Phase4Parameters(Section):
    """Teachability predictor: features from cheap observables, a small MLP, a split by task."""

    embedder: Literal["hashing", "minilm"] = "hashing"
    embedding_dim: int = Field(256, ge=2)  # hashing width; minilm is 384 per text field
    hidden: int = Field(128, ge=1)
    epochs: int = Field(30, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    validation_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    k: list[int] = Field(default_factory=lambda: [5, 10, 20])
    seed: int = Field(0, ge=0)

    @field_validator("k")
    @classmethod
    def _positive_ks(cls, k: list[int]) -> list[int]:
        if not k or min(k) < 1:
            raise ValueError("k needs at least one value, each >= 1")
        return k

    @model_validator(mode="after")
    def _room_for_training(self) -> Phase4Parameters:
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError("validation_fraction + test_fraction must leave tasks to train on")
        return self


SelectionMethod = Literal["random", "entropy", "predictor", "oracle", "learnability"]
SELECTION_METHODS: tuple[SelectionMethod, ...] = get_args(SelectionMethod)


class Phase5Parameters(Section):
    """Selection (H7): `budget` train snapshots chosen by each of `methods` (random once per
    seed of `random_seeds`), each trained in `format` with the `lora` hyperparameters (a value
    set here overrides `lora`'s) and evaluated with the `phase3` counts."""

    budget: int = Field(500, ge=1)
    methods: list[SelectionMethod] = Field(default_factory=lambda: list(SELECTION_METHODS))
    random_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    format: Literal["demo", "hint", "contrast"] = "demo"
    steps: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    gradient_accumulation_steps: int | None = Field(None, ge=1)
    bootstrap_resamples: int = Field(1000, ge=100)

    @field_validator("methods")
    @classmethod
    def _distinct_methods(cls, methods: list[SelectionMethod]) -> list[SelectionMethod]:
        if not methods or len(set(methods)) < len(methods):
            raise ValueError("methods needs at least one method, each listed once")
        return methods

    @field_validator("random_seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
            raise ValueError("random_seeds needs at least one seed, each >= 0 and listed once")
        return seeds


class Parameters(Section):
    """A whole parameter file. `source` is the file it was read from."""

    run: RunParameters = Field(default_factory=RunParameters)
    student: StudentParameters = Field(default_factory=StudentParameters)
    env: EnvParameters = Field(default_factory=EnvParameters)
    teacher: TeacherParameters = Field(default_factory=TeacherParameters)
    lora: LoraParameters = Field(default_factory=LoraParameters)
    phase0: Phase0Parameters = Field(default_factory=Phase0Parameters)
    phase1: Phase1Parameters = Field(default_factory=Phase1Parameters)
    phase1b: Phase1BParameters = Field(default_factory=Phase1BParameters)
    phase2: Phase2Parameters = Field(default_factory=Phase2Parameters)
    phase3: Phase3Parameters = Field(default_factory=Phase3Parameters)
    phase4: Phase4Parameters = Field(default_factory=Phase4Parameters)
    phase5: Phase5Parameters = Field(default_factory=Phase5Parameters)
    interactive: bool = False
    source: Path | None = None

    @model_validator(mode="after")
    def _retention_outside_training(self) -> Parameters:
        shared = sorted(set(self.phase3.retention_levels) & set(self.env.levels))
        if shared:
            raise ValueError(
                "phase3.retention_levels must lie outside env.levels; "
                f"both hold {', '.join(shared)}"
            )
        return self

    @property
    def run_name(self) -> str:
        if self.run.name:
            return self.run.name
        return self.source.stem if self.source else "default"

    @property
    def run_dir(self) -> Path:
        root = self.run.output_root
        if not root.is_absolute() and self.source is not None:
            root = self.source.parent / root
        return (root / self.run_name).resolve()

    def section(self, name: str) -> dict:
        """The plain-dict view of one section, as handed to a phase notebook."""
        return getattr(self, name).model_dump(mode="json")


def _describe(error: ValidationError, path: Path) -> str:
    lines = [f"invalid parameters in {path}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_parameters(data: dict, path: Path) -> Parameters:
    """Validate an already-read mapping; errors name `path` and the key."""
    if not isinstance(data, dict):
        raise ParameterError(f"invalid parameters in {path}: the file must hold a mapping")
    if "source" in data:
        raise ParameterError(f"invalid parameters in {path}:\n  source: unknown key")
    try:
        return Parameters.model_validate({**data, "source": path})
    except ValidationError as error:
        raise ParameterError(_describe(error, path)) from None


def load_parameters(path: str | Path) -> Parameters:
    """Read and validate a YAML parameter file."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"parameter file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParameterError(f"{path} is not valid YAML: {error}") from None
    return parse_parameters(data, path)


def load_phase_parameters(
    path: str | Path, section: str, overrides: dict | None = None
) -> Parameters:
    """Read a parameter file for one phase; `overrides` (as papermill injects it) replaces
    that phase's section and is validated like the file itself."""
    parameters = load_parameters(path)
    if overrides is None:
        return parameters
    data = parameters.model_dump(exclude={"source"})
    data[section] = overrides
    return parse_parameters(data, Path(path))


def with_overrides(
    parameters: Parameters, assignments: Sequence[str], sections: Collection[str]
) -> Parameters:
    """`parameters` with command-line `SECTION.KEY=VALUE` assignments applied (values read as
    YAML), validated like the file. Only `sections` may change: a phase notebook receives its
    own section from the runner but reads every other one from the file."""
    data = parameters.model_dump(exclude={"source"})
    for assignment in assignments:
        dotted, equals, text = assignment.partition("=")
        keys = dotted.strip().split(".")
        if not equals or len(keys) < 2 or not all(keys):
            raise ParameterError(f"--set {assignment!r}: expected SECTION.KEY=VALUE")
        if keys[0] not in sections:
            raise ParameterError(
                f"--set {assignment!r}: only a phase's own section can be set on the command "
                f"line ({', '.join(sections)}); change {keys[0]} in {parameters.source}"
            )
        target = data
        for key in keys[:-1]:
            if not isinstance(target.get(key), dict):
                raise ParameterError(f"--set {assignment!r}: {key} is not a section")
            target = target[key]
        try:
            target[keys[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ParameterError(f"--set {assignment!r}: not a YAML value: {error}") from None
    try:
        return parse_parameters(data, parameters.source)
    except ParameterError as error:
        raise ParameterError(f"{error}\n  (after --set {' '.join(assignments)})") from None
