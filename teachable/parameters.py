"""Parameter sets: one YAML file per run, one section per phase, validated before any work.

A YAML file under `parameters/` is loaded into `Parameters`. Unknown keys, wrong types and
impossible values raise `ParameterError` naming the file and the dotted key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from teachable.records.dose import Dose, LearningRate, Steps
from teachable.records.layout import RunLayout
from teachable.records.training_summary import LoraHyperparameters
from teachable.vocabulary import FORMATS, SELECTION_METHODS, Format, SelectionMethod, UMethod

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

    name: str | None = Field(
        None,
        description="name of the run and of its folder under `output_root`; null: the parameter "
        "file's name without `.yaml`",
    )
    seed: int = Field(
        0,
        ge=0,
        description="run seed: task suites, rollouts, snapshot draws and splits all derive "
        "their random streams from it",
    )
    output_root: Path = Field(
        Path("../runs"),
        description="folder that holds the run folders; relative to the parameter file's folder",
    )


RAY_ADDRESS = re.compile(r"^(auto|(ray://)?[A-Za-z0-9_.\-]+:[0-9]+)$")
TORCH_THREADS = 2  # torch threads of every unit unless `execution.torch_threads` says otherwise


class ExecutionParameters(Section):
    """Where Phases 1, 1B, 2, 3 and 5 run their units: in this process, or on Ray workers that
    each keep the student loaded. Every unit runs with `torch_threads` torch threads on either
    backend, so on one machine the results, and the files written, are the same on both."""

    backend: Literal["local", "ray"] = Field(
        "local",
        description="`local`: every unit in the phase's own process; `ray`: units spread over "
        "Ray workers (`pip install -e .[ray]`)",
    )
    address: str | None = Field(
        None,
        description="Ray only: null starts a local Ray instance; `auto` joins the cluster this "
        "machine belongs to; `host:port` or `ray://host:port` joins one by address",
    )
    num_cpus_per_worker: float = Field(
        1.0, gt=0, description="CPUs Ray reserves for each worker (each holds one student)"
    )
    num_gpus_per_worker: float = Field(
        0.0, ge=0, description="GPUs Ray reserves for each worker; 1 places one student per GPU"
    )
    max_workers: int | None = Field(
        None,
        ge=1,
        description="most workers started; null: as many as the cluster's CPUs and GPUs hold",
    )
    max_retries: int = Field(
        3,
        ge=0,
        description="times Ray restarts a worker whose process died and reruns its unit, "
        "before the unit fails for good",
    )
    torch_threads: int = Field(
        TORCH_THREADS,
        ge=1,
        description="torch threads of every unit, in this process or on each Ray worker alike: "
        "a float sum's rounding depends on how many threads share it",
    )

    @field_validator("address")
    @classmethod
    def _known_address(cls, address: str | None) -> str | None:
        if address is not None and not RAY_ADDRESS.match(address):
            raise ValueError(
                f"{address!r} is not a Ray address: null, `auto`, `host:port` or `ray://host:port`"
            )
        return address


class StudentParameters(Section):
    model: str = Field(
        "default",
        description="the base student: `default` (embedded SmolLM2-135M-Instruct), `tiny` (a "
        "2-layer random Llama for tests), a hub id (owner/name) or a local folder",
    )
    model_path: str | None = Field(
        None,
        description="folder of a prepared student checkpoint, used as is in place of `model`; "
        "set, the warm-up is skipped",
    )
    adapter: str | None = Field(
        None, description="folder of a PEFT LoRA adapter loaded on top of the student"
    )
    device: str = Field("cpu", description="torch device of the student, e.g. `cpu` or `cuda`")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="dtype the student's weights are loaded in"
    )
    batch_size: int = Field(
        32, ge=1, description="states scored per forward pass; labels do not depend on it"
    )
    history: int = Field(
        0, ge=0, description="the student's previous actions shown in its prompt (0: none)"
    )
    tiny_seed: int = Field(0, ge=0, description="seed of the random weights of the `tiny` student")


def known_levels(levels: list[str]) -> list[str]:
    """`levels` unchanged, or an error naming the ones BabyAI does not have."""
    unknown = [name for name in levels if name not in KNOWN_LEVELS]
    if unknown:
        raise ValueError(f"unknown level(s) {unknown}; known: {', '.join(KNOWN_LEVELS)}")
    return levels


class EnvParameters(Section):
    levels: list[str] = Field(
        default_factory=lambda: ["GoToLocal", "PickupLoc", "OpenDoor"],
        description="BabyAI levels (e.g. `GoToLocal`) every task suite of the run draws from: "
        "the training levels",
    )

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, levels: list[str]) -> list[str]:
        if not levels:
            raise ValueError("at least one level is needed")
        return known_levels(levels)


class TeacherParameters(Section):
    backend: Literal["bot", "openai"] = Field(
        "bot",
        description="who answers: `bot` (BabyAI's bot) or `openai` (a chat-completions model; "
        "needs OPENAI_API_KEY; the bot answers where it gives no valid answer)",
    )
    model: str = Field("gpt-4o-mini", description="chat model the `openai` backend asks")
    temperature: float = Field(0.0, ge=0.0, description="sampling temperature of the chat model")
    max_tokens: int = Field(256, ge=1, description="completion tokens allowed per answer")
    base_url: str | None = Field(
        None,
        description="URL of an OpenAI-compatible server (vLLM, llama.cpp, Ollama); null: OpenAI",
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        description="seconds one HTTP attempt may take before it times out and is retried",
    )
    max_retries: int = Field(
        3, ge=0, description="client retries of a request after a 429, a 5xx or a timeout"
    )
    max_invalid_fraction: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="largest share of a phase's teacher answers that may be invalid or failed "
        "(the bot's action stands in); above it the phase fails",
    )
    action_in_text: Literal["repair", "exclude"] = Field(
        "repair",
        description="a chat model's answer whose texts name an action (the contrast may name "
        "the student's own): `repair` puts a neutral word in its place, `exclude` lets the bot's "
        "answer stand in, flagged invalid",
    )
    cache_dir: Path | None = Field(
        None,
        description="folder of the on-disk answer cache, relative to the parameter file; "
        "null: `<run dir>/teacher_cache`",
    )
    price_per_1k_input: float = Field(
        0.00015,
        ge=0.0,
        description="USD per 1,000 prompt tokens, for the cost estimate (default: gpt-4o-mini)",
    )
    price_per_1k_output: float = Field(
        0.0006,
        ge=0.0,
        description="USD per 1,000 completion tokens, for the cost estimate (default: gpt-4o-mini)",
    )


class LoraParameters(Section, LoraHyperparameters):
    """Hyperparameters of the one LoRA SFT function every phase trains through."""


class BatchOverrides(Section):
    """Batch shape that replaces the shared `lora` section's for one phase's runs; null keeps
    `lora`'s. How hard a run pushes (learning rate, steps, anchor) is its dose, not this."""

    batch_size: int | None = Field(
        None, ge=1, description="micro-batch size in place of `lora.batch_size`"
    )
    gradient_accumulation_steps: int | None = Field(
        None,
        ge=1,
        description="micro-batches per optimizer step in place of "
        "`lora.gradient_accumulation_steps`",
    )

    def over(self, lora: LoraParameters) -> LoraParameters:
        """`lora` with every override that is set put in its place, validated."""
        overridable = set(LoraOverrides.model_fields) & set(type(self).model_fields)
        updates = self.model_dump(include=overridable, exclude_none=True)
        return type(lora).model_validate({**lora.model_dump(), **updates})


class LoraOverrides(BatchOverrides):
    """Batch shape, steps and learning rate in place of the shared `lora` section's."""

    steps: Steps | None = Field(
        None, description="optimizer steps per run in place of `lora.steps`"
    )
    learning_rate: LearningRate | None = Field(
        None, description="learning rate in place of `lora.learning_rate`"
    )


class DosedTraining(BatchOverrides):
    """A phase whose trainings take a dose: the calibrated one (`dose.json`), unless `dose`
    pins one."""

    dose: Dose | None = Field(
        None,
        description="learning rate, steps and anchor weight of every training of this phase; "
        "null: the dose the calibration (phase 1a) chose",
    )


class WarmupParameters(LoraOverrides):
    """Behaviour cloning on bot trajectories that turns the raw default into a partial expert,
    trained with the `lora` hyperparameters under the warm-up's own steps, learning rate and
    batch size."""

    enabled: bool = Field(
        True, description="warm the student up; false: later phases use the raw student"
    )
    n_tasks: int = Field(
        60, ge=1, description="bot-played tasks whose decisions form the cloning data"
    )
    steps: Steps = Field(120, description="LoRA steps of the warm-up, in place of `lora.steps`")
    learning_rate: LearningRate = Field(
        1e-3, description="learning rate of the warm-up, in place of `lora.learning_rate`"
    )
    batch_size: int = Field(
        8, ge=1, description="micro-batch size of the warm-up, in place of `lora.batch_size`"
    )
    patched_fraction: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of cloning examples that carry the teacher's suggestion in the "
        "prompt, so the student keeps taking in-context supervision",
    )
    eval_tasks: int = Field(
        20, ge=1, description="tasks on which success is measured before and after the warm-up"
    )
    max_steps: int = Field(20, ge=1, description="step limit of the warm-up's evaluation episodes")


class ExpertSamplingParameters(Section):
    n_tasks: int = Field(20, ge=0, description="tasks the expert plays in experiment B")
    sample_rate: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="probability that each expert decision is kept as a snapshot",
    )
    max_steps: int = Field(40, ge=1, description="step limit of the expert's episodes")


class Phase0Parameters(Section):
    warmup: WarmupParameters = Field(
        default_factory=WarmupParameters,
        description="the behaviour-cloning warm-up that makes the raw default partly competent",
    )
    n_tasks: int = Field(40, ge=1, description="tasks the student plays in experiment A")
    max_steps: int = Field(15, ge=1, description="step limit of experiment A's episodes")
    temperature: float = Field(
        1.0, ge=0.0, description="the student's sampling temperature in experiment A"
    )
    max_snapshots: int = Field(
        200,
        ge=1,
        description="failure snapshots kept at most (deduplicated, then a seeded draw)",
    )
    expert: ExpertSamplingParameters = Field(
        default_factory=ExpertSamplingParameters,
        description="experiment B: snapshots sampled from the expert's own trajectories",
    )


class SplitParameters(Section):
    """The run's one split of the Phase 0 snapshots by task, made by Phase 1: `test_share` of
    the tasks go to `test`, `pool_share` to `pool`, the rest to `labeled`."""

    test_share: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="share of the snapshots' tasks whose snapshots are held out for Phases 3 "
        "and 5 to play from",
    )
    pool_share: float = Field(
        0.4,
        ge=0.0,
        lt=1.0,
        description="share of the snapshots' tasks whose snapshots stay unlabeled, the pool "
        "Phase 5 selects from",
    )

    @model_validator(mode="after")
    def _room_to_label(self) -> SplitParameters:
        if self.test_share + self.pool_share >= 1.0:
            raise ValueError("test_share + pool_share must leave tasks to label")
        return self


class Phase1Parameters(Section):
    """Labeling: which snapshots, how many rollouts per label, and how quadrants are cut.

    Thresholds: `auto` takes the `U_quantile` and `L_quantile` of the labeled snapshots,
    `fixed` takes `U_threshold` and `L_threshold`; a value at a threshold counts as high.
    """

    snapshots: Literal["failure", "expert", "both"] = Field(
        "failure",
        description="Phase 0 snapshots to label: experiment A's failures, experiment B's "
        "expert states, or both",
    )
    split: SplitParameters = Field(
        default_factory=SplitParameters,
        description="the run's split of the Phase 0 snapshots by task: labeled, pool and test",
    )
    max_snapshots: int | None = Field(
        None,
        ge=1,
        description="snapshots of the split's labeled part labeled at most (a seeded draw); "
        "null: all",
    )
    max_test_snapshots: int | None = Field(
        None,
        ge=0,
        description="test snapshots given U and leverage (their quadrant, for Phase 3) at most "
        "(a seeded draw); null: all",
    )
    n_rollouts: int = Field(
        8,
        ge=1,
        description="rollouts with the expert's action forced at each snapshot, each paired "
        "with the base rollout on its stream (L_local)",
    )
    n_per_condition: int = Field(
        8,
        ge=2,
        description="rollouts per CPT condition (base, placebo, demo, hint, contrast) at each "
        "snapshot; rollout i of every condition shares its random stream; ELP_net credits each "
        "half of the streams with the format best on the other half",
    )
    max_steps: int = Field(15, ge=1, description="step limit of each labeling rollout")
    temperature: float = Field(
        1.0, ge=0.0, description="the student's sampling temperature in labeling rollouts"
    )
    U_method: UMethod = Field(
        "entropy",
        description="U from the student's distribution: normalized entropy, 1 - top-2 margin, "
        "or scaled 1 - top probability",
    )
    L_upper: bool = Field(
        False, description="also record L_upper: whether the bot still finishes from the snapshot"
    )
    skip_leverage: bool = Field(False, description="leave leverage unmeasured (null) in every row")
    skip_cpt: bool = Field(False, description="leave the CPT unmeasured (null) in every row")
    batch_snapshots: int = Field(
        8,
        ge=1,
        description="snapshots labeled per group: their rollouts are scored together, and a "
        "kill loses at most one group",
    )
    thresholds: Literal["auto", "fixed"] = Field(
        "auto",
        description="quadrant cut: `auto` at the U and L quantiles of the labeled snapshots, "
        "`fixed` at `U_threshold` and `L_threshold`",
    )
    U_quantile: float = Field(
        0.5, ge=0.0, le=1.0, description="share of snapshots below the automatic U cut"
    )
    L_quantile: float = Field(
        0.5, ge=0.0, le=1.0, description="share of snapshots below the automatic L cut"
    )
    U_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="U cut with `thresholds: fixed`; U at or above is high"
    )
    L_threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="L cut with `thresholds: fixed`; L at or above is high"
    )
    min_per_quadrant: int = Field(
        100, ge=0, description="a quadrant with fewer snapshots than this gets a warning"
    )
    reliability_panel: int = Field(
        0,
        ge=0,
        description="labeled snapshots labeled a second time on independent streams, for the "
        "test-retest reliability of U, L_local and ELP_net; 0: none",
    )

    @model_validator(mode="after")
    def _fixed_thresholds_given(self) -> Phase1Parameters:
        if self.thresholds == "fixed" and (self.U_threshold is None or self.L_threshold is None):
            raise ValueError("thresholds: fixed needs both U_threshold and L_threshold")
        return self


def distinct_seeds(seeds: list[int]) -> list[int]:
    """At least one seed, each >= 0 and listed once."""
    if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise ValueError("seeds needs at least one seed, each >= 0 and listed once")
    return seeds


def listed_once(noun: str) -> Callable[[list], list]:
    """A field validator: at least one `noun`, each listed once."""

    def check(values: list) -> list:
        if not values or len(set(values)) < len(values):
            raise ValueError(f"{noun}s needs at least one {noun}, each listed once")
        return values

    return check


class DoseGrid(Section):
    """The doses the calibration measures: every combination of the three lists."""

    learning_rates: list[LearningRate] = Field(
        default_factory=lambda: [3e-4, 1e-3], description="learning rates of the grid"
    )
    steps: list[Steps] = Field(
        default_factory=lambda: [4, 12], description="optimizer steps of the grid"
    )
    anchor_weights: list[Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: [0.0, 5.0, 20.0],
        description="anchor weights of the grid; 0 trains without an anchor",
    )

    _distinct_rates = field_validator("learning_rates")(listed_once("learning rate"))
    _distinct_steps = field_validator("steps")(listed_once("step count"))
    _distinct_weights = field_validator("anchor_weights")(listed_once("anchor weight"))


class TrainingParameters(Section):
    """The training instrument of every training after the warm-up (Phases 1B, 2 and 5): the
    anchor that holds the rest of the policy, the probes that measure drift and specificity,
    and the calibration (phase 1a) that chooses each kind's dose before 1B and Phase 2."""

    anchor_tasks: int = Field(
        20,
        ge=1,
        description="warm-up tasks whose expert states form the anchor replay set (never a "
        "test, held-out or retention task)",
    )
    anchor_per_step: int = Field(
        8, ge=1, description="anchor states drawn from the replay set at every optimizer step"
    )
    probe_tasks: int = Field(
        12,
        ge=2,
        description="labeled-part tasks (at most half of them) whose expert states are probed, "
        "half to choose the dose on and half to check it",
    )
    probe_retention_tasks: int = Field(
        8,
        ge=2,
        description="retention-level tasks Phase 3 does not play whose expert states are "
        "probed, half and half as the labeled ones",
    )
    probe_states_per_task: int = Field(
        4, ge=1, description="expert states probed per probe task, spread along its trajectory"
    )
    calibration_snapshots: int = Field(
        6,
        ge=2,
        description="labeled snapshots (from tasks no probe plays) the calibration trains on: "
        "each alone for a one-snapshot dose, all together for a cell dose",
    )
    grid: DoseGrid = Field(default_factory=DoseGrid, description="the doses calibrated")
    check_seeds: list[int] = Field(
        default_factory=lambda: [1, 2, 3],
        description="LoRA seeds the chosen dose is trained anew at on the check snapshots (the "
        "grid trains at seed 0): a cell's specificity moves with its seed, so the check's "
        "intervals cross seeds with states",
    )
    drift_budget: float = Field(
        0.05,
        gt=0.0,
        description="mean KL(warmed || trained) per probe state, in nats, a chosen dose may "
        "move the policy at states it was not trained on",
    )
    retention_tolerance: float = Field(
        0.1,
        gt=0.0,
        description="loss of log pi(a*) at retention-level probe states, in nats, the chosen "
        "cell dose may cause before do-no-harm fails",
    )
    continue_on_failed_gate: bool = Field(
        False,
        description="go on when no dose is specific or the chosen dose does harm (announced "
        "loudly); false: the run stops there",
    )

    _distinct_seeds = field_validator("check_seeds")(distinct_seeds)


class Phase1BParameters(DosedTraining):
    """CPT validation: one micro-trained LoRA adapter per panel snapshot, its real change in
    success set against the snapshot's ELP_net. Each micro-training takes the `lora`
    hyperparameters under Phase 1B's batch sizes and the one-snapshot dose.
    `continue_on_failed_gate` lets a pilot go on past a failed gate (the runner says so loudly);
    by default a failed gate stops the run."""

    n_per_quadrant: int = Field(
        50, ge=1, description="labeled snapshots per quadrant in the micro-training panel"
    )
    batch_size: int = Field(
        1,
        ge=1,
        description="micro-batch size of each micro-training (it has one example), in place of "
        "`lora.batch_size`",
    )
    gradient_accumulation_steps: int = Field(
        1,
        ge=1,
        description="micro-batches per optimizer step of each micro-training, in place of "
        "`lora.gradient_accumulation_steps`",
    )
    format: Literal["route_net"] | Format = Field(
        "route_net",
        description="supervision format trained: `route_net` (the snapshot's best format over "
        "the placebo) or one fixed format",
    )
    n_validation_rollouts: int = Field(
        3,
        ge=2,
        description="rollouts from the snapshot before and after micro-training; their two "
        "halves give the utility's split-half reliability",
    )
    max_steps: int = Field(15, ge=1, description="step limit of each validation rollout")
    temperature: float = Field(
        1.0, ge=0.0, description="the student's sampling temperature in validation rollouts"
    )
    bootstrap_resamples: int = Field(
        1000,
        ge=100,
        description="bootstrap resamples of the gate's intervals (rho, Q1 - Q2, per quadrant)",
    )
    continue_on_failed_gate: bool = Field(
        False,
        description="go on past a failed gate (announced loudly); false: a failed gate stops "
        "the run",
    )

    @property
    def trained_formats(self) -> tuple[Format, ...]:
        """Every format a micro-training may train in: all of them when each snapshot trains
        in its route."""
        return FORMATS if self.format == "route_net" else (self.format,)


class Phase2Parameters(DosedTraining):
    """Training matrix: on the split's labeled snapshots, one LoRA run per quadrant x format
    and two baselines per seed of `seeds`, all with the `lora` hyperparameters; a value set here
    overrides `lora`'s for every run (the plan's --batch-size and
    --gradient-accumulation-steps). Every cell trains on `n_train` snapshots for the same
    number of steps, so a quadrant's cell differs from another's by what it trains on, not by
    how much."""

    n_train: int = Field(
        20,
        ge=1,
        description="labeled snapshots of every quadrant cell and of the random baseline, drawn "
        "anew per seed; a quadrant with fewer is skipped",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        description="training seeds: each run is trained once per seed (LoRA initialization, "
        "data order and the draw of its snapshots)",
    )
    formats: list[Format] = Field(
        default_factory=lambda: list(FORMATS),
        description="supervision formats of the quadrant cells, each listed once (the "
        "baselines train on demo)",
    )

    demo_steps: Steps = Field(
        1,
        description="expert actions per snapshot the demo cells train on: 1, the snapshot's own; "
        "more, the expert's recovery trajectory from it, one example per state",
    )

    _distinct_seeds = field_validator("seeds")(distinct_seeds)
    _distinct_formats = field_validator("formats")(listed_once("format"))

    @property
    def trained_formats(self) -> tuple[Format, ...]:
        """Every format a run of the matrix trains in: demo (the baselines and the control)
        and the quadrant cells' formats."""
        return tuple(dict.fromkeys(["demo", *self.formats]))


class EvaluationParameters(Section):
    """How Phases 3 and 5 play their suites: sampled at `temperature`, `episodes_per_item`
    episodes per item on seeds every model shares (episode e of an item has the same random
    stream for every model), so differences between models are paired."""

    temperature: float = Field(
        1.0, ge=0.0, description="the students' sampling temperature in evaluation episodes"
    )
    episodes_per_item: int = Field(
        4,
        ge=1,
        description="episodes per held-out task start, test snapshot and retention task",
    )
    greedy: bool = Field(
        False,
        description="also play every item once at temperature 0 and report it beside the "
        "sampled figures",
    )
    bootstrap_resamples: int = Field(
        2000, ge=100, description="bootstrap resamples of every interval on a gain or drop"
    )


class Phase3Parameters(Section):
    """Evaluation suites: `n_tasks` held-out tasks, up to `n_snapshots_per_quadrant` held-out
    test snapshots per quadrant, and `retention_tasks` tasks on the training levels and as many
    on `retention_levels` (levels outside training), a fixed set every model plays."""

    n_tasks: int = Field(200, ge=1, description="held-out tasks every model plays")
    n_snapshots_per_quadrant: int = Field(
        100,
        ge=0,
        description="test snapshots per quadrant every model plays from, at most",
    )
    max_steps: int = Field(15, ge=1, description="step limit of each evaluation episode")
    retention_tasks: int = Field(
        50,
        ge=0,
        description="retention tasks on the training levels, and as many on `retention_levels`",
    )
    retention_levels: list[str] = Field(
        default_factory=lambda: ["GoToObj", "OpenRedDoor"],
        description="levels outside `env.levels` for the retention check",
    )

    _known_retention_levels = field_validator("retention_levels")(known_levels)


class Phase4Parameters(Section):
    """Teachability predictor: cheap observables, a small MLP, grouped K-fold by task."""

    embedder: Literal["hashing", "minilm"] = Field(
        "hashing",
        description="text features: hashed word 1-2-grams, or the offline all-MiniLM-L6-v2 "
        "sentence embedding",
    )
    embedding_dim: int = Field(256, ge=2, description="hashing width; minilm is 384 per text field")
    hidden: int = Field(128, ge=1, description="width of the MLP's hidden layers")
    epochs: int = Field(
        30, ge=1, description="most training epochs of a fold; its validation loss picks the epoch"
    )
    learning_rate: LearningRate = Field(1e-3, description="Adam learning rate")
    batch_size: int = Field(64, ge=1, description="rows per training batch")
    folds: int = Field(
        5,
        ge=2,
        description="K of the grouped K-fold by task behind every reported metric (at most one "
        "fold per labeled task)",
    )
    validation_fraction: float = Field(
        0.15,
        gt=0.0,
        lt=1.0,
        description="share of a fold's training tasks that picks its epoch; the saved predictor "
        "trains on all labeled tasks for the median pick",
    )
    k: list[int] = Field(
        default_factory=lambda: [5, 10, 20],
        description="cut-offs K of Precision@K and NDCG@K",
    )
    seed: int = Field(
        0, ge=0, description="seed of the folds, the epoch-picking splits, initialization, batches"
    )

    @field_validator("k")
    @classmethod
    def _positive_ks(cls, k: list[int]) -> list[int]:
        if not k or min(k) < 1:
            raise ValueError("k needs at least one value, each >= 1")
        return k


class Phase5Parameters(DosedTraining):
    """Selection (H7): `budget` snapshots of the split's unlabeled pool chosen by each of
    `methods`, once per seed of `seeds`, each trained in `format` with the `lora`
    hyperparameters (a value set here overrides `lora`'s) and evaluated with the `phase3`
    counts. `oracle` and `learnability` rank by a measured label: they buy it, with Phase 1's
    rollout counts, for `candidates` pool snapshots only."""

    budget: int = Field(
        500, ge=1, description="pool snapshots each method picks (K); a smaller pool lowers it"
    )
    candidates: int | None = Field(
        None,
        ge=1,
        description="pool snapshots (a seeded draw) that oracle and learnability label and "
        "rank; null: the whole pool",
    )
    methods: list[SelectionMethod] = Field(
        default_factory=lambda: list(SELECTION_METHODS),
        description="selection methods compared, each listed once",
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        description="training seeds: each method is trained once per seed (LoRA initialization "
        "and data order; `random` draws anew per seed)",
    )
    format: Format = Field("demo", description="supervision format every selection is trained in")
    demo_steps: Steps = Field(
        1,
        description="expert actions per snapshot a demo selection trains on: 1, the snapshot's "
        "own; more, the expert's recovery trajectory from it, one example per state",
    )

    _distinct_methods = field_validator("methods")(listed_once("method"))
    _distinct_seeds = field_validator("seeds")(distinct_seeds)

    @model_validator(mode="after")
    def _candidates_cover_the_budget(self) -> Phase5Parameters:
        if self.candidates is not None and self.candidates < self.budget:
            raise ValueError("candidates must be at least the budget (K)")
        return self


class Parameters(Section):
    """A whole parameter file. `source` is the file it was read from."""

    run: RunParameters = Field(
        default_factory=RunParameters, description="run identity: name, seed, output folder"
    )
    student: StudentParameters = Field(
        default_factory=StudentParameters,
        description="the student model and how it is loaded and scored",
    )
    env: EnvParameters = Field(
        default_factory=EnvParameters, description="the BabyAI levels of the run"
    )
    teacher: TeacherParameters = Field(
        default_factory=TeacherParameters,
        description="the teacher that answers at each snapshot (bot or chat model)",
    )
    lora: LoraParameters = Field(
        default_factory=LoraParameters,
        description="hyperparameters of every LoRA training run; phases may override some",
    )
    phase0: Phase0Parameters = Field(
        default_factory=Phase0Parameters,
        description="Phase 0: warm-up, student rollouts (experiment A), expert snapshots (B)",
    )
    phase1: Phase1Parameters = Field(
        default_factory=Phase1Parameters,
        description="Phase 1: labeling with U, leverage, CPT and quadrants",
    )
    training: TrainingParameters = Field(
        default_factory=TrainingParameters,
        description="the training instrument: anchor, probes and the dose calibration (phase 1a)",
    )
    phase1b: Phase1BParameters = Field(
        default_factory=Phase1BParameters,
        description="Phase 1B: CPT validation by micro-training, a gate",
    )
    phase2: Phase2Parameters = Field(
        default_factory=Phase2Parameters,
        description="Phase 2: the training matrix, quadrant x format, and two baselines",
    )
    evaluation: EvaluationParameters = Field(
        default_factory=EvaluationParameters,
        description="how Phases 3 and 5 play: temperature, episodes per item, paired seeds",
    )
    phase3: Phase3Parameters = Field(
        default_factory=Phase3Parameters,
        description="Phase 3: the evaluation suites every trained run and the base play",
    )
    phase4: Phase4Parameters = Field(
        default_factory=Phase4Parameters,
        description="Phase 4: the teachability predictor from cheap observables",
    )
    phase5: Phase5Parameters = Field(
        default_factory=Phase5Parameters,
        description="Phase 5: the selection experiment at a fixed budget",
    )
    execution: ExecutionParameters = Field(
        default_factory=ExecutionParameters,
        description="where the units of Phases 1, 1B, 2, 3 and 5 run: this process or Ray",
    )
    interactive: bool = Field(
        False,
        description="read by no phase: the runner executes every notebook with "
        "`interactive = False`",
    )
    source: Path | None = Field(
        None, description="the file the parameters were read from; set on load, not a file key"
    )

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

    @property
    def layout(self) -> RunLayout:
        """Every artifact path of this run's folder."""
        return RunLayout(self.run_dir)

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


def _yaml_place(error: yaml.YAMLError) -> str:
    """ ", line L, column C" where the YAML parser stopped, when it says."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return "" if mark is None else f", line {mark.line + 1}, column {mark.column + 1}"


def load_parameters(path: str | Path) -> Parameters:
    """Read and validate a YAML parameter file."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"parameter file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParameterError(f"{path}{_yaml_place(error)}: not valid YAML: {error}") from None
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


# --- the reference table ---------------------------------------------------------------------

TOP_LEVEL = "(top level)"
NOT_FILE_KEYS = frozenset({"source"})  # set on load; a file that holds it is rejected


def parameter_table(params: Parameters | None = None) -> list[dict]:
    """One row per key a parameter file may hold: its `section` (a nested one such as
    `phase0.warmup` is a section of its own), dotted `key`, `type` with bounds, `default` and
    `description`, all strings; given `params`, also the `value` they hold. Sections come in
    file order, each followed by its nested sections; keys outside any section come last."""
    return _rows(Parameters, params, "")


def section_descriptions() -> dict[str, str]:
    """The one-line description of every section of `parameter_table`, by section name."""
    descriptions = {
        prefix + name: field.description
        for model, prefix in _sections(Parameters, "")
        for name, field in model.model_fields.items()
        if _is_section(field.annotation)
    }
    return {**descriptions, TOP_LEVEL: "keys outside any section"}


def _is_section(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Section)


def _sections(model: type[Section], prefix: str) -> list[tuple[type[Section], str]]:
    """`model` and every section nested in it, depth first, with their key prefixes."""
    found = [(model, prefix)]
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            found += _sections(field.annotation, f"{prefix}{name}.")
    return found


def _rows(model: type[Section], values: Section | None, prefix: str) -> list[dict]:
    own, nested = [], []
    for name, field in model.model_fields.items():
        if model is Parameters and name in NOT_FILE_KEYS:
            continue
        value = None if values is None else getattr(values, name)
        if _is_section(field.annotation):
            nested += _rows(field.annotation, value, f"{prefix}{name}.")
            continue
        row = {
            "section": prefix.rstrip(".") or TOP_LEVEL,
            "key": prefix + name,
            "type": _type_name(field.annotation, field.metadata),
            "default": _shown(field.get_default(call_default_factory=True)),
            "description": field.description,
        }
        if values is not None:
            row["value"] = _shown(value)
        own.append(row)
    return nested + own if model is Parameters else own + nested


def _type_name(annotation: object, bounds: Sequence = ()) -> str:
    """`int ≥ 1`, `float in (0, 1)`, `str or null`, `{bot, openai}`, `list of str`, ..."""
    args = get_args(annotation)
    if get_origin(annotation) is Annotated:
        inner, *fields = args
        return _type_name(inner, [*bounds, *(item for f in fields for item in f.metadata)])
    if get_origin(annotation) is Literal:
        return "{" + ", ".join(str(arg) for arg in args) + "}"
    if get_origin(annotation) in (Union, UnionType) and all(
        get_origin(arg) is Literal for arg in args
    ):
        return "{" + ", ".join(str(value) for arg in args for value in get_args(arg)) + "}"
    if type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        return " or ".join(_type_name(arg, bounds) for arg in rest) + " or null"
    if get_origin(annotation) is list:
        return f"list of {_type_name(args[0])}"
    name = "path" if annotation is Path else getattr(annotation, "__name__", str(annotation))
    return name + _bounds(bounds)


def _bounds(metadata: Sequence) -> str:
    limits = {}
    for item in metadata:
        for attribute in ("ge", "gt", "le", "lt"):
            if getattr(item, attribute, None) is not None:
                limits[attribute] = f"{getattr(item, attribute):g}"
    lower = next(((op, limits[op]) for op in ("ge", "gt") if op in limits), None)
    upper = next(((op, limits[op]) for op in ("le", "lt") if op in limits), None)
    if lower and upper:
        left, right = "[("[lower[0] == "gt"], "])"[upper[0] == "lt"]
        return f" in {left}{lower[1]}, {upper[1]}{right}"
    symbols = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    bound = lower or upper
    return f" {symbols[bound[0]]} {bound[1]}" if bound else ""


def _shown(value: object) -> str:
    """A value as it is written in a parameter file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return str(value)
