"""teachable: find, label and train on the teachable moments of LLM agents.

The public API: load parameters, run the pipeline, and each phase's entry points, as a notebook
or a user script calls them. Names load on first use, so `import teachable` stays light (the
command line starts fast, and no phase's heavy dependencies load before they are needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # parameters and the run folder
    "Parameters": "teachable.parameters",
    "load_parameters": "teachable.parameters",
    "load_phase_parameters": "teachable.parameters",
    "RunLayout": "teachable.records.layout",
    # records the phases hand each other
    "Snapshot": "teachable.records.snapshot",
    "LabeledSnapshot": "teachable.records.labeled",
    "load_labeled": "teachable.records.labeled",
    "label_frame": "teachable.records.labeled",
    "TrainingSummary": "teachable.records.training_summary",
    # the student
    "Student": "teachable.models.student",
    # Phase 0
    "prepare_student": "teachable.phases.phase0_warmup",
    "save_preparation": "teachable.phases.phase0_warmup",
    "load_prepared_student": "teachable.phases.phase0_warmup",
    "prepared_student": "teachable.phases.phase0_warmup",
    "collect_student_failures": "teachable.phases.phase0_snapshots",
    "collect_expert_snapshots": "teachable.phases.phase0_snapshots",
    # Phases 1, 1A and 1B
    "phase1_snapshots": "teachable.phases.phase1_labels",
    "label_snapshots": "teachable.phases.phase1_labels",
    "label_test_snapshots": "teachable.phases.phase1_labels",
    "calibrate_dose": "teachable.phases.phase1a_dose",
    "load_instrument": "teachable.models.instrument",
    "validate_cpt": "teachable.phases.phase1b_cpt_validation",
    # Phases 2 to 5
    "train_matrix": "teachable.phases.phase2_matrix",
    "evaluate_matrix": "teachable.phases.phase3_evaluation",
    "evaluate_runs": "teachable.models.evaluation",
    "train_predictor": "teachable.phases.phase4_predictor",
    "Predictor": "teachable.models.predictor",
    "run_selection": "teachable.phases.phase5_selection",
    # paper artifacts and the pipeline
    "build_artifacts": "teachable.reports.artifacts",
    "run_phases": "teachable.pipeline.runner",
    "start_workers": "teachable.pipeline.execution",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'teachable' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*globals(), *__all__]
